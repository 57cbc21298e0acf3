"""GET /metrics: the operator's view of every organization's traffic in Prometheus' text format.

Counters are all-time sums of the per-minute buckets (inference.rollups reads the same rows as
the dashboard and /api/blocks/<id>/metrics), so a Prometheus `increase()` over a window agrees
with the dashboard's counts for that window. Latency and TTFT percentiles are gauges over the
last hour, one series per block. Who may read it: a request with `Authorization: Bearer
<METRICS_TOKEN>` or from an address in METRICS_ALLOW_NETWORKS; with neither configured the
endpoint does not exist (404).
"""

from __future__ import annotations

import hmac
import ipaddress
from collections.abc import Iterable

from django.conf import settings
from django.db.models import Count, Sum
from django.http import HttpRequest, HttpResponse, JsonResponse
from django.views.decorators.http import require_GET

from inference import metrics, request_log, rollups
from inference.models import BlockMetricBucket, Engine
from registry.models import Block

CONTENT_TYPE = "text/plain; version=0.0.4; charset=utf-8"


def _escape(value: str) -> str:
    return value.replace("\\", "\\\\").replace("\n", "\\n").replace('"', '\\"')


def _labels(**labels: str) -> str:
    return "{" + ",".join(f'{name}="{_escape(value)}"' for name, value in labels.items()) + "}"


def _allowed_networks() -> list[ipaddress.IPv4Network | ipaddress.IPv6Network]:
    return [ipaddress.ip_network(cidr, strict=False) for cidr in settings.METRICS_ALLOW_NETWORKS]


def _from_allowed_network(request: HttpRequest) -> bool:
    try:
        address = ipaddress.ip_address(request.META.get("REMOTE_ADDR", ""))
    except ValueError:
        return False
    return any(address in network for network in _allowed_networks())


def _has_token(request: HttpRequest) -> bool:
    token = settings.METRICS_TOKEN
    header = request.headers.get("Authorization", "")
    scheme, _, given = header.partition(" ")
    return bool(token) and scheme.lower() == "bearer" and hmac.compare_digest(given.strip().encode(), token.encode())


def _family(name: str, kind: str, help_text: str, samples: Iterable[tuple[str, float]]) -> list[str]:
    lines = [f"# HELP {name} {help_text}", f"# TYPE {name} {kind}"]
    lines += [f"{name}{labels} {value:g}" for labels, value in samples]
    return lines


def exposition() -> str:
    """Every family, as one text page."""
    totals = list(BlockMetricBucket.objects.values("block__organization__slug", "block__block_id",
                                                    "organization__slug")
                  .annotate(requests=Sum("requests"), errors=Sum("errors"), tokens_in=Sum("tokens_in"),
                            tokens_out=Sum("tokens_out"), latency_ms_sum=Sum("latency_ms_sum"))
                  .order_by("block__organization__slug", "block__block_id", "organization__slug"))

    def per_caller(field: str, scale: float = 1.0) -> list[tuple[str, float]]:
        return [(_labels(block=f"{row['block__organization__slug']}/{row['block__block_id']}",
                         organization=row["organization__slug"]), (row[field] or 0) * scale) for row in totals]

    lines: list[str] = []
    lines += _family("switchboard_requests_total", "counter", "Requests served, by block and calling organization.",
                     per_caller("requests"))
    lines += _family("switchboard_request_errors_total", "counter", "Requests that failed.", per_caller("errors"))
    lines += _family("switchboard_tokens_in_total", "counter", "Prompt tokens.", per_caller("tokens_in"))
    lines += _family("switchboard_tokens_out_total", "counter", "Completion tokens.", per_caller("tokens_out"))
    lines += _family("switchboard_request_seconds_total", "counter", "Request time, summed.",
                     per_caller("latency_ms_sum", 0.001))

    since = rollups.window_start("1h")
    recent = rollups.rollup_by_block(BlockMetricBucket.objects.filter(minute__gte=since))
    names = {pk: f"{slug}/{block_id}" for pk, slug, block_id in
             Block.objects.filter(pk__in=recent).values_list("pk", "organization__slug", "block_id")}
    latency: list[tuple[str, float]] = []
    ttft: list[tuple[str, float]] = []
    for pk, total in sorted(recent.items(), key=lambda item: names.get(item[0], "")):
        for quantile in (50, 95, 99):
            labels = _labels(block=names.get(pk, str(pk)), quantile=f"{quantile / 100:g}")
            if (value := total.latency(quantile)) is not None:
                latency.append((labels, value / 1000))
            if (value := total.ttft(quantile)) is not None:
                ttft.append((labels, value / 1000))
    lines += _family("switchboard_request_latency_seconds", "gauge",
                     "Request latency percentiles over the last hour.", latency)
    lines += _family("switchboard_time_to_first_token_seconds", "gauge",
                     "Time to first token percentiles over the last hour (streams).", ttft)

    engines = Engine.objects.values("state").annotate(count=Count("pk")).order_by("state")
    lines += _family("switchboard_engines", "gauge", "Engines by state.",
                     [(_labels(state=row["state"]), row["count"]) for row in engines])
    lines += _family("switchboard_metrics_pending_requests", "gauge",
                     "Requests counted in this process and not yet written.", [("", metrics.pending_count())])
    lines += _family("switchboard_request_log_pending", "gauge",
                     "Request log rows in this process not yet written.", [("", request_log.pending_count())])
    lines += _family("switchboard_request_log_dropped_total", "counter",
                     "Request log rows this process dropped during a database outage.",
                     [("", request_log.dropped_entries)])
    return "\n".join(lines) + "\n"


@require_GET
def prometheus_metrics(request: HttpRequest) -> HttpResponse:
    if not settings.METRICS_TOKEN and not settings.METRICS_ALLOW_NETWORKS:
        return JsonResponse({"success": False, "message": "Not found."}, status=404)
    if not (_has_token(request) or _from_allowed_network(request)):
        if not settings.METRICS_TOKEN:
            # Network-only: to anyone outside it the endpoint does not exist.
            return JsonResponse({"success": False, "message": "Not found."}, status=404)
        response = JsonResponse({"success": False, "message": "Send 'Authorization: Bearer <METRICS_TOKEN>'."},
                                status=401)
        response["WWW-Authenticate"] = 'Bearer realm="metrics"'
        return response
    return HttpResponse(exposition(), content_type=CONTENT_TYPE)
