"""Writes for tenancy. Keyword-only, typed, named <entity>_<action>."""

from __future__ import annotations

import secrets
from typing import Any

from django.contrib.auth import get_user_model
from django.db import IntegrityError, transaction
from django.utils import timezone

from registry import auth
from registry.models import ApiKey, Block, BlockGrant, Membership, Organization
from registry.tenancy.models import OrgModel, PolicyRule, Quota


class Conflict(Exception):
    """The write would duplicate something that must be unique."""


class LastOwner(Exception):
    """The change would leave the organization with no owner: nobody could manage it any more."""


@transaction.atomic
def organization_owner_ensure(*, username: str, org_slug: str, org_name: str = "",
                              password: str | None = None) -> tuple[Any, Organization, str | None]:
    """The first-run path (manage.py create_owner): the organization (created if missing), the user
    (created if missing) and an owner membership (an existing member is promoted). `password` is set
    when given; a new user without one gets a random one, returned (the only copy) as the third item."""
    organization, _ = Organization.objects.get_or_create(slug=org_slug, defaults={"name": org_name or org_slug})
    user = get_user_model().objects.filter(username=username).first()
    generated = None
    if user is None:
        generated = None if password else secrets.token_urlsafe(12)
        user = get_user_model().objects.create_user(username=username, password=password or generated)
    elif password:
        user.set_password(password)
        user.save(update_fields=["password"])
    Membership.objects.update_or_create(user=user, organization=organization, defaults={"role": Membership.OWNER})
    return user, organization, generated


class MemberRefused(Exception):
    """The named user cannot be added. One message for every reason (no such user, staff, a member
    elsewhere), so an owner cannot use the form to find out who has an account on the server."""

    def __init__(self) -> None:
        super().__init__("No user of that name can be added. The operator creates users (manage.py "
                         "create_owner); staff and users of another organization cannot be added.")


def membership_add(*, organization: Organization, username: str, role: str) -> Membership:
    """Add an existing user by name. Refused alike (MemberRefused): an unknown or inactive user, staff and
    superusers (the server's operators, never a tenant's member) and a user of another organization
    (an owner must not pull someone else's people, and their first organization is who they act as)."""
    with transaction.atomic():
        # The row lock: two owners adding the same person at once cannot both see them unattached.
        user = get_user_model().objects.select_for_update().filter(username=username.strip()).first()
        if user is None or not user.is_active or user.is_staff or user.is_superuser:
            raise MemberRefused
        memberships = set(Membership.objects.filter(user=user).values_list("organization_id", flat=True))
        if organization.pk in memberships:
            raise Conflict(f"{user.get_username()} is already a member of {organization.slug}")
        if memberships:
            raise MemberRefused
        try:
            with transaction.atomic():
                return Membership.objects.create(organization=organization, user=user, role=role)
        except IntegrityError as exc:
            raise Conflict(f"{user.get_username()} is already a member of {organization.slug}") from exc


def _other_owners(membership: Membership) -> bool:
    return (Membership.objects.select_for_update().filter(organization_id=membership.organization_id,
                                                          role=Membership.OWNER)
            .exclude(pk=membership.pk).exists())


@transaction.atomic
def membership_set_role(*, membership: Membership, role: str) -> Membership:
    """Change a member's role; the organization's last owner stays an owner. A person's keys act with
    their current role (ApiKey.role), so this demotes or promotes their keys too."""
    if membership.role == Membership.OWNER and role != Membership.OWNER and not _other_owners(membership):
        raise LastOwner("the organization needs at least one owner; make someone else an owner first")
    membership.role = role
    membership.save(update_fields=["role"])
    return membership


@transaction.atomic
def membership_remove(*, membership: Membership) -> None:
    """Remove a member and revoke the keys they created for this organization (a key acts for its
    creator, who no longer belongs here)."""
    if membership.role == Membership.OWNER and not _other_owners(membership):
        raise LastOwner("the organization needs at least one owner; make someone else an owner first")
    keys = ApiKey.objects.filter(organization_id=membership.organization_id, created_by_id=membership.user_id,
                                 revoked_at__isnull=True)
    for key in keys:
        api_key_revoke(api_key=key)
    membership.delete()


def api_key_revoke(*, api_key: ApiKey) -> ApiKey:
    """Revoke a key and every key it minted, their children included, in one transaction.

    Every revoke path (the API, the admin's action) comes here, so a minted key never outlives
    its parent and authentication needs no walk up the chain.
    """
    now = timezone.now()
    with transaction.atomic():
        revoked: list[ApiKey] = []
        generation = [api_key]
        seen = {api_key.pk}
        while generation:
            revoked.extend(generation)
            children = list(ApiKey.objects.filter(parent__in=generation).exclude(pk__in=seen))
            seen.update(child.pk for child in children)
            generation = children
        ApiKey.objects.filter(pk__in=seen, revoked_at__isnull=True).update(revoked_at=now)
    if api_key.revoked_at is None:
        api_key.revoked_at = now
    # This process stops accepting the keys at once (every transport shares registry.auth's one
    # principal cache); other processes within auth.KEY_CACHE_SECONDS.
    for key in revoked:
        auth.forget_key(key.hashed_key)
    return api_key


def block_grant_create(*, block: Block, organization: Organization) -> BlockGrant:
    try:
        with transaction.atomic():
            return BlockGrant.objects.create(block=block, organization=organization)
    except IntegrityError as exc:
        raise Conflict(f"block {block.block_id} is already shared with {organization.slug}") from exc


def block_grant_delete(*, grant: BlockGrant) -> None:
    grant.delete()


def org_model_register(*, organization: Organization, name: str, block: Block) -> OrgModel:
    try:
        with transaction.atomic():
            return OrgModel.objects.create(organization=organization, name=name, block=block)
    except IntegrityError as exc:
        raise Conflict(f"a model named {name!r} is already registered") from exc


def org_model_unregister(*, org_model: OrgModel) -> None:
    org_model.delete()


def policy_rule_create(*, organization: Organization, block: Block | None, values: dict[str, Any]) -> PolicyRule:
    try:
        with transaction.atomic():
            return PolicyRule.objects.create(organization=organization, block=block, **values)
    except IntegrityError as exc:
        target = f"block {block.block_id}" if block else "the organization"
        raise Conflict(f"a policy for {target} already exists; update it instead") from exc


def policy_rule_update(*, rule: PolicyRule, values: dict[str, Any]) -> PolicyRule:
    for name, value in values.items():
        setattr(rule, name, value)
    rule.save()
    return rule


def policy_rule_delete(*, rule: PolicyRule) -> None:
    rule.delete()


def quota_create(*, organization: Organization, api_key: ApiKey | None, values: dict[str, Any]) -> Quota:
    try:
        with transaction.atomic():
            return Quota.objects.create(organization=organization, api_key=api_key, **values)
    except IntegrityError as exc:
        target = f"key {api_key.pk}" if api_key else "the organization"
        raise Conflict(f"a quota for {target} already exists; update it instead") from exc


def quota_update(*, quota: Quota, values: dict[str, Any]) -> Quota:
    for name, value in values.items():
        setattr(quota, name, value)
    quota.save()
    return quota


def quota_delete(*, quota: Quota) -> None:
    quota.delete()
