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

from django.conf import settings

from registry.outages import DATABASE_ERRORS, DatabaseTimeout

V = TypeVar("V")


class AsyncTTLCache(Generic[V]):
    """`ttl`: how old a value may be at most. `refresh_after` (optional, below ttl): from this
    age on, a caller still gets the cached value while one background load refreshes it, so a
    steady trickle of requests never waits for the database.

    The background load starts `refresh_delay` seconds later, not at once: a database load runs
    on a thread, and a thread holding the GIL stalls the event loop while the request that
    triggered the refresh is still on its way to its upstream (measured: +4 ms time to first
    token for requests a second apart). Delayed, it runs while that request waits on the upstream.

    Serve-stale on a database outage: when a reload fails with one of `stale_on` (by default the
    errors of an unreachable database), an expired entry is still returned for up to `grace`
    seconds past its ttl (default settings.DB_OUTAGE_GRACE_S, read on each use; 0 turns it off).
    While a reload failed that way less than `ttl` ago, an expired entry is served at once and
    the reload runs in the background, so an outage costs requests no connect timeout each.
    A value never seen before still raises: only warm entries outlive the database.

    A caller waits `max_wait` seconds at most for a load (default settings.DB_LOOKUP_TIMEOUT_S):
    a database that accepts connections but never answers counts as down (DatabaseTimeout), and
    the load goes on in the background for whoever asks next.
    """

    def __init__(self, *, ttl: float, refresh_after: float | None = None, refresh_delay: float = 0.05,
                 max_entries: int = 10_000, grace: float | None = None, max_wait: float | None = None,
                 stale_on: tuple[type[BaseException], ...] = DATABASE_ERRORS):
        self.ttl = ttl
        self.refresh_after = refresh_after
        self.refresh_delay = refresh_delay
        self.max_entries = max_entries
        self._grace = grace
        self._max_wait = max_wait
        self.stale_on = stale_on
        # When a load last failed with a stale_on error (monotonic); reset by a load that works.
        self._outage_seen = float("-inf")
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

    # The synchronous side, for code that runs on a thread (a DRF view) and shares the entries with
    # the event loop's callers: a read under the same ttl, and a store. No single flight, no
    # refresh-ahead, no serving stale: a thread simply loads on a miss.
    def peek(self, key: Hashable) -> tuple[bool, V | None]:
        """(True, value) when a value younger than ttl is cached, else (False, None)."""
        hit = self._entries.get(key)
        if hit is None or time.monotonic() - hit[0] >= self.ttl:
            return False, None
        return True, hit[1]

    def put(self, key: Hashable, value: V) -> None:
        if len(self._entries) >= self.max_entries:
            self._entries.clear()  # Bounded: a flood of distinct keys cannot grow it forever.
        self._entries[key] = (time.monotonic(), value)

    @property
    def grace(self) -> float:
        return max(0.0, self._grace if self._grace is not None else float(settings.DB_OUTAGE_GRACE_S))

    async def get(self, key: Hashable, load: Callable[[], Awaitable[V]],
                  fresh: Callable[[V], bool] | None = None) -> V:
        """The cached value, or the result of `load()` shared by everyone asking meanwhile.

        `fresh` can reject a cached value early (an API key that expired in the meantime).
        A failed load is not cached: each waiter gets the exception, the next call tries again.
        """
        hit = self._entries.get(key)
        if hit is not None and fresh is not None and not fresh(hit[1]):
            hit = None  # Never served again, not even during an outage.
        if hit is not None:
            now = time.monotonic()
            age = now - hit[0]
            if age < self.ttl:
                if self.refresh_after is not None and age >= self.refresh_after:
                    self._schedule_refresh(key, load, hit[0])
                return hit[1]
            if age < self.ttl + self.grace and now - self._outage_seen < self.ttl:
                self._start_load(key, load)  # The database is known to be down: try it, but don't wait.
                return hit[1]
        try:
            return await self._wait(self._start_load(key, load))
        except self.stale_on:
            if hit is not None and time.monotonic() - hit[0] < self.ttl + self.grace:
                return hit[1]
            raise

    async def _wait(self, load: asyncio.Task[V]) -> V:
        # A caller that goes away (client disconnect) must not cancel the load the others wait on.
        shielded = asyncio.shield(load)
        max_wait = self._max_wait if self._max_wait is not None else float(settings.DB_LOOKUP_TIMEOUT_S)
        if max_wait <= 0:
            return await shielded
        deadline = asyncio.timeout(max_wait)
        try:
            async with deadline:
                return await shielded
        except TimeoutError:
            if not deadline.expired():
                raise  # the load's own timeout, not ours
            self._outage_seen = time.monotonic()
            raise DatabaseTimeout(f"no answer from the database within {max_wait:g} s") from None

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
            try:
                value = await load()
            except self.stale_on:
                self._outage_seen = time.monotonic()
                raise
            self._outage_seen = float("-inf")
            self.put(key, value)
            return value
        finally:
            if self._loading.get(key) is asyncio.current_task():
                del self._loading[key]
