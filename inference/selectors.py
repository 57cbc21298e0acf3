"""Reads for the inference app: a block's metrics over a time window.

Which blocks an organization may call is the registry's rule (registry.selectors.blocks_callable).
"""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime, timedelta
from typing import Any

from django.conf import settings
from django.db.models import Q, Sum
from django.utils import timezone

from inference import metrics
from inference.models import BlockMetricBucket
from registry.models import Block, Organization
from registry.similarity.performance import BlockPerformance

WINDOWS: dict[str, timedelta] = {
    "1m": timedelta(minutes=1),
    "5m": timedelta(minutes=5),
    "1h": timedelta(hours=1),
    "24h": timedelta(hours=24),
}


def block_metrics(*, block: Block, window: str, viewer: Organization, now: datetime | None = None) -> dict[str, Any]:
    """Counters and percentiles of one block over a window, summed from per-minute buckets.

    The block's owner sees every caller's requests; any other organization (the block is public or
    granted to it) sees only its own, so a shared block never reveals who else uses it, or how much.
    """
    now = now or timezone.now()
    # The current minute's bucket counts too, so a 1m window is never empty while traffic flows.
    since = (now - WINDOWS[window]).replace(second=0, microsecond=0)
    buckets = BlockMetricBucket.objects.filter(block=block, minute__gte=since)
    owner = block.organization_id == viewer.pk
    if not owner:
        buckets = buckets.filter(organization=viewer)
    totals = buckets.aggregate(
        requests=Sum("requests"), errors=Sum("errors"), tokens_in=Sum("tokens_in"),
        tokens_out=Sum("tokens_out"), latency_ms_sum=Sum("latency_ms_sum"),
    )
    latency: dict[str, int] = {}
    ttft: dict[str, int] = {}
    for lat, tt in buckets.values_list("latency_hist", "ttft_hist"):
        metrics.merge_histograms(latency, lat)
        metrics.merge_histograms(ttft, tt)
    requests = totals["requests"] or 0
    errors = totals["errors"] or 0
    return {
        "block": block.block_id,
        "window": window,
        # "all": every organization's requests (the caller owns the block); "own": the caller's only.
        "scope": "all" if owner else "own",
        "since": since.isoformat(),
        "requests": requests,
        "errors": errors,
        "errorRate": round(errors / requests, 4) if requests else 0.0,
        "latencyMs": {
            "avg": round((totals["latency_ms_sum"] or 0.0) / requests, 3) if requests else None,
            "p50": metrics.percentile(latency, 50),
            "p95": metrics.percentile(latency, 95),
            "p99": metrics.percentile(latency, 99),
        },
        "ttftMs": {"p50": metrics.percentile(ttft, 50), "p95": metrics.percentile(ttft, 95)},
        "tokensIn": totals["tokens_in"] or 0,
        "tokensOut": totals["tokens_out"] or 0,
    }


def blocks_performance(viewer: Organization, block_pks: Sequence[int], *, window: str | None = None,
                       now: datetime | None = None) -> dict[int, BlockPerformance]:
    """p50 latency and error rate of each block over the window, as block_metrics counts them for
    `viewer` (every caller's requests for its own blocks, only its own for anyone else's), in one query.
    The similarity search's `performance` policy reads this (registered in inference.signals)."""
    now = now or timezone.now()
    since = (now - WINDOWS[window or settings.SIMILARITY_PERFORMANCE_WINDOW]).replace(second=0, microsecond=0)
    buckets = (BlockMetricBucket.objects.filter(block_id__in=list(block_pks), minute__gte=since)
               .filter(Q(block__organization=viewer) | Q(organization=viewer))
               .values_list("block_id", "requests", "errors", "latency_hist"))
    totals: dict[int, list[Any]] = {}
    for block_pk, requests, errors, hist in buckets:
        entry = totals.setdefault(block_pk, [0, 0, {}])
        entry[0] += requests
        entry[1] += errors
        metrics.merge_histograms(entry[2], hist)
    return {pk: BlockPerformance(requests=requests, p50_ms=metrics.percentile(hist, 50),
                                 error_rate=errors / requests if requests else None)
            for pk, (requests, errors, hist) in totals.items()}
