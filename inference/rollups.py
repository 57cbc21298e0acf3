"""The one place metrics are summed: every reader (GET /api/blocks/<id>/metrics, the dashboard's
metrics pages and charts, GET /metrics) goes through `metric_buckets` and `rollup`, so the same
window shows the same numbers wherever it is read.

Who sees what (`metric_buckets`): for one block, its owner sees every calling organization's
requests and anyone else only its own; for a whole organization, the requests that organization
made, on any block. Windows include the current minute, so a short window is never empty while
traffic flows.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any

from django.db.models import QuerySet, Sum
from django.utils import timezone

from inference import metrics
from inference.models import BlockMetricBucket
from registry.models import Block, Organization

WINDOWS: dict[str, timedelta] = {
    "1m": timedelta(minutes=1),
    "5m": timedelta(minutes=5),
    "1h": timedelta(hours=1),
    "24h": timedelta(hours=24),
    "7d": timedelta(days=7),
}
# The dashboard's windows, and the width of one chart point in each (about 60-100 points a chart).
CHART_STEPS: dict[str, timedelta] = {
    "1h": timedelta(minutes=1),
    "24h": timedelta(minutes=15),
    "7d": timedelta(hours=2),
}


def window_start(window: str, now: datetime | None = None) -> datetime:
    now = now or timezone.now()
    return (now - WINDOWS[window]).replace(second=0, microsecond=0)


def metric_buckets(*, viewer: Organization, block: Block | None = None) -> QuerySet[BlockMetricBucket]:
    """The buckets `viewer` may read: one block's (all callers for its owner, else its own
    requests only), or with no block every request `viewer` made."""
    if block is None:
        return BlockMetricBucket.objects.filter(organization=viewer)
    buckets = BlockMetricBucket.objects.filter(block=block)
    if block.organization_id != viewer.pk:
        buckets = buckets.filter(organization=viewer)
    return buckets


@dataclass
class Rollup:
    requests: int = 0
    errors: int = 0
    latency_ms_sum: float = 0.0
    tokens_in: int = 0
    tokens_out: int = 0
    latency_hist: dict[str, int] = field(default_factory=dict)
    ttft_hist: dict[str, int] = field(default_factory=dict)

    def add(self, *, requests: int, errors: int, latency_ms_sum: float, tokens_in: int, tokens_out: int,
            latency_hist: dict[str, int] | None, ttft_hist: dict[str, int] | None) -> None:
        self.requests += requests
        self.errors += errors
        self.latency_ms_sum += latency_ms_sum
        self.tokens_in += tokens_in
        self.tokens_out += tokens_out
        metrics.merge_histograms(self.latency_hist, latency_hist)
        metrics.merge_histograms(self.ttft_hist, ttft_hist)

    @property
    def error_rate(self) -> float:
        return round(self.errors / self.requests, 4) if self.requests else 0.0

    @property
    def latency_avg_ms(self) -> float | None:
        return round(self.latency_ms_sum / self.requests, 3) if self.requests else None

    def latency(self, pct: float) -> float | None:
        return metrics.percentile(self.latency_hist, pct)

    def ttft(self, pct: float) -> float | None:
        return metrics.percentile(self.ttft_hist, pct)

    @property
    def tokens_per_s(self) -> float | None:
        """Output tokens per second of request time (the requests' latencies summed): how fast
        answers come, whatever the traffic."""
        return round(self.tokens_out * 1000 / self.latency_ms_sum, 2) if self.latency_ms_sum else None

    def as_dict(self) -> dict[str, Any]:
        """The API's shape (GET /api/blocks/<id>/metrics), which the dashboard shows too."""
        return {
            "requests": self.requests,
            "errors": self.errors,
            "errorRate": self.error_rate,
            "latencyMs": {"avg": self.latency_avg_ms, "p50": self.latency(50), "p95": self.latency(95),
                          "p99": self.latency(99)},
            "ttftMs": {"p50": self.ttft(50), "p95": self.ttft(95), "p99": self.ttft(99)},
            "tokensIn": self.tokens_in,
            "tokensOut": self.tokens_out,
            "tokensPerS": self.tokens_per_s,
        }


_FIELDS = ("requests", "errors", "latency_ms_sum", "tokens_in", "tokens_out", "latency_hist", "ttft_hist")


def rollup(buckets: QuerySet[BlockMetricBucket]) -> Rollup:
    total = Rollup()
    for row in buckets.values_list(*_FIELDS):
        total.add(**dict(zip(_FIELDS, row, strict=True)))
    return total


def rollup_by_block(buckets: QuerySet[BlockMetricBucket]) -> dict[int, Rollup]:
    """One Rollup per block pk; they add up to rollup(buckets)."""
    by_block: dict[int, Rollup] = {}
    for block_pk, *row in buckets.values_list("block_id", *_FIELDS):
        by_block.setdefault(block_pk, Rollup()).add(**dict(zip(_FIELDS, row, strict=True)))
    return by_block


@dataclass
class Point:
    start: datetime
    rollup: Rollup


def series(buckets: QuerySet[BlockMetricBucket], *, window: str, now: datetime | None = None) -> list[Point]:
    """The window cut into CHART_STEPS[window] points (empty ones included, oldest first); the
    points add up to rollup() of the same window."""
    now = now or timezone.now()
    since = window_start(window, now)
    step = CHART_STEPS[window]
    count = int((now - since) / step) + 1
    points = [Point(start=since + i * step, rollup=Rollup()) for i in range(count)]
    for minute, *row in buckets.filter(minute__gte=since).values_list("minute", *_FIELDS):
        index = min(int((minute - since) / step), count - 1)
        points[index].rollup.add(**dict(zip(_FIELDS, row, strict=True)))
    return points


def totals_only(buckets: QuerySet[BlockMetricBucket]) -> dict[str, int]:
    """Counters without histograms, summed in SQL (GET /metrics reads every organization's)."""
    sums = buckets.aggregate(requests=Sum("requests"), errors=Sum("errors"), tokens_in=Sum("tokens_in"),
                             tokens_out=Sum("tokens_out"))
    return {name: value or 0 for name, value in sums.items()}

