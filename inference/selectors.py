"""Reads for the inference app: a block's metrics over a time window, the request log.

Which blocks an organization may call is the registry's rule (registry.selectors.blocks_callable).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from datetime import datetime
from typing import Any

from django.conf import settings
from django.db.models import Count, Q, QuerySet
from django.utils import timezone

from inference import metrics, rollups
from inference.models import BlockMetricBucket, RequestLogEntry
from registry.models import Block, Organization
from registry.similarity.performance import BlockPerformance

WINDOWS = rollups.WINDOWS


def block_metrics(*, block: Block, window: str, viewer: Organization, now: datetime | None = None) -> dict[str, Any]:
    """Counters and percentiles of one block over a window, summed from per-minute buckets by
    inference.rollups (the dashboard reads the same rollups, so the numbers agree).

    The block's owner sees every caller's requests; any other organization (the block is public or
    granted to it) sees only its own, so a shared block never reveals who else uses it, or how much.
    """
    since = rollups.window_start(window, now)
    total = rollups.rollup(rollups.metric_buckets(viewer=viewer, block=block).filter(minute__gte=since))
    return {
        "block": block.block_id,
        "window": window,
        # "all": every organization's requests (the caller owns the block); "own": the caller's only.
        "scope": "all" if block.organization_id == viewer.pk else "own",
        "since": since.isoformat(),
        **total.as_dict(),
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


def request_log_entries(*, organization: Organization, block: Block | None = None, api_key_pk: int | None = None,
                        status: str = "", since: datetime | None = None,
                        until: datetime | None = None) -> QuerySet[RequestLogEntry]:
    """The request log rows of the requests `organization` made, newest first, filtered.
    `status`: "ok" (200), "error" (anything else but a client that left), "left" (499), or a code."""
    rows = RequestLogEntry.objects.filter(organization=organization)
    if block is not None:
        rows = rows.filter(block=block)
    if api_key_pk is not None:
        rows = rows.filter(api_key_id=api_key_pk)
    if status == "ok":
        rows = rows.filter(status=200)
    elif status == "error":
        rows = rows.exclude(status__in=(200, 499))
    elif status == "left":
        rows = rows.filter(status=499)
    elif status.isdigit():
        rows = rows.filter(status=int(status))
    if since is not None:
        rows = rows.filter(created_at__gte=since)
    if until is not None:
        rows = rows.filter(created_at__lt=until)
    return rows.select_related("block", "block__organization").order_by("-created_at", "-pk")


def route_decisions(*, organization: Organization, block: Block, limit: int = 20) -> list[RequestLogEntry]:
    """The latest requests in which `model: "auto"` chose `block`, newest first: the request log's rows
    with a route, under the log's own rule (an organization sees only the requests it made, even on a
    block it owns: another caller's routing says what that caller asked for)."""
    return list(request_log_entries(organization=organization, block=block).filter(route__isnull=False)[:limit])


def request_counts_by_key(*, organization: Organization, since: Mapping[str, datetime]) -> dict[int, dict[str, int]]:
    """{key pk: {window: requests since since[window]}} for the keys of `organization` that made any,
    in one query over the rows request_log_entries gives (the /logs/ page filtered by that key and
    time shows the same count). Requests of a dashboard session have no key and are not counted."""
    if not since:
        return {}
    rows = (request_log_entries(organization=organization, since=min(since.values()))
            .filter(api_key__isnull=False).order_by())
    # Annotation names: "n0", "n1"... (a window like "24h" is no identifier).
    names = {f"n{i}": (window, start) for i, (window, start) in enumerate(since.items())}
    counted = rows.values("api_key_id").annotate(
        **{name: Count("pk", filter=Q(created_at__gte=start)) for name, (_, start) in names.items()})
    return {row["api_key_id"]: {window: row[name] for name, (window, _) in names.items()} for row in counted}
