"""The worker's side of a queued request's token stream: take the request's lease, then write its
tokens, batched process-wide (the keys and the gateway's reader: inference/backends/queued/streams.py).
"""

from __future__ import annotations

import asyncio
import logging
import time
import weakref
from typing import Any

import orjson
from django.conf import settings

from inference.backends.base import ChatDelta
from inference.backends.queued.streams import cancel_key, lease_key, record_key, redis_client, stream_key

Begun = tuple[dict[str, Any] | None, bool, dict[int, str], bool]


async def requests_begin(request_ids: list[str], token: str) -> list[Begun]:
    """One round trip for starting executors, however many: for each request (record, lease
    taken, text published, finished)."""
    ttl_ms = int(settings.WORKER_LEASE_S * 1000)
    async with redis_client().pipeline(transaction=False) as pipe:
        for request_id in request_ids:
            pipe.get(record_key(request_id))
            pipe.set(lease_key(request_id), token, nx=True, px=ttl_ms)
            pipe.xrange(stream_key(request_id))
        results = await pipe.execute()
    begun = []
    for i in range(0, len(results), 3):
        raw, leased, entries = results[i:i + 3]
        published, finished = _summarise(entries)
        begun.append(((orjson.loads(raw) if raw else None), bool(leased), published, finished))
    return begun


async def request_begin(request_id: str, token: str) -> Begun:
    return (await requests_begin([request_id], token))[0]


async def lease_release(request_id: str, token: str) -> None:
    client = redis_client()
    if await client.get(lease_key(request_id)) == token.encode():
        await client.delete(lease_key(request_id))


class StreamWriter:
    """One request's pending output. The process's FlushHub writes it, batched with all others."""

    def __init__(self, request_id: str):
        self.request_id = request_id
        self.key = stream_key(request_id)
        self.pending: dict[int, list[str]] = {}
        self.final: dict[str, Any] | None = None
        self.sent_first = False
        self.cancelled = asyncio.Event()
        self.finished = asyncio.Event()

    def add(self, delta: ChatDelta) -> None:
        if delta.content:
            self.pending.setdefault(delta.index, []).append(delta.content)
            if not self.sent_first:
                # The first token goes out at once (time to first token matters); later ones batch.
                self.sent_first = True
                flush_hub().kick.set()

    async def finish(self, **final: Any) -> None:
        """Queue the last entry (done, or error) and wait until it is in Redis."""
        self.final = final
        hub = flush_hub()
        hub.kick.set()
        await self.finished.wait()

    def take(self) -> dict[str, Any] | None:
        entry: dict[str, Any] = {}
        if self.pending:
            entry["c"] = {str(i): "".join(parts) for i, parts in self.pending.items()}
            self.pending = {}
        if self.final is not None:
            entry.update(self.final)
        return entry or None


class FlushHub:
    """Every ~20 ms, one pipelined round trip writes every active request's new tokens (one
    XADD each, not one per token), renews their leases and reads their cancel flags. One
    writer loop per process also keeps each stream's entries in order."""

    def __init__(self) -> None:
        self.writers: set[StreamWriter] = set()
        self.kick = asyncio.Event()
        self.flush_s = settings.WORKER_STREAM_FLUSH_MS / 1000.0
        self.task: asyncio.Task | None = None

    def register(self, writer: StreamWriter) -> None:
        self.writers.add(writer)
        if self.task is None or self.task.done():
            self.task = asyncio.ensure_future(self.run())

    async def run(self) -> None:
        while self.writers:
            try:
                await asyncio.wait_for(self.kick.wait(), timeout=self.flush_s)
            except TimeoutError:
                pass
            self.kick.clear()
            try:
                await self.flush_all()
            except Exception:
                logging.getLogger(__name__).exception("token stream flush failed; retrying")
                await asyncio.sleep(self.flush_s)

    async def flush_all(self) -> None:
        writers = list(self.writers)
        ttl_ms = int(settings.WORKER_LEASE_S * 1000)
        taken: list[tuple[StreamWriter, bool]] = []
        async with redis_client().pipeline(transaction=False) as pipe:
            for writer in writers:
                entry = writer.take()
                if entry is not None:
                    pipe.xadd(writer.key, {"j": orjson.dumps(entry)})
                    pipe.expire(writer.key, settings.WORKER_STREAM_TTL_S)
                taken.append((writer, writer.final is not None))
                # Renewing the lease on every flush is the executor's heartbeat.
                pipe.pexpire(lease_key(writer.request_id), ttl_ms)
            pipe.mget([cancel_key(w.request_id) for w in writers])
            results = await pipe.execute()
        now = time.time()
        for writer, flag in zip(writers, results[-1], strict=True):
            if flag is not None and float(flag) <= now:
                writer.cancelled.set()
        for writer, was_final in taken:
            if was_final:
                self.writers.discard(writer)
                writer.finished.set()


_hubs: weakref.WeakKeyDictionary[asyncio.AbstractEventLoop, FlushHub] = weakref.WeakKeyDictionary()


def flush_hub() -> FlushHub:
    loop = asyncio.get_running_loop()
    hub = _hubs.get(loop)
    if hub is None:
        hub = _hubs[loop] = FlushHub()
    return hub


def _summarise(entries) -> tuple[dict[int, str], bool]:
    texts: dict[int, list[str]] = {}
    finished = False
    for _entry_id, fields in entries:
        entry = orjson.loads(fields[b"j"])
        for index, text in (entry.get("c") or {}).items():
            texts.setdefault(int(index), []).append(text)
        finished = finished or bool(entry.get("done") or entry.get("error"))
    return {i: "".join(parts) for i, parts in texts.items()}, finished
