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
    steady trickle of requests never waits for the database.

    The background load starts `refresh_delay` seconds later, not at once: a database load runs
    on a thread, and a thread holding the GIL stalls the event loop while the request that
    triggered the refresh is still on its way to its upstream (measured: +4 ms time to first
    token for requests a second apart). Delayed, it runs while that request waits on the upstream.
    """

    def __init__(self, *, ttl: float, refresh_after: float | None = None, refresh_delay: float = 0.05,
                 max_entries: int = 10_000):
        self.ttl = ttl
        self.refresh_after = refresh_after
        self.refresh_delay = refresh_delay
        self.max_entries = max_entries
        self._entries: dict[Hashable, tuple[float, V]] = {}
        self._loading: dict[Hashable, asyncio.Task[V]] = {}
        self._scheduled: dict[Hashable, tuple[asyncio.AbstractEventLoop, asyncio.TimerHandle]] = {}

    def clear(self) -> None:
        self._entries.clear()
        for _, handle in self._scheduled.values():
            handle.cancel()
        self._scheduled.clear()

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
                    self._schedule_refresh(key, load, hit[0])
                return hit[1]
        # A caller that goes away (client disconnect) must not cancel the load the others wait on.
        return await asyncio.shield(self._start_load(key, load))

    def _schedule_refresh(self, key: Hashable, load: Callable[[], Awaitable[V]], loaded_at: float) -> None:
        loop = asyncio.get_running_loop()
        scheduled = self._scheduled.get(key)
        if (scheduled is not None and scheduled[0] is loop) or key in self._loading:
            return

        def refresh() -> None:
            self._scheduled.pop(key, None)
            hit = self._entries.get(key)
            if hit is not None and hit[0] == loaded_at:  # nobody reloaded it in the meantime
                self._start_load(key, load)

        # A timer left by another (closed) loop never fires: replace it rather than wait on it.
        self._scheduled[key] = (loop, loop.call_later(self.refresh_delay, refresh))

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
