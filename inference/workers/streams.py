"""Per-request Redis keys: the request record, its token stream, and its cancel flag.

One stream per request. Each entry's `j` field is JSON: {"c": {index: text}} for content,
plus "f" (finish reasons), "u" (usage) and "done" on the last entry, or "error" on failure.
The entry id is the SSE event id, so a client that reconnects with Last-Event-ID gets
exactly the entries after it: no token lost, none repeated.
"""

from __future__ import annotations

import asyncio
import logging
import time
import weakref
from collections.abc import AsyncIterator
from typing import Any

import orjson
import redis.asyncio as aioredis
from django.conf import settings

from inference.backends.base import BackendError, ChatDelta

_clients: weakref.WeakKeyDictionary[asyncio.AbstractEventLoop, aioredis.Redis] = weakref.WeakKeyDictionary()


def redis_client() -> aioredis.Redis:
    """One pooled client per event loop (redis.asyncio connections are bound to their loop)."""
    loop = asyncio.get_running_loop()
    client = _clients.get(loop)
    if client is None:
        # Only the connect is bounded tighter: reads block on XREAD for up to a second by design.
        client = aioredis.Redis.from_url(settings.REDIS_URL, max_connections=1024,
                                         socket_connect_timeout=settings.REDIS_CONNECT_TIMEOUT_S)
        _clients[loop] = client
    return client


def record_key(request_id: str) -> str:
    return f"sb:req:{request_id}"


def stream_key(request_id: str) -> str:
    return f"sb:req:{request_id}:tokens"


def cancel_key(request_id: str) -> str:
    return f"sb:req:{request_id}:cancel"


def lease_key(request_id: str) -> str:
    return f"sb:req:{request_id}:lease"


def event_id(request_id: str, entry_id: str) -> str:
    return f"{request_id}:{entry_id}"


def parse_event_id(value: str) -> tuple[str | None, str]:
    """`<request id>:<entry id>` or a bare entry id -> (request id or None, entry id)."""
    request_id, _, entry = value.rpartition(":")
    return (request_id or None), entry


async def request_store(request_id: str, record: dict[str, Any]) -> None:
    await redis_client().set(record_key(request_id), orjson.dumps(record), ex=settings.WORKER_STREAM_TTL_S)


async def request_load(request_id: str) -> dict[str, Any] | None:
    raw = await redis_client().get(record_key(request_id))
    return orjson.loads(raw) if raw else None


async def request_cancel(request_id: str, *, after_s: float = 0.0) -> None:
    """Ask the task to stop, now or after a grace period (the client may still reconnect)."""
    deadline = time.time() + after_s
    await redis_client().set(cancel_key(request_id), str(deadline), ex=settings.WORKER_STREAM_TTL_S)


async def request_reattach(request_id: str) -> None:
    """A reader came back: withdraw a pending grace-period cancel (an explicit cancel has passed)."""
    client = redis_client()
    raw = await client.get(cancel_key(request_id))
    if raw is not None and float(raw) > time.time():
        await client.delete(cancel_key(request_id))


async def cancel_requested(request_id: str) -> bool:
    raw = await redis_client().get(cancel_key(request_id))
    return raw is not None and float(raw) <= time.time()


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


class Subscription:
    def __init__(self, key: str, after: str):
        self.key = key
        self.last = after
        self.queue: asyncio.Queue = asyncio.Queue()


class ReadHub:
    """One XREAD over every stream this process is relaying, instead of one per request: at 64
    streams that is one round trip per ~10 ms rather than thousands a second."""

    BLOCK_MS = 10  # also how long a new subscriber may wait to join the next XREAD

    def __init__(self) -> None:
        self.subs: dict[str, Subscription] = {}
        self.task: asyncio.Task | None = None

    def subscribe(self, key: str, after: str) -> Subscription | None:
        if key in self.subs:
            return None  # a second reader of the same stream reads on its own
        sub = self.subs[key] = Subscription(key, after)
        if self.task is None or self.task.done():
            self.task = asyncio.ensure_future(self.run())
        return sub

    def unsubscribe(self, sub: Subscription) -> None:
        if self.subs.get(sub.key) is sub:
            del self.subs[sub.key]

    async def run(self) -> None:
        client = redis_client()
        while self.subs:
            subs = dict(self.subs)
            try:
                result = await client.xread({k: s.last for k, s in subs.items()}, block=self.BLOCK_MS,
                                            count=200)
            except Exception as exc:  # every reader learns of a broken Redis, not just one
                for sub in subs.values():
                    sub.queue.put_nowait(exc)
                await asyncio.sleep(0.1)
                continue
            for raw_key, entries in result or []:
                sub = self.subs.get(raw_key.decode())
                if sub is None:
                    continue
                for raw_id, fields in entries:
                    sub.last = raw_id.decode()
                    sub.queue.put_nowait((sub.last, fields))


_read_hubs: weakref.WeakKeyDictionary[asyncio.AbstractEventLoop, ReadHub] = weakref.WeakKeyDictionary()


def read_hub() -> ReadHub:
    loop = asyncio.get_running_loop()
    hub = _read_hubs.get(loop)
    if hub is None:
        hub = _read_hubs[loop] = ReadHub()
    return hub


async def _own_entries(key: str, after: str) -> AsyncIterator[tuple[str, dict]]:
    client = redis_client()
    last = after
    while True:
        result = await client.xread({key: last}, block=1000, count=100)
        for raw_id, fields in (result[0][1] if result else []):
            last = raw_id.decode()
            yield last, fields
        if not result:
            yield "", {}  # a tick, so the caller can time out


async def _hub_entries(sub: Subscription) -> AsyncIterator[tuple[str, dict]]:
    while True:
        try:
            item = await asyncio.wait_for(sub.queue.get(), timeout=1.0)
        except TimeoutError:
            yield "", {}
            continue
        if isinstance(item, Exception):
            raise BackendError(f"token stream unavailable: {item}", status=502, code="stream_unavailable")
        yield item


async def stream_read(request_id: str, *, after: str = "0-0", timeout_s: float) -> AsyncIterator[ChatDelta]:
    """Relay a request's stream from entry `after` until its last entry, as ChatDelta."""
    key = stream_key(request_id)
    hub = read_hub()
    sub = hub.subscribe(key, after)
    entries = _hub_entries(sub) if sub is not None else _own_entries(key, after)
    idle_since = time.monotonic()
    try:
        async for entry_id, fields in entries:
            if not entry_id:
                if time.monotonic() - idle_since > timeout_s:
                    raise BackendError("queued request produced nothing in time (is a worker serving "
                                       "its queue?)", status=504, code="upstream_timeout")
                continue
            idle_since = time.monotonic()
            entry = orjson.loads(fields[b"j"])
            eid = event_id(request_id, entry_id)
            if "error" in entry:
                error = entry["error"]
                raise BackendError(error.get("message", "queued request failed"),
                                   status=error.get("status", 502), code=error.get("code", "upstream_error"),
                                   upstream_status=error.get("upstream_status"))
            for index, text in (entry.get("c") or {}).items():
                yield ChatDelta(content=text, index=int(index), event_id=eid)
            if entry.get("done"):
                finishes = entry.get("f") or {"0": "stop"}
                for index, reason in finishes.items():
                    yield ChatDelta(index=int(index), finish_reason=reason, usage=entry.get("u"),
                                    event_id=eid)
                return
    finally:
        if sub is not None:
            hub.unsubscribe(sub)
        await entries.aclose()
