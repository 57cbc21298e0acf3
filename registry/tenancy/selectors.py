"""Reads for tenancy. Visibility is the registry's one rule (own OR public OR granted)."""

from __future__ import annotations

from django.db.models import QuerySet

from registry.models import ApiKey, Block, BlockGrant, Membership, Organization
from registry.selectors import block_get_visible, blocks_visible_to
from registry.tenancy.models import OrgModel, PolicyRule, Quota

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
