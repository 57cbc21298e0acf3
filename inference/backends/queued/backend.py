"""Queued path (gateway side): enqueue a Celery task on the model's queue, relay its token stream.

The gateway keeps no state of its own: the request record, the tokens and the cancel flag
live in Redis, so any gateway process can resume or cancel any request.
"""

from __future__ import annotations

import asyncio
import dataclasses
import uuid
from collections.abc import AsyncIterator
from typing import Any

from django.conf import settings
from kombu.exceptions import OperationalError
from redis.exceptions import RedisError

from inference.backends.base import BackendError, ChatDelta, ChatRequest, StreamingBackend
from inference.backends.engines import apick_engine
from inference.backends.queued import streams
from inference.backends.queued.enqueue import request_enqueue
from inference.backends.queued.queues import queued_request_queue


class QueuedBackend(StreamingBackend):
    def __init__(self, *, block_id: str, backend_type: str, queue: str | None = None,
                 timeout_s: float | None = None, block_pk: int | None = None):
        self.block_id = block_id
        # The worker loads the block by pk: ids repeat across organizations.
        self.block_pk = block_pk
        self.backend_type = backend_type
        self.queue = queue
        self.timeout_s = timeout_s

    @classmethod
    def for_block(cls, block_id: str, backend_type: str, config: dict[str, Any],
                  block_pk: int | None = None) -> QueuedBackend:
        return cls(block_id=block_id, backend_type=backend_type, queue=config.get("queue"),
                   timeout_s=config.get("timeout_s"), block_pk=block_pk)

    async def queue_for(self) -> str:
        node = None
        if not self.queue and self.backend_type == "sglang":
            engine = await apick_engine(self.block_pk if self.block_pk is not None else self.block_id)
            if engine is None:
                raise BackendError(f"no ready engine is serving {self.block_id!r}", status=503,
                                   code="engine_unavailable")
            node = engine.node
        return queued_request_queue(configured=self.queue, backend_type=self.backend_type, engine_node=node)

    async def submit(self, request: ChatRequest) -> str:
        """Store the request, enqueue its task; returns the request id."""
        request_id = uuid.uuid4().hex
        queue = await self.queue_for()
        try:
            await request_enqueue(request_id=request_id, queue=queue, record={
                "block_id": self.block_id, "block_pk": self.block_pk, "organization_id": request.organization_id,
                "request": dataclasses.asdict(request), "queue": queue,
            })
        except (RedisError, OperationalError) as exc:
            raise BackendError(f"the inference queue is unavailable: {exc}", status=503,
                               code="queue_unavailable") from exc
        return request_id

    async def stream_chat(self, request: ChatRequest) -> AsyncIterator[ChatDelta]:
        request_id = await self.submit(request)
        finished = False
        try:
            async for delta in streams.stream_read(request_id, timeout_s=self._timeout(request)):
                yield delta
            finished = True
        finally:
            if not finished:
                # The client went away: stop the engine work unless it reconnects in time.
                await asyncio.shield(streams.request_cancel(request_id, after_s=settings.QUEUED_RESUME_GRACE_S))

    def _timeout(self, request: ChatRequest) -> float:
        return request.timeout_s or self.timeout_s or settings.UPSTREAM_TIMEOUT_S

    def run_inference(self, input_data: dict) -> str:
        raise BackendError("queued blocks are served through the gateway (/v1/chat/completions)", status=400)

    def check_execute(self, query: dict) -> tuple[bool, Any]:
        return True, {"dispatch": "queued", "queue": self.queue}

    def get_current_estimates(self) -> tuple[bool, Any]:
        return True, {"dispatch": "queued", "queue": self.queue}
