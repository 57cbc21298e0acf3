"""Writes of the runtime's state: components defined and deleted, vector store rows, each in one
transaction, nothing half-written."""

from __future__ import annotations

from typing import Any

from django.conf import settings
from django.db import IntegrityError, transaction

from inference.runtime.errors import VMFailure
from inference.runtime.models import Component, VectorRecord
from registry.models import Organization


def component_define(*, organization: Organization, name: str, type: str, attrs: dict[str, Any],
                     created_by: Any = None) -> Component:
    """A new component; 409 when the name is taken, 422 past the organization's RUNTIME_MAX_COMPONENTS."""
    with transaction.atomic():
        # Locking the organization's row serialises concurrent defines, so the limit holds exactly.
        Organization.objects.select_for_update().filter(pk=organization.pk).first()
        if Component.objects.filter(organization=organization, name=name).exists():
            raise VMFailure(409, f"A component named {name!r} is already defined; delete it first or pick another "
                                 "name.", code="already_defined", param="component_name")
        count = Component.objects.filter(organization=organization).count()
        if count >= settings.RUNTIME_MAX_COMPONENTS:
            raise VMFailure(422, f"The organization already keeps {count} components, its limit "
                                 f"(RUNTIME_MAX_COMPONENTS={settings.RUNTIME_MAX_COMPONENTS}); delete one first.",
                            code="component_limit")
        try:
            return Component.objects.create(organization=organization, name=name, type=type, attrs=attrs,
                                            created_by=created_by)
        except IntegrityError:
            raise VMFailure(409, f"A component named {name!r} is already defined.", code="already_defined",
                            param="component_name") from None


def component_delete(*, component: Component) -> None:
    component.delete()


def component_set_attrs(*, component: Component, attrs: dict[str, Any]) -> None:
    Component.objects.filter(pk=component.pk).update(attrs=attrs)
    component.attrs = attrs


def vectors_insert(*, component: Component, rows: list[tuple[bytes, str, Any]]) -> list[int]:
    """Insert (vector bytes, document, metadata) rows, all of one dimension; 422 past
    RUNTIME_VECTOR_STORE_MAX_ROWS. The first insert fixes the store's dimension, decided on the row
    read under its lock: two first inserts at once would otherwise each see none and fix two (a store
    of mixed dimensions that no query can rank); the later one gets 400 `dimension_mismatch`."""
    with transaction.atomic():
        locked = Component.objects.select_for_update().filter(pk=component.pk).first()
        if locked is None:
            raise VMFailure(404, f"No component named {component.name!r}.", code="component_not_found",
                            param="component_name")
        dimension = locked.attrs.get("dimension", len(rows[0][0]) // 4)
        if any(len(raw) != 4 * dimension for raw, _, _ in rows):
            raise VMFailure(400, f"The embeddings have {len(rows[0][0]) // 4} numbers; this store's vectors have "
                                 f"{dimension}.", code="dimension_mismatch", param="embedding")
        held = VectorRecord.objects.filter(component=component).count()
        if held + len(rows) > settings.RUNTIME_VECTOR_STORE_MAX_ROWS:
            raise VMFailure(422, f"The vector store holds {held} rows; {len(rows)} more would pass its limit "
                                 f"(RUNTIME_VECTOR_STORE_MAX_ROWS={settings.RUNTIME_VECTOR_STORE_MAX_ROWS}).",
                            code="vector_store_full")
        if "dimension" not in locked.attrs:
            component_set_attrs(component=locked, attrs={**locked.attrs, "dimension": dimension})
        component.attrs = locked.attrs
        created = VectorRecord.objects.bulk_create(
            [VectorRecord(component=component, vector=raw, document=document, metadata=metadata)
             for raw, document, metadata in rows])

        return [record.pk for record in created]


def vector_remove(*, component: Component, record_id: int) -> bool:
    deleted, _ = VectorRecord.objects.filter(component=component, id=record_id).delete()
    return bool(deleted)


def vectors_clear(*, component: Component) -> int:
    deleted, _ = VectorRecord.objects.filter(component=component).delete()
    return deleted
