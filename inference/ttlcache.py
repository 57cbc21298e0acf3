"""An in-process cache for the hot path: entries live a few seconds, and a miss loads once.

Without the single flight, every request that arrives while an entry is cold or expired
starts its own database load: at concurrency 32 that is 32 identical queries every TTL,
which is what the gateway profile showed.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Awaitable, Callable, Hashable
from typing import Generic, TypeVar

V = TypeVar("V")


class AsyncTTLCache(Generic[V]):
    """`ttl`: how old a value may be at most. `refresh_after` (optional, below ttl): from this
    age on, a caller still gets the cached value while one background load refreshes it, so a
    steady trickle of requests never waits for the database."""

    def __init__(self, *, ttl: float, refresh_after: float | None = None, max_entries: int = 10_000):
        self.ttl = ttl
        self.refresh_after = refresh_after
        self.max_entries = max_entries
        self._entries: dict[Hashable, tuple[float, V]] = {}
        self._loading: dict[Hashable, asyncio.Task[V]] = {}

    def clear(self) -> None:
        self._entries.clear()

    def discard(self, key: Hashable) -> None:
        self._entries.pop(key, None)

    async def get(self, key: Hashable, load: Callable[[], Awaitable[V]],
                  fresh: Callable[[V], bool] | None = None) -> V:
        """The cached value, or the result of `load()` shared by everyone asking meanwhile.

        `fresh` can reject a cached value early (an API key that expired in the meantime).
        A failed load is not cached: each waiter gets the exception, the next call tries again.
        """
        hit = self._entries.get(key)
        if hit is not None and (fresh is None or fresh(hit[1])):
            age = time.monotonic() - hit[0]
            if age < self.ttl:
                if self.refresh_after is not None and age >= self.refresh_after:
                    self._start_load(key, load)
                return hit[1]
        # A caller that goes away (client disconnect) must not cancel the load the others wait on.
        return await asyncio.shield(self._start_load(key, load))

    def _start_load(self, key: Hashable, load: Callable[[], Awaitable[V]]) -> asyncio.Task[V]:
        loop = asyncio.get_running_loop()
        pending = self._loading.get(key)
        if pending is None or pending.get_loop() is not loop:
            pending = loop.create_task(self._load(key, load))
            # A background refresh that fails is retried by the next caller; never "never retrieved".
            pending.add_done_callback(lambda task: task.cancelled() or task.exception())
            self._loading[key] = pending
        return pending

    async def _load(self, key: Hashable, load: Callable[[], Awaitable[V]]) -> V:
        try:
            value = await load()
            if len(self._entries) >= self.max_entries:
                self._entries.clear()  # Bounded: a flood of distinct keys cannot grow it forever.
            self._entries[key] = (time.monotonic(), value)
            return value
        finally:
            if self._loading.get(key) is asyncio.current_task():
                del self._loading[key]
