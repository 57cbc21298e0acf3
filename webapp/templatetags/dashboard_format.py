"""Number formats of the metrics and request log pages."""

from __future__ import annotations

import json

from django import template

register = template.Library()


@register.filter
def ms(value: float | None) -> str:
    """A duration in ms, in the unit a person reads best; "–" without data."""
    if value is None:
        return "–"
    return f"{value / 1000:.2f} s" if value >= 1000 else f"{value:.0f} ms" if value >= 10 else f"{value:.1f} ms"


@register.filter
def percent(value: float | None) -> str:
    return "–" if value is None else f"{value * 100:.1f}%"


@register.filter
def pretty_json(value) -> str:
    """Indented JSON (escaped by the template like any other text)."""
    return json.dumps(value, indent=2, ensure_ascii=False, default=str)
