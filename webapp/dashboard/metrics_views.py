"""Metrics pages: the organization's traffic and one block's, over 1 h / 24 h / 7 d, with a chart.

Every number comes from inference.rollups (the same reads as GET /api/blocks/<id>/metrics), so a
block's page, its row on the organization's page and the API agree. The page polls its own
partial (htmx, every POLL_S) so the numbers and chart move while traffic flows.
"""

from __future__ import annotations

from django.contrib.auth.decorators import login_required
from django.http import Http404, HttpRequest, HttpResponse
from django.shortcuts import render

from inference import rollups
from registry.models import Block
from registry.selectors import block_get_visible, block_reference
from webapp.dashboard.access import require_member
from webapp.dashboard.charts import traffic_chart

POLL_S = 5
DEFAULT_WINDOW = "1h"


def _window(request: HttpRequest) -> str:
    window = request.GET.get("window", DEFAULT_WINDOW)
    if window not in rollups.CHART_STEPS:
        raise Http404(f"window must be one of {', '.join(rollups.CHART_STEPS)}")
    return window


def _render(request: HttpRequest, context: dict) -> HttpResponse:
    context |= {"windows": list(rollups.CHART_STEPS), "poll_s": POLL_S}
    template = ("dashboard/metrics/partial.html" if request.headers.get("HX-Request")
                else "dashboard/metrics/page.html")
    return render(request, template, context)


@login_required
def organization_metrics(request: HttpRequest) -> HttpResponse:
    org = require_member(request).organization
    window = _window(request)
    buckets = rollups.metric_buckets(viewer=org).filter(minute__gte=rollups.window_start(window))
    by_block = rollups.rollup_by_block(buckets)
    blocks = {block.pk: block for block in Block.objects.filter(pk__in=by_block).select_related("organization")}
    rows = sorted(({"reference": block_reference(blocks[pk], organization=org), "m": total.as_dict()}
                   for pk, total in by_block.items() if pk in blocks),
                  key=lambda row: (-row["m"]["requests"], row["reference"]))
    total = rollups.rollup(buckets)
    return _render(request, {
        "org": org, "window": window, "m": total.as_dict(), "rows": rows, "metrics_block": None,
        "title": f"Metrics · {org.name}",
        "scope": "Requests your organization made, on any block.",
        "chart": traffic_chart(rollups.series(buckets, window=window), title=f"Requests per interval, {window}"),
    })


@login_required
def block_metrics(request: HttpRequest, block_id: str) -> HttpResponse:
    org = require_member(request).organization
    window = _window(request)
    # The API's naming rule (inference.views.block_metrics): another org's private block is not there.
    block = block_get_visible(organization=org, block_id=block_id)
    if block is None:
        raise Http404("No such block.")
    buckets = rollups.metric_buckets(viewer=org, block=block).filter(minute__gte=rollups.window_start(window))
    reference = block_reference(block, organization=org)
    return _render(request, {
        "org": org, "window": window, "m": rollups.rollup(buckets).as_dict(), "rows": [], "metrics_block": block,
        "reference": reference, "title": f"Metrics · {reference}",
        "scope": ("Every organization's requests (your block)." if block.organization_id == org.pk
                  else "Your organization's requests only."),
        "chart": traffic_chart(rollups.series(buckets, window=window), title=f"Requests per interval, {window}"),
    })
