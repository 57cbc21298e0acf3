"""The live feed of an agent run's events, for SSE (`GET /api/agent-runs/<id>/events`) and the
WebSocket (`/ws/agent-runs/<id>/events`): the rows after a number, polled, until the run finished
(or, its executor dead, was failed: by the sweeper or by the feed itself).
An open feed keeps checking the credential it was opened with, as the workflow feed does (the same
check: inference/workflows/live.py)."""

from __future__ import annotations

import asyncio
import time
import uuid
from collections.abc import AsyncIterator
from typing import Any

from django.conf import settings

from inference.agents import selectors, services
from inference.agents.serializers import event_dict
from inference.workflows.live import RECHECK_S, CredentialEnded, credential_check
from registry.asyncdb import in_db_thread
from registry.principal import Principal

__all__ = ["CredentialEnded", "follow"]


def _read(run_id: uuid.UUID, after: int, expire: bool) -> tuple[list[dict[str, Any]], bool]:
    # A run whose executor died ends here too, even where no sweeper runs (the embedded default after a
    # restart): the same conditional UPDATE as the sweeper's, so whichever comes first fails it once.
    if expire:
        services.agent_run_expire(run_id=run_id)
    finished = selectors.run_finished(run_id)  # read first: the events a finished run wrote are all there
    return [event_dict(e) for e in selectors.events_after(run_id=run_id, seq=after)], finished


_aread = in_db_thread(_read)


async def follow(*, run_id: uuid.UUID, after: int, principal: Principal, session_key: str | None = None,
                 keepalive_s: float = 15.0) -> AsyncIterator[list[dict[str, Any]]]:
    """Batches of events as they come; an empty batch every `keepalive_s` of silence; ends after the
    run's last event. Raises CredentialEnded when the caller's credential stops holding."""
    checked = sent = time.monotonic()
    expired = float("-inf")  # the first read checks: a feed opened on a dead run ends at once
    while True:
        now = time.monotonic()
        expire = now - expired >= settings.WORKFLOW_SWEEP_INTERVAL_S  # as often as the sweeper would
        if expire:
            expired = now
        batch, finished = await _aread(run_id, after, expire)
        now = time.monotonic()
        if batch:
            after = batch[-1]["seq"]
            sent = now
            yield batch
        elif now - sent >= keepalive_s:
            sent = now
            yield []
        if finished and not batch:
            return
        if now - checked >= RECHECK_S:
            await credential_check(principal, session_key)
            checked = now
        await asyncio.sleep(settings.WORKFLOW_EVENTS_POLL_S)
