"""Per-block request metrics, recorded in memory on the request path and written once a second.

`record()` only adds numbers to an in-process dict keyed by (block pk, calling organization pk,
minute); a background task on the serving event loop flushes that dict as upserts into
BlockMetricBucket every FLUSH_INTERVAL_S, and once more when the server stops (ASGI lifespan
shutdown, inference/lifespan.py), its loop closes, or the interpreter exits, so no request
ever waits on the database for metrics. Buckets carry the calling organization so a shared
block's metrics show another organization only its own traffic (inference.selectors).

Histograms are JSON objects {"<upper bound ms>": count} over the fixed log-spaced
LATENCY_BOUNDS_MS; they add bucket by bucket, so minutes sum into any window and
percentiles are read off the merged counts.
"""

from __future__ import annotations

import asyncio
import atexit
import bisect
import logging
import threading
import time
from dataclasses import dataclass, field
from datetime import UTC, datetime

from django.db import IntegrityError, transaction
from django.db.models import F

from inference.models import BlockMetricBucket
from registry.asyncdb import in_db_thread
from registry.outages import DATABASE_ERRORS

log = logging.getLogger(__name__)

FLUSH_INTERVAL_S = 1.0
# (block, minute) buckets kept while the database cannot take them; past this the oldest minutes are
# dropped (counted in `dropped_buckets`), so a long outage costs bounded memory, never the process.
MAX_PENDING_BUCKETS = 10_000
LATENCY_BOUNDS_MS: tuple[float, ...] = (
    0.5, 1, 2, 3, 5, 7.5, 10, 15, 20, 30, 50, 75, 100, 150, 200, 300, 500, 750, 1000, 1500, 2000,
    3000, 5000, 7500, 10_000, 15_000, 20_000, 30_000, 60_000, 120_000, 300_000, 600_000,
)
_KEYS = [f"{b:g}" for b in LATENCY_BOUNDS_MS] + ["inf"]


def bucket_key(ms: float) -> str:
    return _KEYS[bisect.bisect_left(LATENCY_BOUNDS_MS, ms)]


def merge_histograms(into: dict[str, int], other: dict[str, int] | None) -> dict[str, int]:
    for key, count in (other or {}).items():
        into[key] = into.get(key, 0) + int(count)
    return into


def _upper(key: str) -> float:
    return float("inf") if key == "inf" else float(key)


def percentile(hist: dict[str, int], pct: float) -> float | None:
    """The pct-th percentile in ms, interpolated inside its bucket; None without data."""
    total = sum(hist.values())
    if not total:
        return None
    rank = total * pct / 100
    seen = 0
    lower = 0.0
    for key in sorted(hist, key=_upper):
        count = hist[key]
        upper = _upper(key)
        if count and seen + count >= rank:
            if upper == float("inf"):
                return lower
            return round(lower + (upper - lower) * (rank - seen) / count, 3)
        seen += count
        lower = upper
    return lower


@dataclass
class _Pending:
    requests: int = 0
    errors: int = 0
    latency_ms_sum: float = 0.0
    ttft_ms_sum: float = 0.0
    ttft_count: int = 0
    tokens_in: int = 0
    tokens_out: int = 0
    latency_hist: dict[str, int] = field(default_factory=dict)
    ttft_hist: dict[str, int] = field(default_factory=dict)


_Key = tuple[int, int, int]  # (block pk, organization pk, minute)
_pending: dict[_Key, _Pending] = {}
_lock = threading.Lock()
_flushers: dict[int, asyncio.Task] = {}
dropped_buckets = 0


def record(*, block_pk: int, organization_pk: int, ok: bool, latency_ms: float, ttft_ms: float | None = None,
           tokens_in: int = 0, tokens_out: int = 0) -> None:
    """Count one finished request of `organization_pk` (the caller's organization, not the
    block's owner). Cheap and synchronous: never touches the database."""
    key = (block_pk, organization_pk, int(time.time() // 60))
    with _lock:
        entry = _pending.get(key)
        if entry is None:
            entry = _pending[key] = _Pending()
        entry.requests += 1
        entry.errors += 0 if ok else 1
        entry.latency_ms_sum += latency_ms
        key = bucket_key(latency_ms)
        entry.latency_hist[key] = entry.latency_hist.get(key, 0) + 1
        if ttft_ms is not None:
            entry.ttft_ms_sum += ttft_ms
            entry.ttft_count += 1
            key = bucket_key(ttft_ms)
            entry.ttft_hist[key] = entry.ttft_hist.get(key, 0) + 1
        entry.tokens_in += max(0, tokens_in)
        entry.tokens_out += max(0, tokens_out)
    _ensure_flusher()


def _ensure_flusher() -> None:
    try:
        loop = asyncio.get_running_loop()
    except RuntimeError:
        return  # Outside an event loop (a sync caller): the exit hook or flush_now() writes it.
    task = _flushers.get(id(loop))
    if task is None or task.done():
        _flushers[id(loop)] = loop.create_task(_flush_forever())


async def _flush_forever() -> None:
    failing = False
    try:
        while True:
            await asyncio.sleep(FLUSH_INTERVAL_S)
            try:
                await aflush()
                if failing:
                    log.warning("metrics flush works again")
                failing = False
            except DATABASE_ERRORS as exc:
                # The database is down: the counts wait for the next try; one log line per outage.
                if not failing:
                    log.warning("metrics flush failed, keeping the counts for the next try: %s", exc)
                failing = True
            except Exception:  # Anything else must not kill the flusher either.
                log.exception("metrics flush failed")
    except asyncio.CancelledError:
        # The loop is closing (asyncio.run cancels every task): a last chance to write.
        try:
            await aflush()
        except Exception:
            log.exception("metrics flush at shutdown failed")
        raise


def _take() -> dict[_Key, _Pending]:
    global _pending
    with _lock:
        taken, _pending = _pending, {}
    return taken


def _put_back(entries: dict[_Key, _Pending]) -> None:
    global dropped_buckets
    with _lock:
        for key, entry in entries.items():
            current = _pending.setdefault(key, _Pending())
            current.requests += entry.requests
            current.errors += entry.errors
            current.latency_ms_sum += entry.latency_ms_sum
            current.ttft_ms_sum += entry.ttft_ms_sum
            current.ttft_count += entry.ttft_count
            current.tokens_in += entry.tokens_in
            current.tokens_out += entry.tokens_out
            merge_histograms(current.latency_hist, entry.latency_hist)
            merge_histograms(current.ttft_hist, entry.ttft_hist)
        if len(_pending) > MAX_PENDING_BUCKETS:
            oldest_first = sorted(_pending, key=lambda key: key[2])
            for key in oldest_first[:len(_pending) - MAX_PENDING_BUCKETS]:
                del _pending[key]
                dropped_buckets += 1


def _upsert(block_pk: int, organization_pk: int, minute: int, entry: _Pending) -> None:
    when = datetime.fromtimestamp(minute * 60, tz=UTC)
    counters = {"requests": entry.requests, "errors": entry.errors, "latency_ms_sum": entry.latency_ms_sum,
                "ttft_ms_sum": entry.ttft_ms_sum, "ttft_count": entry.ttft_count,
                "tokens_in": entry.tokens_in, "tokens_out": entry.tokens_out}
    for _ in range(2):
        try:
            with transaction.atomic():
                bucket = (BlockMetricBucket.objects.select_for_update()
                          .filter(block_id=block_pk, organization_id=organization_pk, minute=when).first())
                if bucket is None:
                    BlockMetricBucket.objects.create(block_id=block_pk, organization_id=organization_pk,
                                                     minute=when, **counters,
                                                     latency_hist=entry.latency_hist, ttft_hist=entry.ttft_hist)
                    return
                # Counters add in SQL so concurrent writers (other processes) never lose counts;
                # the row lock makes the histogram merge safe too.
                BlockMetricBucket.objects.filter(pk=bucket.pk).update(
                    **{name: F(name) + value for name, value in counters.items()},
                    latency_hist=merge_histograms(dict(bucket.latency_hist), entry.latency_hist),
                    ttft_hist=merge_histograms(dict(bucket.ttft_hist), entry.ttft_hist),
                )
                return
        except IntegrityError:
            continue  # Another process created this minute's row first; update it instead.


def flush_now() -> int:
    """Write everything pending; returns the number of buckets written. Sync: call from a thread."""
    entries = _take()
    if not entries:
        return 0
    written = 0
    try:
        for key, entry in list(entries.items()):
            try:
                _upsert(*key, entry)
            except IntegrityError:
                log.warning("metrics for block %s dropped: the block or organization no longer exists", key[0])
            entries.pop(key)
            written += 1
    finally:
        if entries:
            _put_back(entries)
    return written


# On a pool thread, which keeps its connection (CONN_MAX_AGE); in_db_thread drops one the database closed.
aflush = in_db_thread(flush_now)


def discard_pending() -> None:
    _take()


def pending_count() -> int:
    with _lock:
        return sum(e.requests for e in _pending.values())


@atexit.register
def _flush_at_exit() -> None:
    if not _pending:
        return
    try:
        flush_now()
    except Exception:
        log.exception("metrics flush at exit failed")
