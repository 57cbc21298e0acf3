"""Writes to the registry. Keyword-only, typed, named <entity>_<action>."""

from __future__ import annotations

from datetime import datetime
from typing import Any

from django.db import IntegrityError, transaction

from registry.models import ApiKey, Block, Membership, Organization

_ROLE_RANK = {"": 0, Membership.MEMBER: 0, Membership.OWNER: 1}


class KeyRightsError(ValueError):
    """A key asked to mint a key with more rights than its own; the message names the field."""


def api_key_limits_under(*, parent: ApiKey, requested: dict[str, Any]) -> dict[str, Any]:
    """`expires_at` and `allowed_models` for a key that `parent` mints, from the request's values.

    A field left out takes the parent's own value; one that would widen the parent's rights (a
    later or no expiry, a model outside its list, or no list at all under a restricted parent) is
    refused rather than quietly narrowed, so the caller learns what the new key can do.
    """
    limits = {
        "expires_at": requested.get("expires_at", parent.expires_at),
        "allowed_models": requested.get("allowed_models", list(parent.allowed_models or [])),
    }
    _check_within(parent=parent, **limits)
    return limits


def _check_within(*, parent: ApiKey, expires_at: datetime | None, allowed_models: list[str] | None) -> None:
    if parent.expires_at is not None and (expires_at is None or expires_at > parent.expires_at):
        raise KeyRightsError(f"expires_at: a key cannot outlive the key that creates it "
                             f"(at most {parent.expires_at.isoformat()})")
    if parent.allowed_models:
        if not allowed_models:
            raise KeyRightsError("allowed_models: this key is restricted to some models, so the key it "
                                 "creates must be too (an empty list would allow every model)")
        wider = [m for m in allowed_models if m not in parent.allowed_models]
        if wider:
            raise KeyRightsError(f"allowed_models: {', '.join(map(repr, wider))} not allowed to the key "
                                 "that creates this one")


@transaction.atomic
def api_key_create(
    *,
    organization: Organization,
    name: str,
    created_by=None,
    expires_at: datetime | None = None,
    allowed_models: list[str] | None = None,
    role: str = "",
    parent: ApiKey | None = None,
) -> tuple[ApiKey, str]:
    """Create a key; the raw key is returned once and never stored. `role` only counts for a key
    with no `created_by` (see ApiKey.role). A key minted by another key (`parent`) gets no more
    rights than it: KeyRightsError otherwise (api_key_limits_under fills in the parent's limits)."""
    if parent is not None:
        if parent.organization_id != organization.pk:
            raise KeyRightsError("a key only creates keys of its own organization")
        if parent.created_by_id != getattr(created_by, "pk", None):
            # A key acts with its creator's role; a minted key acts for the same person, no one else.
            raise KeyRightsError("a key only creates keys that act for the same person")
        if created_by is None and _ROLE_RANK[role] > _ROLE_RANK[parent.role]:
            raise KeyRightsError("role: a key cannot create a key with a higher role than its own")
        _check_within(parent=parent, expires_at=expires_at, allowed_models=allowed_models)
    raw = ApiKey.generate()
    key = ApiKey(
        organization=organization,
        name=name,
        created_by=created_by,
        expires_at=expires_at,
        allowed_models=allowed_models or [],
        role="" if created_by is not None else role,
        parent=parent,
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
# Config keys that say where a backend sends its requests (and so its secrets). A secret kept by
# sending MASK stays only while every one of these, and the backend type, is unchanged.
DESTINATION_KEYS = ("base_url", "target", "tls", "class", "endpoint", "url", "host", "port")


class SecretNotKept(ValueError):
    """`***` was sent for a stored secret while the backend's destination changed."""


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
        data["backend_config"] = _unmasked_config(block=block, backend_type=data.get("backend_type", block.backend_type),
                                                  config=data["backend_config"])
    if partial and "metadata" in data:
        data["metadata"] = {**(block.metadata or {}), **data["metadata"]}
    values = data if partial else {**BLOCK_DEFAULTS, **data}
    for key, value in values.items():
        setattr(block, key, value)
    block.save()
    return block


def _unmasked_config(*, block: Block, backend_type: str, config: dict[str, Any]) -> dict[str, Any]:
    """A client that read the block back got secrets masked; sending the mask again means "keep
    what is stored", not "store three asterisks". Only for the same destination: otherwise whoever
    may write the block could point it at their own host and receive the stored secret."""
    stored = block.backend_config or {}
    kept = sorted(k for k, v in config.items() if v == MASK and k in stored)
    stored_headers = stored.get("headers") if isinstance(stored.get("headers"), dict) else {}
    headers = config.get("headers") if isinstance(config.get("headers"), dict) else {}
    kept_headers = sorted(name for name, v in headers.items() if v == MASK and name in stored_headers)
    kept += [f"headers.{name}" for name in kept_headers]
    if not kept:
        return dict(config)
    moved = [k for k in DESTINATION_KEYS if config.get(k) != stored.get(k)]
    if backend_type != block.backend_type:
        moved.insert(0, "type")
    if moved:
        raise SecretNotKept(
            f"backend.config.{kept[0]}: send the {kept[0]} again: the destination changed "
            f"({', '.join('backend.' + m if m == 'type' else 'backend.config.' + m for m in moved)})"
        )
    unmasked = {k: (stored[k] if k in kept else v) for k, v in config.items()}
    if kept_headers:
        unmasked["headers"] = {name: (stored_headers[name] if name in kept_headers else v)
                               for name, v in headers.items()}
    return unmasked


def block_delete(*, block: Block) -> None:
    block.delete()
