"""HTTP consumers for requests by id: where one stands, resume a queued one's token stream, cancel it.

GET  /v1/requests/<id>          a request held for approval (inference/workflows/holds.py), or queued
GET  /v1/requests/<id>/stream   SSE (OpenAI chunk format, with `id:` lines) after Last-Event-ID
POST /v1/requests/<id>/cancel   stops the task; the worker closes its engine request
Only the organization that made the request may touch it; others get 404 (ids are not leaked).
"""

from __future__ import annotations

import time
from typing import Any

import orjson
from channels.generic.http import AsyncHttpConsumer
from django.conf import settings

from inference.backends.base import BackendError
from inference.backends.queued import streams
from inference.workflows.holds import request_dict, request_hold_get
from registry.asyncdb import in_db_thread
from registry.auth import AuthError, aprincipal_for
from registry.principal import Principal

JSON = [(b"Content-Type", b"application/json")]


def error_body(message: str, *, type_: str, code: str, param: str | None = None) -> bytes:
    return orjson.dumps({"error": {"message": message, "type": type_, "param": param, "code": code}})


class RequestConsumer(AsyncHttpConsumer):
    method = "GET"

    async def handle(self, body: bytes) -> None:
        if self.scope["method"] != self.method:
            await self.send_response(405, error_body(f"use {self.method}", type_="invalid_request_error",
                                                     code="method_not_allowed"),
                                     headers=[*JSON, (b"Allow", self.method.encode())])
            return
        headers = {k.decode().lower(): v.decode(errors="replace") for k, v in self.scope["headers"]}
        client = self.scope.get("client") or (None, None)
        try:
            principal = await aprincipal_for(headers.get("authorization"), client[0])
        except AuthError as exc:
            await self.send_response(401, error_body(exc.message, type_="invalid_request_error", code=exc.code),
                                     headers=JSON)
            return
        if principal is None:
            await self.send_response(401, error_body("You didn't provide an API key.",
                                                     type_="invalid_request_error", code="missing_api_key"),
                                     headers=JSON)
            return
        request_id = self.scope["url_route"]["kwargs"]["request_id"]
        record = await self.lookup(request_id, principal)
        if record is None:
            await self.send_response(404, error_body(f"no request {request_id!r}", type_="invalid_request_error",
                                                     code="request_not_found", param="request_id"),
                                     headers=JSON)
            return
        await self.serve(request_id, record, headers)

    async def lookup(self, request_id: str, principal: Principal) -> dict[str, Any] | None:
        """The queued request's record when the caller's organization made it (else None: a 404)."""
        record = await streams.request_load(request_id)
        return record if record is not None and record.get("organization_id") == principal.organization.pk else None

    async def serve(self, request_id: str, record: dict[str, Any], headers: dict[str, str]) -> None:
        raise NotImplementedError


_ahold_get = in_db_thread(request_hold_get)


class StatusConsumer(RequestConsumer):
    """Where a request stands: held for approval (awaiting_approval, approved, rejected, expired,
    cancelled, with its approval), or queued (a queued request's record lives in Redis)."""

    method = "GET"

    async def lookup(self, request_id: str, principal: Principal) -> dict[str, Any] | None:
        held = await _ahold_get(organization=principal.organization, request_id=request_id)
        if held is not None:
            return request_dict(held)
        if not _has_redis():
            return None
        record = await super().lookup(request_id, principal)
        if record is None:
            return None
        return {"id": request_id, "object": "request", "status": "queued",
                "model": (record.get("request") or {}).get("model") or record.get("block_id"), "approval": None}

    async def serve(self, request_id: str, record: dict[str, Any], headers: dict[str, str]) -> None:
        await self.send_response(200, orjson.dumps(record), headers=JSON)


class CancelConsumer(RequestConsumer):
    method = "POST"

    async def serve(self, request_id: str, record: dict[str, Any], headers: dict[str, str]) -> None:
        await streams.request_cancel(request_id)
        await self.send_response(200, orjson.dumps({"id": request_id, "object": "request.cancel",
                                                    "cancelled": True}), headers=JSON)


class ResumeConsumer(RequestConsumer):
    method = "GET"

    async def serve(self, request_id: str, record: dict[str, Any], headers: dict[str, str]) -> None:
        last = headers.get("last-event-id") or "0-0"
        owner, entry = streams.parse_event_id(last)
        if (owner and owner != request_id) or not _is_entry_id(entry):
            await self.send_response(400, error_body("Last-Event-ID is not an event of this request",
                                                     type_="invalid_request_error", code="invalid_last_event_id",
                                                     param="Last-Event-ID"), headers=JSON)
            return
        await streams.request_reattach(request_id)
        await self.send_headers(status=200, headers=[(b"Content-Type", b"text/event-stream"),
                                                       (b"Cache-Control", b"no-cache")])
        created = int(time.time())
        model = record.get("block_id")
        finished = False
        try:
            async for delta in streams.stream_read(request_id, after=entry, timeout_s=_upstream_timeout()):
                chunk: dict[str, Any] = {
                    "id": f"chatcmpl-{request_id}", "object": "chat.completion.chunk", "created": created,
                    "model": model, "choices": [{"index": delta.index, "delta": {"content": delta.content}
                                                 if delta.content else {}, "finish_reason": delta.finish_reason}]}
                if delta.usage:
                    chunk["usage"] = delta.usage
                frame = b"id: " + delta.event_id.encode() + b"\ndata: " + orjson.dumps(chunk) + b"\n\n"
                await self.send_body(frame, more_body=True)
            finished = True
        except BackendError as exc:
            # As on /v1/chat/completions: the error travels as an event and the stream ends without [DONE].
            await self.send_body(b"data: " + error_body(exc.message, type_="api_error", code=exc.code) + b"\n\n")
            return
        finally:
            if not finished:
                await streams.request_cancel(request_id, after_s=_grace())
        await self.send_body(b"data: [DONE]\n\n")


def _is_entry_id(value: str) -> bool:
    ms, _, seq = value.partition("-")
    return ms.isdigit() and seq.isdigit()


def _has_redis() -> bool:
    return bool(settings.REDIS_URL)


def _grace() -> float:
    from django.conf import settings

    return settings.QUEUED_RESUME_GRACE_S


def _upstream_timeout() -> float:
    from django.conf import settings

    return settings.UPSTREAM_TIMEOUT_S
