"""Per-request Redis keys of the queued path: the request record, its token stream, its cancel flag,
and the gateway's side of the stream (reading it back as ChatDelta).

One stream per request. Each entry's `j` field is JSON: {"c": {index: text}} for content,
plus "f" (finish reasons), "u" (usage) and "done" on the last entry, or "error" on failure.
The entry id is the SSE event id, so a client that reconnects with Last-Event-ID gets
exactly the entries after it: no token lost, none repeated. The worker's side (leases, the
batched writes) is inference/workers/stream_writer.py.
"""

from __future__ import annotations

import asyncio
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
