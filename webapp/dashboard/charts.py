"""Small server-rendered SVG charts: no JavaScript library, nothing from a CDN, and the chart shows
exactly the rollups the page's numbers come from (inference.rollups.series)."""

from __future__ import annotations

from django.utils.html import format_html, format_html_join
from django.utils.safestring import SafeString

from inference.rollups import Point

WIDTH = 600
HEIGHT = 160
PAD = 4


def traffic_chart(points: list[Point], *, title: str) -> SafeString:
    """Requests per point as bars (errors stacked in red over them) and p95 latency as a line on
    its own scale. `data-requests` carries the total, so a test can tell an empty chart."""
    peak = max((p.rollup.requests for p in points), default=0) or 1
    latencies = [p.rollup.latency(95) for p in points]
    slowest = max((v for v in latencies if v is not None), default=0) or 1
    step = (WIDTH - 2 * PAD) / max(len(points), 1)
    bars = []
    line = []
    for i, (point, latency) in enumerate(zip(points, latencies, strict=True)):
        x = PAD + i * step
        height = (HEIGHT - 2 * PAD) * point.rollup.requests / peak
        errors = (HEIGHT - 2 * PAD) * point.rollup.errors / peak
        tip = f"{point.start:%Y-%m-%d %H:%M} UTC: {point.rollup.requests} requests, {point.rollup.errors} errors"
        if latency is not None:
            tip += f", p95 {latency:g} ms"
            line.append(f"{x + step / 2:.1f},{HEIGHT - PAD - (HEIGHT - 2 * PAD) * latency / slowest:.1f}")
        if point.rollup.requests:
            bars.append((f"{x:.1f}", f"{HEIGHT - PAD - height:.1f}", f"{max(step - 1, 1):.1f}", f"{height:.1f}",
                         f"{HEIGHT - PAD - errors:.1f}", f"{errors:.1f}", tip))
    bar_markup = format_html_join(
        "", '<g><title>{}</title><rect class="bar" x="{}" y="{}" width="{}" height="{}"></rect>'
            '<rect class="bar-error" x="{}" y="{}" width="{}" height="{}"></rect></g>',
        ((tip, x, y, w, h, x, ey, w, eh) for x, y, w, h, ey, eh, tip in bars))
    polyline = format_html('<polyline class="latency" points="{}"></polyline>', " ".join(line)) if line else ""
    total = sum(p.rollup.requests for p in points)
    return format_html(
        '<svg class="chart" viewBox="0 0 {} {}" preserveAspectRatio="none" role="img" aria-label="{}" '
        'data-requests="{}" data-points="{}"><title>{}</title>{}{}</svg>',
        WIDTH, HEIGHT, title, total, len(points), title, bar_markup, polyline)
