"""Reads of the runtime's state, always within one organization (another's components do not exist)."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

from inference.runtime.models import Component, RuntimeAccess, VectorRecord
from registry.models import Organization


def component_get(*, organization: Organization, name: str) -> Component | None:
    return Component.objects.filter(organization=organization, name=name).first()


def component_names(*, organization: Organization) -> list[str]:
    return list(Component.objects.filter(organization=organization).order_by("name").values_list("name", flat=True))


def http_request_opened(*, organization: Organization) -> bool:
    return RuntimeAccess.objects.filter(organization=organization, http_request=True).exists()


def vector_matrix_batches(*, component: Component, size: int) -> Iterator[list[tuple[int, bytes]]]:
    """The store's (id, vector bytes) rows in id order, `size` at a time (keyset pages: each page is one
    query that starts after the last id seen, so no page costs more than its rows)."""
    after = 0
    while True:
        page = [(pk, bytes(raw)) for pk, raw in VectorRecord.objects.filter(component=component, id__gt=after)
                .order_by("id").values_list("id", "vector")[:size]]
        if page:
            yield page
        if len(page) < size:
            return
        after = page[-1][0]


def vector_records(*, component: Component, ids: list[int]) -> dict[int, dict[str, Any]]:
    rows = VectorRecord.objects.filter(component=component, id__in=ids).values("id", "document", "metadata", "vector")
    return {row["id"]: row for row in rows}
