"""WebSocket chat at /ws/chat/: many concurrent conversations over one socket, same pipeline as /v1.

Protocol (JSON text frames):
  client -> {"type": "auth", "api_key": "sb-..."}                 (only if not sent at connect)
  client -> {"id": "c1", "model": "...", "messages": [...], ...}  (any /v1/chat/completions field)
  client -> {"type": "cancel", "id": "c1"}
  server -> {"type": "delta", "id": "c1", "content": "..."}
  server -> {"type": "done", "id": "c1", "usage": {...}, "finish_reason": "stop"}
  server -> {"type": "error", "id": "c1", "error": {"message", "type", "param", "code"}}
  server -> {"type": "cancelled", "id": "c1"}
The key comes from the `Authorization: Bearer` header (non-browser clients), the
`?api_key=` query parameter, or a first `auth` message (browsers, which cannot set headers
and should keep keys out of URLs).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from typing import Any
from urllib.parse import parse_qs

import orjson
from channels.db import database_sync_to_async
from channels.generic.websocket import AsyncJsonWebsocketConsumer

from inference.gateway import pipeline
from inference.gateway.errors import OpenAIError, invalid, unavailable
from registry import jsonsafe
from registry.auth import principal_for_user
from registry.principal import Principal

log = logging.getLogger(__name__)

# Keys of a chat frame that belong to the socket protocol, not to the chat request.
_PROTOCOL_KEYS = ("id", "type")


@database_sync_to_async
def _principal_for_session_user(user) -> Principal | None:
    return principal_for_user(user) if user.is_authenticated else None


async def session_principal(scope: dict[str, Any]) -> Principal | None:
    user = scope.get("user")
    if user is None:
        return None
    return await _principal_for_session_user(user)


class ChatSocketConsumer(AsyncJsonWebsocketConsumer):
    async def connect(self) -> None:
        self.principal = None
        self.conversations: dict[Any, asyncio.Task] = {}
        await self.accept()
        authorization = self._header(b"authorization")
        query_key = parse_qs(self.scope.get("query_string", b"").decode(errors="replace")).get("api_key")
        if query_key and not authorization:
            authorization = f"Bearer {query_key[0]}"
        client = self.scope.get("client")
        if not authorization:
            # The dashboard's chat page: a logged-in browser session acts for the user's organization.
            self.principal = await session_principal(self.scope)
            if self.principal is not None:
                return
        try:
            self.principal = await pipeline.authenticate(authorization, client[0] if client else None)
        except OpenAIError as exc:
            if authorization:  # A wrong key is final; a missing one may still come as an auth message.
                await self.send_error(None, exc)
                await self.close(code=4401)

    def _header(self, name: bytes) -> str | None:
        for key, value in self.scope.get("headers", []):
            if key == name:
                return value.decode("latin-1")
        return None

    async def disconnect(self, code: int) -> None:
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
            self.principal = await pipeline.authenticate(f"Bearer {key}", None)
        except OpenAIError as exc:
            await self.send_error(None, exc)
            return
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
            await self.send_json({"type": "done", "id": conversation, "model": call.model_name,
                                  "usage": call.usage, "finish_reason": call.finish_reason})
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
