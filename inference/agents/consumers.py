"""The live feed of an agent run over a WebSocket: `/ws/agent-runs/<id>/events[?after=N]`.

Authenticated, framed and closed exactly as the workflow run feed (inference/workflows/consumers.py,
whose consumer this extends): {"type": "event", "seq": 3, "event": "tool_call", ...}, then
{"type": "end", "run": "<id>"}; another organization's run is the same 4404 as a missing one.
"""

from __future__ import annotations

import asyncio
import contextlib

from inference.agents import live, selectors
from inference.workflows.consumers import (
    CLOSE_FORBIDDEN,
    CLOSE_NOT_FOUND,
    CLOSE_UNAUTHENTICATED,
    RunEventsSocket,
)
from registry.asyncdb import in_db_thread
from registry.principal import Principal


@in_db_thread
def _run_id(principal: Principal, pk) -> object | None:
    run = selectors.run_get(organization=principal.organization, pk=pk)
    return run.pk if run is not None else None


class AgentRunEventsSocket(RunEventsSocket):
    async def _start(self, principal: Principal, session_key: str | None) -> None:
        run_id = await _run_id(principal, self.scope["url_route"]["kwargs"]["pk"])
        if run_id is None:
            await self._refuse(CLOSE_NOT_FOUND, 404, "Not found.")
            return
        self.principal, self.session_key = principal, session_key
        self.authenticated.set()
        self.feed = asyncio.ensure_future(self._relay(run_id))

    async def _relay(self, run_id) -> None:
        try:
            async for batch in live.follow(run_id=run_id, after=self.after, principal=self.principal,
                                           session_key=self.session_key):
                for event in batch:
                    await self.send_json({**event, "type": "event", "event": event["type"]})
        except live.CredentialEnded as ended:
            await self._refuse(CLOSE_UNAUTHENTICATED if ended.status == 401 else CLOSE_FORBIDDEN, ended.status,
                               ended.message)
            return
        with contextlib.suppress(Exception):
            await self.send_json({"type": "end", "run": str(run_id)})
            await self.close(code=1000)
