"""The live feed of a run over a WebSocket: `/ws/workflow-runs/<id>/events[?after=N]`.

Authenticated like the WebSocket chat: the `Authorization: Bearer` header, `?api_key=`, a first
`{"type": "auth", "api_key": ...}` frame (browsers, which cannot set headers), or the dashboard's
logged-in session; and re-checked while open (live.follow). Frames, server to client:
  {"type": "event", "seq": 3, "event": "node.started", "node": "a", "run": 7, "at": ..., ...}
  {"type": "end", "run": 7}                          (the run finished; close 1000)
  {"type": "error", "status": 404, "message": ...}   (then close 4404, 4401, 4403 or 4400)
Another organization's run is the same 4404 as a missing one.
"""

from __future__ import annotations

import asyncio
import contextlib
from typing import Any
from urllib.parse import parse_qs

import orjson
from channels.generic.websocket import AsyncJsonWebsocketConsumer

from inference.gateway import pipeline
from inference.gateway.errors import OpenAIError
from inference.workflows import live, selectors
from registry.asyncdb import in_db_thread
from registry.auth import principal_for_user
from registry.principal import Principal

CLOSE_BAD_REQUEST, CLOSE_UNAUTHENTICATED, CLOSE_FORBIDDEN, CLOSE_NOT_FOUND = 4400, 4401, 4403, 4404
AUTH_FRAME_WAIT_S = 10.0


@in_db_thread
def _session_principal(user) -> Principal | None:
    return principal_for_user(user) if user is not None and user.is_authenticated else None


@in_db_thread
def _run_visible(principal: Principal, run_id: int) -> bool:
    return selectors.run_get(organization=principal.organization, pk=run_id) is not None


class RunEventsSocket(AsyncJsonWebsocketConsumer):
    # As the chat socket: nothing is sent to it through the channel layer, so it listens on none.
    channel_layer_alias = "run-events-socket-has-no-channel-layer"

    async def connect(self) -> None:
        self.feed: asyncio.Task | None = None
        self.authenticated = asyncio.Event()
        self.principal: Principal | None = None
        self.session_key: str | None = None
        await self.accept()
        query = parse_qs(self.scope.get("query_string", b"").decode(errors="replace"))
        raw_after = (query.get("after") or ["0"])[0]
        if not (raw_after.isascii() and raw_after.isdigit() and len(raw_after) < 10):
            await self._refuse(CLOSE_BAD_REQUEST, 400, "after: a non-negative event number")
            return
        self.after = int(raw_after)
        authorization = self._header(b"authorization")
        if query.get("api_key") and not authorization:
            authorization = f"Bearer {query['api_key'][0]}"
        if authorization is None and (principal := await _session_principal(self.scope.get("user"))) is not None:
            session = self.scope.get("session")
            await self._start(principal, session.session_key if session is not None else None)
            return
        try:
            principal = await pipeline.authenticate(authorization, self._client_host())
        except OpenAIError as exc:
            if authorization:  # a wrong key is final; a missing one may still come as an auth frame
                await self._refuse(CLOSE_UNAUTHENTICATED, exc.status, exc.message)
            else:
                self.feed = asyncio.ensure_future(self._await_auth_frame())
            return
        await self._start(principal, None)

    async def _await_auth_frame(self) -> None:
        try:
            await asyncio.wait_for(self.authenticated.wait(), AUTH_FRAME_WAIT_S)
        except TimeoutError:
            await self._refuse(CLOSE_UNAUTHENTICATED, 401, 'Authenticate first: send {"type": "auth", '
                                                           '"api_key": ...} or an Authorization header.')

    async def _start(self, principal: Principal, session_key: str | None) -> None:
        run_id = self.scope["url_route"]["kwargs"]["pk"]
        if not await _run_visible(principal, run_id):
            await self._refuse(CLOSE_NOT_FOUND, 404, "Not found.")
            return
        self.principal, self.session_key = principal, session_key
        self.authenticated.set()
        self.feed = asyncio.ensure_future(self._relay(run_id))

    async def _relay(self, run_id: int) -> None:
        try:
            async for batch in live.follow(run_id=run_id, after=self.after, principal=self.principal,
                                           session_key=self.session_key):
                for event in batch:
                    await self.send_json({**event, "type": "event", "event": event["type"]})
        except live.CredentialEnded as ended:
            await self._refuse(CLOSE_UNAUTHENTICATED if ended.status == 401 else CLOSE_FORBIDDEN, ended.status,
                               ended.message)
            return
        with contextlib.suppress(Exception):  # the client may have gone meanwhile
            await self.send_json({"type": "end", "run": run_id})
            await self.close(code=1000)

    async def receive_json(self, content: Any, **kwargs) -> None:
        if not isinstance(content, dict) or content.get("type") != "auth":
            await self.send_json({"type": "error", "status": 400, "message": 'The only frame a client sends is '
                                                                            '{"type": "auth", "api_key": ...}.'})
            return
        if self.principal is not None:
            return
        key = content.get("api_key")
        try:
            principal = await pipeline.authenticate(f"Bearer {key}" if isinstance(key, str) and key else None,
                                                    None)
        except OpenAIError as exc:
            await self._refuse(CLOSE_UNAUTHENTICATED, exc.status, exc.message)
            return
        if self.feed is not None:
            self.feed.cancel()
        await self._start(principal, None)

    @classmethod
    async def decode_json(cls, text_data: str) -> Any:
        try:
            return orjson.loads(text_data)
        except orjson.JSONDecodeError:
            return None

    @classmethod
    async def encode_json(cls, content: Any) -> str:
        return orjson.dumps(content).decode()

    async def _refuse(self, code: int, status: int, message: str) -> None:
        with contextlib.suppress(Exception):
            await self.send_json({"type": "error", "status": status, "message": message})
            await self.close(code=code)

    def _header(self, name: bytes) -> str | None:
        for key, value in self.scope.get("headers", []):
            if key == name:
                return value.decode("latin-1")
        return None

    def _client_host(self) -> str | None:
        client = self.scope.get("client")
        return client[0] if client else None

    async def disconnect(self, code: int) -> None:
        if self.feed is not None and self.feed is not asyncio.current_task():
            self.feed.cancel()
