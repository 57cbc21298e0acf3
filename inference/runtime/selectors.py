"""Reads of the runtime's state, always within one organization (another's components do not exist)."""

from __future__ import annotations

from typing import Any

from inference.runtime.models import Component, RuntimeAccess, VectorRecord
from registry.models import Organization


def component_get(*, organization: Organization, name: str) -> Component | None:
    return Component.objects.filter(organization=organization, name=name).first()


def component_names(*, organization: Organization) -> list[str]:
    return list(Component.objects.filter(organization=organization).order_by("name").values_list("name", flat=True))


def http_request_opened(*, organization: Organization) -> bool:
    return RuntimeAccess.objects.filter(organization=organization, http_request=True).exists()


def vector_matrix_rows(*, component: Component) -> list[tuple[int, bytes]]:
    return [(pk, bytes(raw)) for pk, raw in
            VectorRecord.objects.filter(component=component).order_by("id").values_list("id", "vector")]


def vector_records(*, component: Component, ids: list[int]) -> dict[int, dict[str, Any]]:
    rows = VectorRecord.objects.filter(component=component, id__in=ids).values("id", "document", "metadata", "vector")
    return {row["id"]: row for row in rows}
