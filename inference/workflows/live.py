"""The live feed of a run's events, shared by its two transports: SSE
(`GET /api/workflow-runs/<id>/events`, views.py) and the WebSocket (`/ws/workflow-runs/<id>/events`,
consumers.py).

`follow` yields the events after a number as they are written (events.py), polling the rows, and
ends once the run finished and its running nodes have recorded how they ended. Like the WebSocket
chat, an open feed keeps checking the credential it was opened with: a revoked or expired key, a
dashboard session that ended or a user who left the organization ends the feed (`CredentialEnded`).
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator
from importlib import import_module
from types import SimpleNamespace
from typing import Any

from django.conf import settings
from django.contrib.auth import get_user
from django.utils import timezone

from inference.workflows import selectors
from inference.workflows.models import NodeRun
from inference.workflows.serializers import event_dict
from registry.asyncdb import in_db_thread
from registry.auth import KEY_CACHE_SECONDS
from registry.models import ApiKey, Membership
from registry.principal import Principal

# How often an open feed re-checks its credential: a revocation ends it within this.
RECHECK_S = KEY_CACHE_SECONDS
# A run that finished may still have a node that sees the cancel at its next heartbeat.
_SETTLE_S = 5.0


class CredentialEnded(Exception):
    """The feed's key, session or membership no longer holds. `status`: 401 or 403."""

    def __init__(self, status: int, message: str):
        super().__init__(message)
        self.status = status
        self.message = message


class _ReadOnlySession(dict):
    """A session's data for django.contrib.auth.get_user, which may flush or re-key a session it
    cannot verify: the browser owns that session, so the feed only reads it."""

    def flush(self) -> None:
        self.clear()

    def cycle_key(self) -> None:
        pass


def _credential_check(principal: Principal, session_key: str | None) -> None:
    if principal.api_key is not None:
        key = ApiKey.objects.filter(pk=principal.api_key.pk).first()
        if key is None or not key.is_usable(timezone.now()):
            raise CredentialEnded(401, "API key is expired or revoked")
        return
    if principal.user is None:
        return  # the embedded default's keyless localhost owner: nothing to revoke
    if session_key is not None:
        store = import_module(settings.SESSION_ENGINE).SessionStore(session_key)
        user = get_user(SimpleNamespace(session=_ReadOnlySession(store.items())))
        if not user.is_authenticated or user.pk != principal.user.pk:
            raise CredentialEnded(401, "Your dashboard session has ended; log in again.")
    if not Membership.objects.filter(user_id=principal.user.pk, organization=principal.organization,
                                     user__is_active=True).exists():
        raise CredentialEnded(403, "Your user no longer belongs to this organization.")


credential_check = in_db_thread(_credential_check)


def _read(run_id: int, after: int) -> tuple[list[dict[str, Any]], bool, bool]:
    """(events after `after`, the run finished, a node of it still runs)."""
    batch = [event_dict(e) for e in selectors.events_after(run_id=run_id, seq=after)]
    finished = selectors.run_finished(run_id)
    running = finished and NodeRun.objects.filter(run_id=run_id, state=NodeRun.RUNNING).exists()
    return batch, finished, running


_aread = in_db_thread(_read)


async def follow(*, run_id: int, after: int, principal: Principal, session_key: str | None = None,
                 keepalive_s: float = 15.0) -> AsyncIterator[list[dict[str, Any]]]:
    """Batches of events (dicts, in order) as they come; an empty batch every `keepalive_s` of silence.
    Raises CredentialEnded when the caller's credential stops holding."""
    checked = sent = time.monotonic()
    finished_since: float | None = None
    while True:
        batch, finished, running = await _aread(run_id, after)
        now = time.monotonic()
        if batch:
            after = batch[-1]["seq"]
            sent = now
            yield batch
        elif now - sent >= keepalive_s:
            sent = now
            yield []
        if finished and not batch:
            # Nothing new and the run is over: done once no node is left to say how it ended.
            finished_since = finished_since or now
            if not running or now - finished_since > _SETTLE_S:
                return
        if now - checked >= RECHECK_S:
            await credential_check(principal, session_key)
            checked = now
        await asyncio.sleep(settings.WORKFLOW_EVENTS_POLL_S)
