"""Enqueue queued requests from the gateway's event loop: request records and Celery tasks in
one pipelined Redis write, with no thread hop, and a burst for one GPU node as a few tasks.

Two costs made the queued path serve only 82-88 % of the engine's throughput at 64 streams:

- `apply_async` is ~0.5 ms of blocking Python per message. On the gateway it ran on threads,
  where a burst of 64 fought the event loop for the GIL: the 64th task reached the broker
  215 ms after the first. Here Celery still builds the task message (headers and body, as
  `apply_async` does); only kombu's last step for a Redis broker, `LPUSH <queue> <json
  envelope>`, is done with the loop's async Redis client. Other brokers keep `send_task` (what
  `apply_async` calls; by name, since the task itself is the worker's code).
- Celery's consumer takes ~2 ms per message on these cores even when idle, so 64 messages start
  over ~130 ms. Requests that arrive while a write is in flight go out together in the next one
  (group commit), and those for the same GPU queue share one `run_requests` task, up to
  WORKER_DISPATCH_BATCH ids. The worker runs a task's requests concurrently; each has its own
  record, lease, token stream and cancel flag, so re-delivery and resume work per request as
  before. The CPU queue is never batched: llama.cpp generates one answer at a time per process,
  and its requests should spread over the CPU workers.
"""

from __future__ import annotations

import asyncio
import base64
import functools
import uuid
import weakref
from concurrent.futures import ThreadPoolExecutor
from typing import Any

import orjson
from celery import current_app
from django.conf import settings
from kombu.serialization import dumps as kombu_dumps

from inference.backends.queued import streams
from inference.backends.queued.queues import CPU_QUEUE

# The worker's task (inference/workers/tasks.py), named: the gateway only sends it.
RUN_REQUESTS = "inference.run_requests"

_publisher = ThreadPoolExecutor(max_workers=4, thread_name_prefix="celery-publish")


def redis_broker() -> bool:
    """Whether the broker is the streams' own Redis, so one pipeline can write both."""
    url = settings.CELERY_BROKER_URL
    # A key prefix would rename the queue lists: leave that to kombu.
    prefixed = bool((settings.CELERY_BROKER_TRANSPORT_OPTIONS or {}).get("global_keyprefix"))
    return url == settings.REDIS_URL and url.startswith(("redis://", "rediss://")) and not prefixed


def batch_limit(queue: str) -> int:
    return 1 if queue == CPU_QUEUE else max(1, settings.WORKER_DISPATCH_BATCH)


def task_envelope(name: str, args: list[Any], queue: str) -> bytes:
    """The JSON kombu's Redis transport pushes for `apply_async(args, queue=queue)` of task `name`."""
    # webapp.celery's app: the current one in every process that loads Django's settings.
    app = current_app._get_current_object()
    task_id = str(uuid.uuid4())
    message = app.amqp.as_task_v2(
        task_id, name, args=args, kwargs={}, reply_to=app.thread_oid, ignore_result=True,
        time_limit=app.conf.task_time_limit, soft_time_limit=app.conf.task_soft_time_limit,
    )
    content_type, content_encoding, body = kombu_dumps(message.body, serializer="json")
    return orjson.dumps({
        "body": base64.b64encode(body.encode() if isinstance(body, str) else body).decode(),
        "content-encoding": content_encoding,
        "content-type": content_type,
        "headers": message.headers,
        "properties": {
            **message.properties,
            "delivery_mode": 2,
            "delivery_info": {"exchange": "", "routing_key": queue},
            "priority": 0,
            "body_encoding": "base64",
            "delivery_tag": str(uuid.uuid4()),
        },
    })


class EnqueueHub:
    """Group commit: what arrives while a write is in flight goes out in the next one."""

    def __init__(self) -> None:
        self.pending: list[tuple[str, bytes, str, asyncio.Future[None]]] = []
        self.writer: asyncio.Task | None = None

    async def enqueue(self, request_id: str, record: bytes, queue: str) -> None:
        done = asyncio.get_running_loop().create_future()
        # A caller that went away never reads a failed write's exception: retrieve it here.
        done.add_done_callback(lambda future: future.cancelled() or future.exception())
        self.pending.append((request_id, record, queue, done))
        if self.writer is None or self.writer.done():
            self.writer = asyncio.ensure_future(self.write())
        # Shielded: a caller that goes away does not abort a write its batch-mates wait on.
        await asyncio.shield(done)

    async def write(self) -> None:
        while self.pending:
            batch, self.pending = self.pending, []
            try:
                await self._write(batch)
            except Exception as exc:
                for *_, done in batch:
                    if not done.done():
                        done.set_exception(exc)
            else:
                for *_, done in batch:
                    if not done.done():
                        done.set_result(None)

    @staticmethod
    async def _write(batch: list[tuple[str, bytes, str, asyncio.Future[None]]]) -> None:
        by_queue: dict[str, list[str]] = {}
        # One connection runs a pipeline's commands in order: every record exists before its task.
        async with streams.redis_client().pipeline(transaction=False) as pipe:
            for request_id, record, queue, _ in batch:
                pipe.set(streams.record_key(request_id), record, ex=settings.WORKER_STREAM_TTL_S)
                by_queue.setdefault(queue, []).append(request_id)
            for queue, ids in by_queue.items():
                limit = batch_limit(queue)
                for start in range(0, len(ids), limit):
                    pipe.lpush(queue, task_envelope(RUN_REQUESTS, [ids[start:start + limit]], queue))
            await pipe.execute()


_hubs: weakref.WeakKeyDictionary[asyncio.AbstractEventLoop, EnqueueHub] = weakref.WeakKeyDictionary()


async def request_enqueue(*, request_id: str, record: dict[str, Any], queue: str) -> None:
    """Store the request record, then put a task that runs it on `queue` (in that order)."""
    if not redis_broker():
        await streams.request_store(request_id, record)
        app = current_app._get_current_object()
        await asyncio.get_running_loop().run_in_executor(
            _publisher, functools.partial(app.send_task, RUN_REQUESTS, args=[[request_id]], queue=queue,
                                          ignore_result=True))
        return
    loop = asyncio.get_running_loop()
    hub = _hubs.get(loop)
    if hub is None:
        hub = _hubs[loop] = EnqueueHub()
    await hub.enqueue(request_id, orjson.dumps(record), queue)
