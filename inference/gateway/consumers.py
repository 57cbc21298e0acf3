"""The /v1 HTTP endpoints as Channels AsyncHttpConsumers (a Django view costs ~1 ms more a request).

These consumers only translate between ASGI and the pipeline: read the request, call
`pipeline`, frame the answer (JSON or SSE), and render any OpenAIError the same way.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from typing import Any
from urllib.parse import parse_qs

import orjson
from channels.exceptions import StopConsumer
from channels.generic.http import AsyncHttpConsumer
from django.conf import settings

from inference.gateway import pipeline
from inference.gateway.blocks import list_blocks
from inference.gateway.embeddings import EmbeddingCall, prepare_embeddings
from inference.gateway.errors import OpenAIError, unavailable
from inference.gateway.sse import DONE, ChunkWriter, error_event
from inference.gateway.validation import check_model_name, parse_json
from inference.workflows.holds import hold_request
from registry.egress import HOPS_HEADER
from registry.models import Block
from registry.selectors import block_reference
from registry.tenancy.access import model_not_found

log = logging.getLogger(__name__)

JSON_HEADERS = [(b"content-type", b"application/json")]
# ASGI header names are lower-case bytes.
HOPS_HEADER_KEY = HOPS_HEADER.lower().encode()
SSE_HEADERS = [(b"content-type", b"text/event-stream"), (b"cache-control", b"no-cache"),
               (b"x-accel-buffering", b"no")]
# Every /v1 response carries one: the upstream's when it sent one, else the gateway's own.
REQUEST_ID = b"x-request-id"
# Present (value "estimated") when the usage in the response is the gateway's estimate, not a token count.
USAGE_HEADER = (b"x-switchboard-usage", b"estimated")
# Present when `model: "auto"` chose the block: how (inference/planner/routing.py, Route.header).
ROUTE_HEADER = b"x-switchboard-route"


def route_headers(call: pipeline.ChatCall) -> list[tuple[bytes, bytes]]:
    return [] if call.route is None else [(ROUTE_HEADER, call.route.header().encode("latin-1"))]


def _header_safe(value: str | None) -> bytes | None:
    """An upstream's request id, if it can travel as a header value as it is (printable ASCII, short)."""
    if value and len(value) <= 200 and value.isascii() and value.isprintable():
        return value.encode()
    return None


class OpenAIConsumer(AsyncHttpConsumer):
    """Plain request/response plumbing shared by the /v1 consumers."""

    # No channel layer: a /v1 request never receives group messages, and creating a channel
    # per request (a Redis round trip in production) would double the gateway's cost.
    channel_layer_alias = "gateway-has-no-channel-layer"
    allowed_methods: tuple[str, ...] = ("GET",)

    async def __call__(self, scope, receive, send):
        self.receive = receive  # The streaming path listens for http.disconnect itself.
        self.request_id = pipeline.new_request_id()
        self.call: pipeline.ChatCall | None = None
        self.stream_started = False  # an approval hold sends the SSE headers before the answer
        await super().__call__(scope, receive, send)

    def request_id_header(self) -> tuple[bytes, bytes]:
        upstream = _header_safe(self.call.upstream_request_id) if self.call is not None else None
        return REQUEST_ID, upstream or self.request_id.encode()

    async def dispatch(self, message):
        # Channels closes stale DB connections before every message (a thread hop each); the
        # gateway reaches the database only through its own cached, thread-side lookups.
        handler = getattr(self, message["type"].replace(".", "_"), None)
        if handler is None:
            raise ValueError(f"No handler for message type {message['type']}")
        await handler(message)

    async def http_request(self, message):
        # Channels would gather the whole body before handle() could look at its size; counting
        # as it arrives refuses an oversized one after the cap, not after the client's last byte.
        self.body_size = getattr(self, "body_size", 0) + len(message.get("body", b""))
        if self.body_size > settings.GATEWAY_MAX_BODY_BYTES or self._declared_too_large():
            await self.send_error(body_too_large())
            raise StopConsumer()
        await super().http_request(message)

    def _declared_too_large(self) -> bool:
        length = self.header(b"content-length")
        return length is not None and length.isdigit() and int(length) > settings.GATEWAY_MAX_BODY_BYTES

    async def http_disconnect(self, message):
        raise StopConsumer()

    def header(self, name: bytes) -> str | None:
        for key, value in self.scope["headers"]:
            if key == name:
                return value.decode("latin-1")
        return None

    @property
    def client_host(self) -> str | None:
        client = self.scope.get("client")
        return client[0] if client else None

    async def principal(self):
        return await pipeline.authenticate(self.header(b"authorization"), self.client_host)

    async def send_json(self, status: int, body: bytes, headers: list | None = None) -> None:
        await self.send({"type": "http.response.start", "status": status,
                         "headers": [*JSON_HEADERS, (b"content-length", b"%d" % len(body)), self.request_id_header(),
                                     *(headers or [])]})
        await self.send({"type": "http.response.body", "body": body})

    async def send_error(self, error: OpenAIError) -> None:
        headers = [(k.lower().encode(), str(v).encode()) for k, v in error.headers.items()]
        await self.send_json(error.status, error.json(), headers)

    async def handle(self, body: bytes) -> None:
        try:
            if self.scope["method"] not in self.allowed_methods:
                raise OpenAIError(405, f"Method {self.scope['method']} is not allowed on {self.scope['path']}; "
                                       f"use {', '.join(self.allowed_methods)}.", code="method_not_allowed",
                                  headers={"Allow": ", ".join(self.allowed_methods)})
            await self.respond(body)
        except OpenAIError as exc:
            await self.send_error(exc)
        except Exception as exc:
            error = unavailable(exc)
            if error is None:
                log.exception("gateway request %s to %s failed", self.request_id, self.scope["path"])
                error = OpenAIError(500, "The gateway failed to handle the request.", type="server_error",
                                    code="internal_error")
            await self.send_error(error)

    async def respond(self, body: bytes) -> None:
        raise NotImplementedError


def body_too_large() -> OpenAIError:
    return OpenAIError(413, f"The request body is larger than {settings.GATEWAY_MAX_BODY_BYTES} bytes.",
                       code="request_too_large")


class ChatCompletionsConsumer(OpenAIConsumer):
    allowed_methods = ("POST",)
    # POST /v1/completions (CompletionsConsumer): a prompt instead of messages.
    text = False

    async def respond(self, body: bytes) -> None:
        hops = pipeline.loop_guard(self.header(HOPS_HEADER_KEY))
        principal = await self.principal()
        started = time.perf_counter()
        parsed = parse_json(body)
        try:
            call = await pipeline.prepare(principal, parsed, hops=hops, request_id=self.request_id,
                                          text=self.text)
        except OpenAIError as exc:
            # Refused before any block ran (bad body, unknown model, a policy, a quota): the
            # request log shows it; the metrics, which count a block's requests, do not.
            pipeline.log_refusal(principal, body=parsed, error=exc, request_id=self.request_id, started=started)
            raise
        self.call = call
        await self.until_hangup(self.held_then_answered(call, parsed))

    async def held_then_answered(self, call: pipeline.ChatCall, body: Any) -> None:
        """The answer, after a person's approval where the policy asks for one (workflows/holds.py): a
        stream starts at once with a comment naming the hold (so the client has the request id for
        GET /v1/requests/<id>), and a refusal then ends it with an error event; a JSON answer waits."""
        try:
            await hold_request(call, notify=self.announce_hold if call.stream_requested else None)
        except OpenAIError as exc:
            # Rejected, expired or unstorable: no block ran, so the request log has it only from here.
            pipeline.log_refusal(call.principal, body=body, error=exc, request_id=call.request_id,
                                 started=call.started)
            if not self.stream_started:
                raise
            await self.send({"type": "http.response.body", "body": error_event(exc)})
            return
        await (self.pump(call) if call.stream_requested else self.reply(call))

    async def announce_hold(self, request: dict) -> None:
        if not self.stream_started:
            await self.send({"type": "http.response.start", "status": 200,
                             "headers": [*SSE_HEADERS, self.request_id_header(), *route_headers(self.call)]})
            self.stream_started = True
        # An SSE comment: OpenAI clients skip it; a person (or curl) sees the hold and its id.
        await self.send({"type": "http.response.body", "body": b": approval " + orjson.dumps(request) + b"\n\n",
                         "more_body": True})

    async def reply(self, call: pipeline.ChatCall) -> None:
        body = orjson.dumps(await call.complete())
        estimated = call.usage_estimated or (call.backend is not None and not call.backend.reports_usage)
        await self.send_json(200, body, [*route_headers(call), *([USAGE_HEADER] if estimated else [])])

    async def until_hangup(self, work) -> None:
        # The work runs beside a listener for http.disconnect, so a client that hangs up
        # cancels it at once, and cancelling it closes the upstream request (or stops the
        # built-in model) even before the first byte of an answer.
        pump = asyncio.ensure_future(work)
        hangup = asyncio.ensure_future(self.receive())
        try:
            await asyncio.wait((pump, hangup), return_when=asyncio.FIRST_COMPLETED)
        finally:
            if not pump.done():
                pump.cancel()
                with contextlib.suppress(asyncio.CancelledError):
                    await pump
            hangup.cancel()
        if not pump.cancelled():
            pump.result()  # Re-raise an error from before the first byte, for handle() to render.

    async def pump(self, call: pipeline.ChatCall) -> None:
        """Frames deltas in one task and writes them from this one, a batch per wake-up.

        Deltas the upstream delivered together (one TCP read) are framed back to back without
        the producer ever suspending, so they leave in one write instead of one each; a
        token-by-token stream still goes out token by token.
        """
        outbox: list[bytes] = []
        wake = asyncio.Event()
        state: dict = {"writer": None, "error": None, "done": False}

        async def produce() -> None:
            try:
                async with contextlib.aclosing(call.stream()) as deltas:
                    async for delta in deltas:
                        if state["writer"] is None:
                            state["writer"] = ChunkWriter(chunk_id=call.response_id, block_id=call.model_name,
                                                          include_usage=call.include_usage, text=call.text)
                        frame = state["writer"].frame(delta)
                        if frame:
                            outbox.append(frame)
                            wake.set()
            except OpenAIError as exc:
                state["error"] = exc
            finally:
                state["done"] = True
                wake.set()

        producer = asyncio.ensure_future(produce())
        try:
            started = self.stream_started
            while True:
                await wake.wait()
                wake.clear()
                if not started:
                    if state["error"] is not None and not outbox:
                        raise state["error"]  # Nothing sent yet: handle() answers with a real status.
                    headers = [*SSE_HEADERS, self.request_id_header(), *route_headers(call)]
                    if call.include_usage and call.backend is not None and not call.backend.reports_usage:
                        # Known before the first byte: this backend's usage is an approximation.
                        headers.append(USAGE_HEADER)
                    await self.send({"type": "http.response.start", "status": 200, "headers": headers})
                    started = True
                if outbox:
                    body = b"".join(outbox)
                    outbox.clear()
                    await self.send({"type": "http.response.body", "body": body, "more_body": True})
                if state["done"] and not outbox:
                    break
        finally:
            if not producer.done():
                producer.cancel()
                with contextlib.suppress(asyncio.CancelledError):
                    await producer
        writer = state["writer"]
        if state["error"] is not None:
            # Headers are gone: the error travels as an event, then the stream ends without [DONE].
            tail = error_event(state["error"])
        elif writer is not None and call.include_usage and not writer.sent_usage:
            # The client asked for usage and the backend sent none: report what the gateway metered.
            tail = writer.usage_chunk(call.usage) + DONE
        else:
            tail = DONE
        await self.send({"type": "http.response.body", "body": tail})


class CompletionsConsumer(ChatCompletionsConsumer):
    """POST /v1/completions (legacy text completion): the same auth, admission, quotas, metrics and
    policies as chat; backends that cannot complete raw text answer 400 `unsupported_endpoint`."""

    text = True


class EmbeddingsConsumer(ChatCompletionsConsumer):
    """POST /v1/embeddings (inference/gateway/embeddings.py): the chat path's auth, admission, quotas,
    policies, metrics and x-request-id around a backend's embed()."""

    async def respond(self, body: bytes) -> None:
        hops = pipeline.loop_guard(self.header(HOPS_HEADER_KEY))
        principal = await self.principal()
        call = await prepare_embeddings(principal, parse_json(body), hops=hops, request_id=self.request_id)
        self.call = call
        await self.until_hangup(self.reply_embeddings(call))

    async def reply_embeddings(self, call: EmbeddingCall) -> None:
        body = orjson.dumps(await call.embed())
        await self.send_json(200, body, [USAGE_HEADER] if call.usage_estimated else None)


def model_object(block: Block, reference: str) -> dict:
    """`reference`: how the caller names the block (a foreign block by its qualified id)."""
    return {"id": reference, "object": "model", "created": int(block.created_at.timestamp()),
            "owned_by": block.organization.slug}


def models_kind(query_string: bytes) -> str:
    """?kind=optimizer lists the optimizer blocks; LLMs otherwise, as OpenAI clients expect."""
    kinds = parse_qs(query_string.decode("latin-1"), keep_blank_values=True).get("kind") or [Block.LLM]
    if len(kinds) > 1 or kinds[0] not in (Block.LLM, Block.OPTIMIZER):
        raise OpenAIError(400, f"kind must be '{Block.LLM}' or '{Block.OPTIMIZER}'.", param="kind",
                          code="invalid_kind")
    return kinds[0]


class ModelsConsumer(OpenAIConsumer):
    async def respond(self, body: bytes) -> None:
        principal = await self.principal()
        model = self.scope["url_route"]["kwargs"].get("model")
        if model is not None:
            check_model_name(model)
            block = (await pipeline.resolve_model(principal, model)).block
            if not block.backend_type:  # not in the list either: it cannot answer
                raise pipeline.gate_error(model_not_found(model))
            reference = block_reference(block, organization=principal.organization)
            await self.send_json(200, orjson.dumps(model_object(block, reference)))
            return
        blocks = await list_blocks(principal.organization, models_kind(self.scope.get("query_string", b"")))
        data = [model_object(b, reference) for reference, b in blocks if principal.allows_block(b)]
        await self.send_json(200, orjson.dumps({"object": "list", "data": data}))


class NotFoundConsumer(OpenAIConsumer):
    allowed_methods = ("GET", "POST", "PUT", "PATCH", "DELETE", "HEAD", "OPTIONS")

    async def respond(self, body: bytes) -> None:
        raise OpenAIError(404, f"Unknown request URL: {self.scope['method']} {self.scope['path']}.",
                          code="unknown_url")
