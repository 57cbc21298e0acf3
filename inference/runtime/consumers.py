"""The runtime's transports: the WebSocket at /ws/runtime/ (many requests in flight, each answered by
packets, cancel by id) and POST /v1/runtime for one request at a time. Both run inference.runtime.vm.

Socket frames (docs/runtime.md):
  client -> {"type": "auth", "api_key": "sb-..."}                   (only if not sent at connect)
  client -> {"id": "r1", "type": "call_function", "function": "echo", "input": {...}}   (and the other
            request types of vm.py)
  client -> {"type": "cancel", "id": "r1"}
  server -> {"id": "r1", "status": "ok", "body": ..., "finish": false}   (zero or more)
  server -> {"id": "r1", "status": "ok", "body": ..., "finish": true}    (the last one; no "body" when the
                                                                          request answers nothing)
  server -> {"id": "r1", "status": "error", "body": {"message", "code", "param", "http_status"}, "finish": true}
  server -> {"id": "r1", "status": "cancelled", "finish": true}
Authentication, its re-checks and the close codes are the chat socket's (inference/gateway/websocket_consumers.py).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from typing import Any

import orjson

from inference.gateway.consumers import OpenAIConsumer
from inference.gateway.errors import OpenAIError, invalid, unavailable
from inference.gateway.validation import parse_json
from inference.gateway.websocket_consumers import ChatSocketConsumer
from inference.runtime.errors import VMFailure
from inference.runtime.vm import execute

log = logging.getLogger(__name__)


def _failure_body(error: OpenAIError | VMFailure) -> dict[str, Any]:
    return {"message": error.message, "code": error.code, "param": error.param, "http_status": error.status}


def _unexpected(exc: Exception) -> VMFailure:
    error = unavailable(exc)
    if error is not None:
        return VMFailure(error.status, error.message, code=error.code or "service_unavailable")
    log.exception("runtime request failed")
    return VMFailure(500, "The runtime failed to handle the request.", code="internal_error")


class RuntimeSocketConsumer(ChatSocketConsumer):
    """The chat socket's authentication and lifecycle; runtime requests instead of conversations."""

    async def receive_json(self, content: dict[str, Any], **kwargs) -> None:
        if self.ending:
            return
        kind = content.get("type")
        request_id = content.get("id")
        if kind == "auth":
            await self.authenticate(content)
        elif kind == "cancel":
            task = self.conversations.get(request_id)
            if task is None:
                await self.send_error(request_id, invalid(f"No running request with id {request_id!r}.", "id",
                                                          "unknown_id"))
            else:
                task.cancel()
        else:
            await self.start(request_id, content)

    async def start(self, request_id: Any, content: dict[str, Any]) -> None:
        if not isinstance(request_id, str | int) or isinstance(request_id, bool):
            await self.send_error(None, invalid("Every request needs an 'id' (string or integer).", "id",
                                                "missing_required_parameter"))
            return
        if request_id in self.conversations:
            await self.send_error(request_id, invalid(f"Request {request_id!r} is still running.", "id",
                                                      "duplicate_id"))
            return
        if self.principal is None:
            await self.send_error(request_id, OpenAIError(
                401, "Authenticate first: send {\"type\": \"auth\", \"api_key\": ...}.", code="missing_api_key"))
            return
        if not await self._recheck(request_id):
            return
        task = asyncio.ensure_future(self.run(request_id, content))
        self.conversations[request_id] = task
        task.add_done_callback(lambda done: self._forget(request_id, done))

    async def run(self, request_id: Any, request: dict[str, Any]) -> None:
        # One packet is held back until the next one comes, so the last one goes out marked finish.
        held: list[Any] = []
        try:
            async with contextlib.aclosing(execute(self.principal, request)) as bodies:
                async for body in bodies:
                    if held:
                        await self.send_json({"id": request_id, "status": "ok", "body": held.pop(), "finish": False})
                    held.append(body)
            last: dict[str, Any] = {"id": request_id, "status": "ok", "finish": True}
            if held:
                last["body"] = held.pop()
            self._forget(request_id)  # Before the last packet: the client may reuse the id once it has it.
            await self.send_json(last)
        except asyncio.CancelledError:
            self._forget(request_id)
            with contextlib.suppress(Exception):
                await self.send_json({"id": request_id, "status": "cancelled", "finish": True})
            raise
        except VMFailure as exc:
            self._forget(request_id)
            await self.send_failure(request_id, exc)
        except Exception as exc:
            self._forget(request_id)
            await self.send_failure(request_id, _unexpected(exc))

    async def send_failure(self, request_id: Any, error: VMFailure) -> None:
        await self.send_json({"id": request_id, "status": "error", "body": error.body(), "finish": True})

    async def send_error(self, conversation: Any, error: OpenAIError) -> None:
        await self.send_json({"id": conversation, "status": "error", "body": _failure_body(error), "finish": True})


def http_error(failure: VMFailure, request: dict[str, Any]) -> OpenAIError:
    """A failure in the OpenAI error shape. A 400 for input the schema calls well-formed is a 422: a rule
    it cannot state, or a method's input, whose shape depends on the type of a component in the database."""
    status = failure.status
    if status == 400 and (failure.rule or request.get("type") == "call_method"):
        status = 422
    return OpenAIError(status, failure.message, code=failure.code, param=failure.param)


class RuntimeConsumer(OpenAIConsumer):
    """POST /v1/runtime: one request (a socket frame without `id`), answered once it is done:
    200 {"packets": [body, ...]}, or the OpenAI error shape with the failure's status."""

    allowed_methods = ("POST",)

    async def respond(self, body: bytes) -> None:
        principal = await self.principal()
        request = parse_json(body)
        try:
            packets = [packet async for packet in execute(principal, request)]
        except VMFailure as exc:
            raise http_error(exc, request) from None
        await self.send_json(200, orjson.dumps({"packets": packets}))
