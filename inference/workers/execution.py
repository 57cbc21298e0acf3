"""Queued path (worker side): run one stored request against its engine, into its token stream.

Runs on the worker's shared event loop (inference/workers/loop.py). A re-delivered task (its
first worker died) finds the tokens already published and continues after them, passing the
published text as an assistant prefill, so the reader sees neither a gap nor a repeat.
"""

from __future__ import annotations

import asyncio
import logging
import uuid
from typing import Any

from inference.backends.base import BackendError, ChatRequest, StreamingBackend
from inference.backends.factory import own_backend_for_block
from inference.backends.openai_compat import OpenAIBackend
from inference.backends.sglang import SGLangBackend
from inference.workers import stream_writer
from inference.workers.supervisor import local_endpoint
from registry.asyncdb import in_db_thread
from registry.models import Block
from registry.ttlcache import AsyncTTLCache

log = logging.getLogger(__name__)


# Blocks re-read at most this often: 64 tasks arriving together need one query, not 64.
# Config edits reach workers within this delay.
_blocks: AsyncTTLCache[Block] = AsyncTTLCache(ttl=2.0)


@in_db_thread
def _load_block(**lookup: Any) -> Block:
    return Block.objects.get(**lookup)


async def _block(block_id: str, block_pk: int | None) -> Block:
    if block_pk is None:  # a task queued before ids became per-organization
        return await _blocks.get(block_id, lambda: _load_block(block_id=block_id))
    return await _blocks.get(block_pk, lambda: _load_block(pk=block_pk))


async def inner_backend(block_id: str, block_pk: int | None = None) -> StreamingBackend:
    """The backend that really does the work: this node's engine, or the block's own backend.
    `block_pk` names the block (ids repeat across organizations); `block_id` is its served name."""
    block = await _block(block_id, block_pk)
    if block.backend_type == "sglang":
        endpoint = local_endpoint(block.pk) or local_endpoint(block_id)
        if endpoint:
            # This worker's own engine: internal by construction (egress policy does not apply).
            return OpenAIBackend(base_url=f"{endpoint}/v1", model=block_id,
                                 timeout_s=(block.backend_config or {}).get("timeout_s"), internal=True)
        # No engine of ours serves it (a worker on a queue of its own): any ready engine will do.
        return SGLangBackend(block_id=block_id, timeout_s=(block.backend_config or {}).get("timeout_s"),
                             block_pk=block.pk)
    return own_backend_for_block(block)


def continued(request: ChatRequest, published: str) -> ChatRequest:
    """The same request, continuing after text an earlier attempt already published."""
    messages = list(request.messages)
    if messages and messages[-1].get("role") == "assistant":
        prefix = messages[-1].get("content") or ""
        messages[-1] = {**messages[-1], "content": prefix + published}
    else:
        messages.append({"role": "assistant", "content": published})
    request.messages = messages
    if request.max_tokens:
        # Approximate: whitespace words stand in for tokens here; the engine caps it anyway.
        request.max_tokens = max(1, request.max_tokens - len(published.split()))
    return request


async def execute_requests(request_ids: list[str]) -> list[str]:
    """One task's requests, side by side: each stands alone (its own lease, stream and cancel)."""
    token = uuid.uuid4().hex
    begun = await stream_writer.requests_begin(request_ids, token)  # one round trip for the whole task
    runs = [execute_request(i, token=token, begun=b) for i, b in zip(request_ids, begun, strict=True)]
    outcomes = await asyncio.gather(*runs, return_exceptions=True)
    for request_id, outcome in zip(request_ids, outcomes, strict=True):
        if isinstance(outcome, BaseException) and not isinstance(outcome, asyncio.CancelledError):
            log.error("queued request %s failed", request_id, exc_info=outcome)
    return [o if isinstance(o, str) else "error" for o in outcomes]


async def execute_request(request_id: str, *, token: str | None = None, begun: stream_writer.Begun | None = None) -> str:
    token = token or uuid.uuid4().hex
    record, leased, published, finished = begun or await stream_writer.request_begin(request_id, token)
    if record is None:
        if leased:
            await stream_writer.lease_release(request_id, token)
        return "expired"
    # A re-delivered copy of a task that is still running elsewhere must not run twice: wait
    # until the other executor finishes (stream done) or dies (its lease expires).
    while not leased:
        if finished:
            return "already-finished"
        await asyncio.sleep(0.25)
        record, leased, published, finished = await stream_writer.request_begin(request_id, token)
    try:
        if finished:
            return "already-finished"
        return await _execute(request_id, record, published)
    finally:
        await stream_writer.lease_release(request_id, token)


async def _execute(request_id: str, record: dict[str, Any], published: dict[int, str]) -> str:
    writer = stream_writer.StreamWriter(request_id)
    try:
        request = ChatRequest(**record["request"])
        if published.get(0) and request.n == 1:
            request = continued(request, published[0])
        backend = await inner_backend(record["block_id"], record.get("block_pk"))
    except Exception as exc:
        log.exception("queued request %s could not start", request_id)
        stream_writer.flush_hub().register(writer)
        await writer.finish(error={"message": f"worker could not start the request: {exc}",
                                  "status": 502, "code": "worker_error"})
        return "error"
    return await _pump(request_id, backend, request, writer)


async def _pump(request_id: str, backend: StreamingBackend, request: ChatRequest,
                writer: stream_writer.StreamWriter) -> str:
    finishes: dict[str, str] = {}
    usage: dict[str, Any] | None = None

    async def consume() -> None:
        nonlocal usage
        stream = backend.stream_chat(request)
        try:
            async for delta in stream:
                writer.add(delta)
                if delta.finish_reason:
                    finishes[str(delta.index)] = delta.finish_reason
                if delta.usage:
                    usage = delta.usage
        finally:
            # Closing the stream closes the engine connection: the engine aborts the request.
            await stream.aclose()

    consumer = asyncio.ensure_future(consume())
    cancelled = asyncio.ensure_future(writer.cancelled.wait())
    stream_writer.flush_hub().register(writer)
    try:
        await asyncio.wait({consumer, cancelled}, return_when=asyncio.FIRST_COMPLETED)
        if not consumer.done():
            consumer.cancel()
            await asyncio.gather(consumer, return_exceptions=True)
            await writer.finish(done=True, f={"0": "cancelled"}, u=usage)
            return "cancelled"
        consumer.result()
    except BackendError as exc:
        # The upstream's own status travels too: the gateway's retry_on policy is written in its terms.
        await writer.finish(error={"message": exc.message, "status": exc.status, "code": exc.code,
                                   "upstream_status": exc.upstream_status})
        return "error"
    except asyncio.CancelledError:
        consumer.cancel()
        raise
    except Exception as exc:
        log.exception("queued request %s failed", request_id)
        await writer.finish(error={"message": f"worker error: {exc}", "status": 502, "code": "worker_error"})
        return "error"
    finally:
        cancelled.cancel()
    await writer.finish(done=True, f=finishes or {"0": "stop"}, u=usage)
    return "done"
