"""Serve-stale on a database outage (registry/ttlcache.py), and the metrics buffer that waits it out.

The loaders here stand in for the database: they raise what Django raises when PostgreSQL is
unreachable (OperationalError). The live version of all this is test_outages.py.
"""

from __future__ import annotations

import asyncio
import time

import pytest
from django.db import InterfaceError, OperationalError

from inference import metrics
from registry.outages import DatabaseTimeout
from registry.ttlcache import AsyncTTLCache

TTL = 0.05
GRACE = 0.3


class Database:
    """A loader whose backing database can go down and come back."""

    def __init__(self, delay: float = 0.0):
        self.calls = 0
        self.down: type[Exception] | None = None
        self.delay = delay

    async def __call__(self) -> int:
        self.calls += 1
        await asyncio.sleep(self.delay)
        if self.down is not None:
            raise self.down("connection refused")
        return self.calls


async def _warm(cache: AsyncTTLCache[int], db: Database) -> None:
    assert await cache.get("k", db) == 1
    db.down = OperationalError
    await asyncio.sleep(TTL + 0.01)


@pytest.mark.parametrize("error", [OperationalError, InterfaceError])
async def test_a_warm_entry_is_served_past_its_ttl_while_the_database_is_down(error):
    cache: AsyncTTLCache[int] = AsyncTTLCache(ttl=TTL, grace=GRACE)
    db = Database()
    await _warm(cache, db)
    db.down = error
    assert await cache.get("k", db) == 1
    assert db.calls == 2  # it did try the database first


async def test_past_the_grace_a_warm_entry_is_no_longer_served():
    cache: AsyncTTLCache[int] = AsyncTTLCache(ttl=TTL, grace=GRACE)
    db = Database()
    await _warm(cache, db)
    await asyncio.sleep(GRACE)
    with pytest.raises(OperationalError):
        await cache.get("k", db)


async def test_a_cold_key_gets_the_outage_error():
    cache: AsyncTTLCache[int] = AsyncTTLCache(ttl=TTL, grace=GRACE)
    db = Database()
    await _warm(cache, db)
    with pytest.raises(OperationalError):
        await cache.get("never-seen", db)


async def test_other_errors_never_serve_a_stale_entry():
    cache: AsyncTTLCache[int] = AsyncTTLCache(ttl=TTL, grace=GRACE)
    db = Database()
    await _warm(cache, db)
    db.down = LookupError
    with pytest.raises(LookupError):
        await cache.get("k", db)


async def test_an_entry_that_fresh_rejects_is_not_served_during_an_outage():
    # An API key that expired meanwhile stays refused, database or not.
    cache: AsyncTTLCache[int] = AsyncTTLCache(ttl=TTL, grace=GRACE)
    db = Database()
    await _warm(cache, db)
    with pytest.raises(OperationalError):
        await cache.get("k", db, fresh=lambda value: False)


async def test_a_grace_of_zero_turns_stale_serving_off(settings):
    settings.DB_OUTAGE_GRACE_S = 0
    cache: AsyncTTLCache[int] = AsyncTTLCache(ttl=TTL)
    db = Database()
    await _warm(cache, db)
    with pytest.raises(OperationalError):
        await cache.get("k", db)


async def test_the_grace_comes_from_db_outage_grace_s(settings):
    settings.DB_OUTAGE_GRACE_S = 60
    cache: AsyncTTLCache[int] = AsyncTTLCache(ttl=TTL)
    db = Database()
    await _warm(cache, db)
    assert await cache.get("k", db) == 1


async def test_once_an_outage_is_seen_stale_entries_are_served_without_waiting_for_the_database():
    cache: AsyncTTLCache[int] = AsyncTTLCache(ttl=0.5, grace=1.0)
    db = Database(delay=0.2)  # a database that takes its connect timeout to fail
    assert await cache.get("a", db) == 1
    assert await cache.get("b", db) == 2
    db.down = OperationalError
    await asyncio.sleep(0.5)
    started = time.monotonic()
    assert await cache.get("a", db) == 1  # the first one waits for the failed reload...
    assert time.monotonic() - started >= 0.2
    started = time.monotonic()
    assert await cache.get("b", db) == 2  # ...the next ones do not: the reload runs behind them
    assert time.monotonic() - started < 0.05


async def test_the_cache_loads_fresh_values_again_once_the_database_is_back():
    cache: AsyncTTLCache[int] = AsyncTTLCache(ttl=TTL, grace=GRACE)
    db = Database()
    await _warm(cache, db)
    assert await cache.get("k", db) == 1
    db.down = None
    assert await cache.get("k", db) == 1  # the outage was seen just now: served at once, reloaded behind it
    await asyncio.sleep(0.01)
    value = await cache.get("k", db)
    assert value > 1
    assert await cache.get("k", db) == value


async def test_a_database_that_never_answers_counts_as_down_after_max_wait():
    cache: AsyncTTLCache[int] = AsyncTTLCache(ttl=TTL, grace=GRACE, max_wait=0.1)
    db = Database()
    await _warm(cache, db)
    db.down, db.delay = None, 3600  # accepts the query, never answers (a frozen server, a partition)
    started = time.monotonic()
    assert await cache.get("k", db) == 1  # warm: served once the wait is over
    assert 0.1 <= time.monotonic() - started < 0.3
    with pytest.raises(DatabaseTimeout) as raised:  # cold: the outage error, after the same wait
        await cache.get("cold", db)
    assert isinstance(raised.value, OperationalError)
    for task in list(cache._loading.values()):
        task.cancel()


def test_the_metrics_kept_through_an_outage_are_bounded_and_the_oldest_minutes_go_first(monkeypatch):
    monkeypatch.setattr(metrics, "MAX_PENDING_BUCKETS", 5)
    dropped = metrics.dropped_buckets
    metrics.discard_pending()
    try:
        # What failed flushes hand back, minute after minute of an outage.
        metrics._put_back({(1, 1, minute): metrics._Pending(requests=1) for minute in range(20)})
        assert sorted(minute for _, _, minute in metrics._pending) == [15, 16, 17, 18, 19]
        assert metrics.pending_count() == 5
        assert metrics.dropped_buckets == dropped + 15
    finally:
        metrics.discard_pending()
