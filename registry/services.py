"""Writes to the registry. Keyword-only, typed, named <entity>_<action>."""

from __future__ import annotations

from datetime import datetime
from typing import Any

from django.db import IntegrityError, transaction

from registry.models import ApiKey, Block, Organization


@transaction.atomic
def api_key_create(
    *,
    organization: Organization,
    name: str,
    created_by=None,
    expires_at: datetime | None = None,
    allowed_models: list[str] | None = None,
    role: str = "",
) -> tuple[ApiKey, str]:
    """Create a key; the raw key is returned once and never stored. `role` only counts for a key
    with no `created_by` (see ApiKey.role)."""
    raw = ApiKey.generate()
    key = ApiKey(
        organization=organization,
        name=name,
        created_by=created_by,
        expires_at=expires_at,
        allowed_models=allowed_models or [],
        role="" if created_by is not None else role,
    )
    key.set_key(raw)
    key.save()
    return key, raw


class BlockConflict(Exception):
    """The organization already has a block with this id (ids are unique per organization)."""


# Fields a PUT resets to their defaults when the body leaves them out.
BLOCK_DEFAULTS: dict[str, Any] = {
    "kind": Block.LLM,
    "name": "",
    "description": "",
    "tags": [],
    "input_protocols": [],
    "output_protocols": [],
    "metadata": {},
    "backend_type": "",
    "backend_config": {},
    "visibility": Block.PRIVATE,
    "enabled": True,
}
MASK = "***"


def block_create(*, organization: Organization, data: dict[str, Any]) -> Block:
    """`data` holds model fields, as BlockWriteSerializer emits them."""
    fields = {**BLOCK_DEFAULTS, **data}
    block = Block(organization=organization, **{k: v for k, v in fields.items() if k != "block_id"})
    block.block_id = data["block_id"]
    try:
        with transaction.atomic():
            block.save()
    except IntegrityError as exc:
        # Only the caller's own namespace can clash; another organization's ids are never mentioned.
        raise BlockConflict(f"you already have a block with id '{block.block_id}'") from exc
    return block


def block_update(*, block: Block, data: dict[str, Any], partial: bool) -> Block:
    """PATCH (partial) changes the given fields; PUT replaces every field but the id."""
    data = {k: v for k, v in data.items() if k != "block_id"}
    if "backend_config" in data:
        # A client that read the block back got secrets masked; sending the mask again
        # means "keep what is stored", not "store three asterisks".
        stored = block.backend_config or {}
        data["backend_config"] = {
            k: (stored[k] if v == MASK and k in stored else v) for k, v in data["backend_config"].items()
        }
    if partial and "metadata" in data:
        data["metadata"] = {**(block.metadata or {}), **data["metadata"]}
    values = data if partial else {**BLOCK_DEFAULTS, **data}
    for key, value in values.items():
        setattr(block, key, value)
    block.save()
    return block


def block_delete(*, block: Block) -> None:
    block.delete()
