"""Reads for tenancy. Visibility is the registry's one rule (own OR public OR granted)."""

from __future__ import annotations

from typing import Any

from django.db.models import QuerySet

from registry.models import ApiKey, Block, BlockGrant, Membership, Organization
from registry.selectors import block_get_visible, blocks_visible_to
from registry.tenancy.models import OrgModel, PolicyRule, Quota
from registry.tenancy.quota import quota_store
from registry.tenancy.rules import load_org_rules

__all__ = ["blocks_visible_to", "block_visible_get"]


def block_visible_get(*, organization: Organization, block_id: str) -> Block | None:
    """A block the organization may see, or None: a foreign private block looks missing."""
    return block_get_visible(organization=organization, block_id=block_id)


def api_keys_of(organization: Organization) -> QuerySet[ApiKey]:
    return ApiKey.objects.filter(organization=organization).order_by("-created_at", "-id")


def members_of(organization: Organization) -> QuerySet[Membership]:
    return Membership.objects.filter(organization=organization).select_related("user").order_by("id")


def grants_of(block: Block) -> QuerySet[BlockGrant]:
    return BlockGrant.objects.filter(block=block).select_related("organization").order_by("id")


def org_models_of(organization: Organization) -> QuerySet[OrgModel]:
    return (OrgModel.objects.filter(organization=organization)
            .select_related("organization", "block__organization").order_by("name"))


def policy_rules_of(organization: Organization) -> QuerySet[PolicyRule]:
    return (PolicyRule.objects.filter(organization=organization)
            .select_related("organization", "block__organization").order_by("id"))


def quotas_of(organization: Organization) -> QuerySet[Quota]:
    return Quota.objects.filter(organization=organization).order_by("id")


def remaining_quota(principal) -> dict[str, Any]:
    """What the caller's key and organization have left, from the quota store."""
    rules = load_org_rules(principal.organization.pk)
    api_key = getattr(principal, "api_key", None)
    store = quota_store()
    out: dict[str, Any] = {}
    for scope, limits in (("organization", rules.quotas.get(None)),
                          ("apiKey", rules.quotas.get(api_key.pk) if api_key is not None else None)):
        if limits is not None:
            out[scope] = store.remaining(limits)
    return out
