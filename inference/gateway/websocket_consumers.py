"""WebSocket chat at /ws/chat/: many concurrent conversations over one socket, same pipeline as /v1.

Protocol (JSON text frames):
  client -> {"type": "auth", "api_key": "sb-..."}                 (only if not sent at connect)
  client -> {"id": "c1", "model": "...", "messages": [...], ...}  (any /v1/chat/completions field)
  client -> {"type": "cancel", "id": "c1"}
  server -> {"type": "delta", "id": "c1", "content": "..."}
  server -> {"type": "done", "id": "c1", "usage": {...}, "finish_reason": "stop"}
  server -> {"type": "error", "id": "c1", "error": {"message", "type", "param", "code"}}
  server -> {"type": "cancelled", "id": "c1"}
  server -> {"type": "approval", "id": "c1", "request": {"id", "status", "approval": {...}, ...}}
            (a policy's approval_required: once when the wait starts, once when it is decided)
The key comes from the `Authorization: Bearer` header (non-browser clients), the
`?api_key=` query parameter, or a first `auth` message (browsers, which cannot set headers
and should keep keys out of URLs).

An open socket keeps checking who it serves: every RECHECK_SECONDS in the background, and before
each new conversation. When the key is revoked or expires, or the dashboard session ends, the
running conversations are cancelled, a last error frame (id of the refused conversation, or null)
is sent and the socket closes with 4401; a dashboard user removed from the organization gets 4403.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from importlib import import_module
from types import SimpleNamespace
from typing import Any
from urllib.parse import parse_qs

import orjson
from channels.generic.websocket import AsyncJsonWebsocketConsumer
from django.conf import settings
from django.contrib.auth import get_user
from django.utils import timezone

from inference.gateway import pipeline
from inference.gateway.errors import OpenAIError, invalid, unavailable
from inference.workflows.holds import hold_request
from registry import jsonsafe
from registry.asyncdb import in_db_thread
from registry.auth import KEY_CACHE_SECONDS, principal_for_user
from registry.principal import Principal

log = logging.getLogger(__name__)

# Keys of a chat frame that belong to the socket protocol, not to the chat request.
_PROTOCOL_KEYS = ("id", "type")

# How often an open socket re-checks its key or session. A key lookup may come from registry.auth's
# principal cache (the only one), up to KEY_CACHE_SECONDS old, so checking every half period shows a
# revocation made by another process on the socket within 1.5 x KEY_CACHE_SECONDS (3 s).
RECHECK_SECONDS = KEY_CACHE_SECONDS / 2

CLOSE_UNAUTHENTICATED = 4401
CLOSE_FORBIDDEN = 4403
CLOSE_TRY_AGAIN_LATER = 1013  # RFC 6455: "Try Again Later" (a dependency is down)


class SessionEnded(Exception):
    """The socket's credential no longer holds: close with `close_code` after sending `error`."""

    def __init__(self, close_code: int, error: OpenAIError):
        super().__init__(error.message)
        self.close_code = close_code
        self.error = error


class _SessionData(dict):
    """A session's data, for django.contrib.auth.get_user, which flushes or re-keys a session it
    cannot verify: the browser owns that session, so the socket only reads it (and closes)."""

    def flush(self) -> None:
        self.clear()

    def cycle_key(self) -> None:
        pass


@in_db_thread
def _principal_for_session_user(user) -> Principal | None:
    return principal_for_user(user) if user.is_authenticated else None


async def session_principal(scope: dict[str, Any]) -> Principal | None:
    user = scope.get("user")
    if user is None:
        return None
    return await _principal_for_session_user(user)


@in_db_thread
def _session_principal_now(session_key: str | None, organization_id: int) -> Principal:
    """The dashboard user behind a session, read afresh (logged out, deactivated, password changed?)."""
    store = import_module(settings.SESSION_ENGINE).SessionStore(session_key)
    user = get_user(SimpleNamespace(session=_SessionData(store.items())))
    if not user.is_authenticated:
        raise SessionEnded(CLOSE_UNAUTHENTICATED, OpenAIError(
            401, "Your dashboard session has ended; log in again.", code="session_ended"))
    principal = principal_for_user(user)
    if principal is None or principal.organization.pk != organization_id:
        raise SessionEnded(CLOSE_FORBIDDEN, OpenAIError(
            403, "Your user no longer belongs to this organization.", code="not_a_member"))
    return principal


class ChatSocketConsumer(AsyncJsonWebsocketConsumer):
    # Like the /v1 consumers: nothing is ever sent to a chat socket through the channel layer, and
    # listening on channels_redis costs a blocking pop per process and, measured, leaves consumers of
    # closed sockets stuck in its cancelled receive (300 sockets closed: uvicorn never finished shutdown).
    channel_layer_alias = "chat-socket-has-no-channel-layer"

    async def connect(self) -> None:
        self.principal: Principal | None = None
        # What the principal came from, kept to check it again: a key (or dev open access) or a session.
        self.authorization: str | None = None
        self.session_key: str | None = None
        self.conversations: dict[Any, asyncio.Task] = {}
        self.watcher: asyncio.Task | None = None
        self.ending = False
        self.recheck_failing = False
        client = self.scope.get("client")
        self.client_host: str | None = client[0] if client else None
        await self.accept()
        try:
            await self._authenticate_on_connect()
        except Exception as exc:
            error = unavailable(exc)
            if error is None:
                raise
            # PostgreSQL or Redis is down and this credential is not warm: say so, and let the client retry.
            await self.send_error(None, error)
            await self.close(code=CLOSE_TRY_AGAIN_LATER)

    async def _authenticate_on_connect(self) -> None:
        authorization = self._header(b"authorization")
        query_key = parse_qs(self.scope.get("query_string", b"").decode(errors="replace")).get("api_key")
        if query_key and not authorization:
            authorization = f"Bearer {query_key[0]}"
        if not authorization:
            # The dashboard's chat page: a logged-in browser session acts for the user's organization.
            principal = await session_principal(self.scope)
            if principal is not None:
                self._serve(principal, session_key=self.scope["session"].session_key)
                return
        try:
            principal = await pipeline.authenticate(authorization, self.client_host)
        except OpenAIError as exc:
            if authorization:  # A wrong key is final; a missing one may still come as an auth message.
                await self.send_error(None, exc)
                await self.close(code=CLOSE_UNAUTHENTICATED)
            return
        self._serve(principal, authorization=authorization)

    def _serve(self, principal: Principal, *, authorization: str | None = None,
               session_key: str | None = None) -> None:
        """Act for `principal` from now on, and keep checking the credential it came from."""
        self.principal = principal
        self.authorization = authorization
        self.session_key = session_key
        self.checked_at = time.monotonic()
        if self.watcher is None:
            self.watcher = asyncio.ensure_future(self._watch())

    async def _watch(self) -> None:
        while not self.ending:
            await asyncio.sleep(RECHECK_SECONDS)
            await self._recheck()

    async def _principal_now(self) -> Principal:
        """The socket's principal as of now; raises SessionEnded when its credential no longer holds."""
        if self.session_key is not None:
            return await _session_principal_now(self.session_key, self.principal.organization.pk)
        try:
            # Exactly the rule of a /v1 request (the one principal cache: a warm key, no thread hop).
            return await pipeline.authenticate(self.authorization, self.client_host)
        except OpenAIError as exc:
            if exc.status != 401:
                raise
            raise SessionEnded(CLOSE_UNAUTHENTICATED, exc) from None

    async def _recheck(self, conversation: Any = None) -> bool:
        """Whether the socket may go on; if not, it is being closed."""
        if self.ending or self.principal is None:
            return not self.ending
        try:
            key = self.principal.api_key
            if key is not None and not key.is_usable(timezone.now()):
                # Expiry needs no database: checked here, so an outage never stretches it.
                raise SessionEnded(CLOSE_UNAUTHENTICATED, OpenAIError(401, "API key is expired or revoked",
                                                                      code="invalid_api_key"))
            self.principal = await self._principal_now()
        except SessionEnded as ended:
            await self._end(ended, conversation)
            return False
        except Exception as exc:
            # A lookup that failed (the database is down) revokes nothing at once: the socket goes on as
            # it was and the next check tries again, for as long as a /v1 request with a warm key would
            # be served (the key cache's lifetime plus DB_OUTAGE_GRACE_S); then it is told and closed.
            if not self.recheck_failing:
                log.warning("could not re-check a chat socket's credential", exc_info=True)
            self.recheck_failing = True
            if time.monotonic() - self.checked_at > KEY_CACHE_SECONDS + settings.DB_OUTAGE_GRACE_S:
                error = unavailable(exc) or OpenAIError(503, "The socket's credential cannot be checked now.",
                                                        code="service_unavailable")
                await self._end(SessionEnded(CLOSE_TRY_AGAIN_LATER, error), conversation)
                return False
        else:
            self.recheck_failing = False
            self.checked_at = time.monotonic()
        return True

    async def _end(self, ended: SessionEnded, conversation: Any = None) -> None:
        """Cancel what runs, say why, close."""
        if self.ending:
            return
        self.ending = True
        self.principal = None
        running = list(self.conversations.values())
        for task in running:
            task.cancel()
        if running:  # Their "cancelled" frames go out before the last error frame.
            await asyncio.wait(running, timeout=1)
        # The client may have gone meanwhile: then there is no one left to tell.
        with contextlib.suppress(Exception):
            await self.send_error(conversation, ended.error)
            await self.close(code=ended.close_code)

    def _header(self, name: bytes) -> str | None:
        for key, value in self.scope.get("headers", []):
            if key == name:
                return value.decode("latin-1")
        return None

    async def disconnect(self, code: int) -> None:
        self.ending = True
        if self.watcher is not None and self.watcher is not asyncio.current_task():
            self.watcher.cancel()
        for task in list(self.conversations.values()):
            task.cancel()

    @classmethod
    async def decode_json(cls, text_data: str) -> Any:
        return orjson.loads(text_data)

    @classmethod
    async def encode_json(cls, content: Any) -> str:
        return orjson.dumps(content).decode()

    async def receive(self, text_data: str | None = None, bytes_data: bytes | None = None, **kwargs) -> None:
        raw = text_data if text_data is not None else bytes_data or b""
        try:
            # The same limits as a /v1 body: too deep a frame would fail later, as a 500, on its way upstream.
            content = jsonsafe.loads(raw, refuse_nul=False)
        except jsonsafe.UnsafeJSON as exc:
            await self.send_error(None, invalid(f"Frames must be JSON objects: {exc.message}", code="invalid_json"))
            return
        if not isinstance(content, dict):
            await self.send_error(None, invalid("Frames must be JSON objects."))
            return
        await self.receive_json(content)

    async def receive_json(self, content: dict[str, Any], **kwargs) -> None:
        if self.ending:
            return
        kind = content.get("type", "chat")
        conversation = content.get("id")
        if kind == "auth":
            await self.authenticate(content)
        elif kind == "cancel":
            task = self.conversations.get(conversation)
            if task is None:
                await self.send_error(conversation, invalid(f"No running conversation with id {conversation!r}.",
                                                            "id", "unknown_id"))
            else:
                task.cancel()
        elif kind == "chat":
            await self.start(conversation, content)
        else:
            await self.send_error(conversation, invalid(f"Unknown frame type {kind!r}; use chat, cancel or auth.",
                                                        "type", "invalid_value"))

    async def authenticate(self, content: dict[str, Any]) -> None:
        key = content.get("api_key")
        if not isinstance(key, str) or not key:
            await self.send_error(None, invalid("'api_key' must be a non-empty string.", "api_key"))
            return
        try:
            principal = await pipeline.authenticate(f"Bearer {key}", None)
        except OpenAIError as exc:
            await self.send_error(None, exc)
            return
        self._serve(principal, authorization=f"Bearer {key}")
        await self.send_json({"type": "authenticated", "organization": self.principal.organization.slug})

    async def start(self, conversation: Any, content: dict[str, Any]) -> None:
        if not isinstance(conversation, str | int) or isinstance(conversation, bool):
            await self.send_error(None, invalid("Every chat frame needs an 'id' (string or integer).", "id",
                                                "missing_required_parameter"))
            return
        if conversation in self.conversations:
            await self.send_error(conversation, invalid(f"Conversation {conversation!r} is still running.", "id",
                                                        "duplicate_id"))
            return
        if self.principal is None:
            await self.send_error(conversation, OpenAIError(
                401, "Authenticate first: send {\"type\": \"auth\", \"api_key\": ...}.", code="missing_api_key"))
            return
        if not await self._recheck(conversation):
            return
        body = {k: v for k, v in content.items() if k not in _PROTOCOL_KEYS}
        task = asyncio.ensure_future(self.converse(conversation, body))
        self.conversations[conversation] = task
        task.add_done_callback(lambda done: self._forget(conversation, done))

    def _forget(self, conversation: Any, task: asyncio.Task | None = None) -> None:
        task = task or asyncio.current_task()
        if self.conversations.get(conversation) is task:
            del self.conversations[conversation]

    async def converse(self, conversation: Any, body: dict[str, Any]) -> None:
        try:
            call = await pipeline.prepare(self.principal, body, force_stream=True)

            async def waiting(request: dict[str, Any]) -> None:
                await self.send_json({"type": "approval", "id": conversation, "request": request})

            await hold_request(call, notify=waiting)  # a policy's approval_required: a person decides first
            async with contextlib.aclosing(call.stream()) as deltas:
                async for delta in deltas:
                    if delta.content or delta.tool_calls:
                        frame: dict[str, Any] = {"type": "delta", "id": conversation, "content": delta.content}
                        if delta.index:
                            frame["index"] = delta.index
                        if delta.tool_calls:
                            frame["tool_calls"] = delta.tool_calls
                        await self.send_json(frame)
            # Forgotten before the last frame, so the client may reuse the id as soon as it sees it.
            self._forget(conversation)
            done: dict[str, Any] = {"type": "done", "id": conversation, "model": call.model_name,
                                    "usage": call.usage, "finish_reason": call.finish_reason}
            if call.route is not None:
                # How `model: "auto"` chose the block (the HTTP reply's x-switchboard-route, as an object).
                done["route"] = call.route.to_dict()
            await self.send_json(done)
        except asyncio.CancelledError:
            self._forget(conversation)
            with contextlib.suppress(Exception):
                await self.send_json({"type": "cancelled", "id": conversation})
            raise
        except OpenAIError as exc:
            self._forget(conversation)
            await self.send_error(conversation, exc)
        except Exception as exc:
            error = unavailable(exc)
            if error is None:
                log.exception("websocket conversation failed")
                error = OpenAIError(500, "The gateway failed to handle the request.", type="server_error",
                                    code="internal_error")
            self._forget(conversation)
            await self.send_error(conversation, error)

    async def send_error(self, conversation: Any, error: OpenAIError) -> None:
        await self.send_json({"type": "error", "id": conversation, "status": error.status, **error.body()})
