"""The hot path's cache: concurrent misses load once, entries expire, failures are not kept."""

from __future__ import annotations

import asyncio

import pytest

from registry.ttlcache import AsyncTTLCache


class Loader:
    def __init__(self, delay: float = 0.05, fail: bool = False):
        self.calls = 0
        self.delay = delay
        self.fail = fail

    async def __call__(self) -> int:
        self.calls += 1
        await asyncio.sleep(self.delay)
        if self.fail:
            raise LookupError("backing store down")
        return self.calls


async def test_concurrent_misses_share_one_load():
    cache: AsyncTTLCache[int] = AsyncTTLCache(ttl=10)
    load = Loader()
    results = await asyncio.gather(*(cache.get("k", load) for _ in range(32)))
    assert results == [1] * 32
    assert load.calls == 1


async def test_an_expired_entry_is_loaded_again():
    cache: AsyncTTLCache[int] = AsyncTTLCache(ttl=0.05)
    load = Loader(delay=0)
    assert await cache.get("k", load) == 1
    assert await cache.get("k", load) == 1
    await asyncio.sleep(0.06)
    assert await cache.get("k", load) == 2


async def test_fresh_can_reject_a_cached_value():
    cache: AsyncTTLCache[int] = AsyncTTLCache(ttl=10)
    load = Loader(delay=0)
    await cache.get("k", load)
    assert await cache.get("k", load, fresh=lambda value: value > 1) == 2


async def test_a_failed_load_reaches_every_waiter_and_is_not_cached():
    cache: AsyncTTLCache[int] = AsyncTTLCache(ttl=10)
    failing = Loader(fail=True)
    outcomes = await asyncio.gather(*(cache.get("k", failing) for _ in range(3)), return_exceptions=True)
    assert all(isinstance(o, LookupError) for o in outcomes)
    assert failing.calls == 1
    assert await cache.get("k", Loader(delay=0)) == 1


async def test_a_caller_that_goes_away_does_not_cancel_the_shared_load():
    cache: AsyncTTLCache[int] = AsyncTTLCache(ttl=10)
    load = Loader(delay=0.05)
    impatient = asyncio.ensure_future(cache.get("k", load))
    patient = asyncio.ensure_future(cache.get("k", load))
    await asyncio.sleep(0.01)
    impatient.cancel()
    assert await patient == 1
    with pytest.raises(asyncio.CancelledError):
        await impatient
    assert load.calls == 1


async def test_it_stays_bounded():
    cache: AsyncTTLCache[int] = AsyncTTLCache(ttl=10, max_entries=4)
    for key in range(10):
        await cache.get(key, Loader(delay=0))
    assert len(cache._entries) <= 4


async def test_refresh_ahead_serves_the_cached_value_while_one_load_refreshes_it():
    cache: AsyncTTLCache[int] = AsyncTTLCache(ttl=10, refresh_after=0.05, refresh_delay=0)
    load = Loader(delay=0.05)
    assert await cache.get("k", load) == 1
    await asyncio.sleep(0.06)
    # Past refresh_after: the old value comes back at once, and one refresh starts.
    assert await asyncio.gather(*(cache.get("k", load) for _ in range(8))) == [1] * 8
    await asyncio.sleep(0.08)
    assert load.calls == 2
    assert await cache.get("k", load) == 2


async def test_refresh_ahead_still_waits_once_the_value_is_past_its_ttl():
    cache: AsyncTTLCache[int] = AsyncTTLCache(ttl=0.05, refresh_after=0.01)
    load = Loader(delay=0)
    await cache.get("k", load)
    await asyncio.sleep(0.06)
    assert await cache.get("k", load) == 2


async def test_refresh_ahead_waits_refresh_delay_before_it_loads():
    cache: AsyncTTLCache[int] = AsyncTTLCache(ttl=10, refresh_after=0.01, refresh_delay=0.1)
    load = Loader(delay=0)
    await cache.get("k", load)
    await asyncio.sleep(0.02)
    assert await cache.get("k", load) == 1
    await asyncio.sleep(0.05)
    assert load.calls == 1  # the request that asked for the refresh is not competing with it
    await asyncio.sleep(0.1)
    assert load.calls == 2
    assert await cache.get("k", load) == 2


async def test_a_scheduled_refresh_is_skipped_when_a_load_got_there_first():
    cache: AsyncTTLCache[int] = AsyncTTLCache(ttl=10, refresh_after=0.01, refresh_delay=0.05)
    load = Loader(delay=0)
    await cache.get("k", load)
    await asyncio.sleep(0.02)
    await cache.get("k", load)  # schedules a refresh
    assert await cache.get("k", load, fresh=lambda value: value > 1) == 2  # a forced reload meanwhile
    await asyncio.sleep(0.08)
    assert load.calls == 2
