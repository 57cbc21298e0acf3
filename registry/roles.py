"""Who may do what: an organization's owner, a member, and the operator who runs the server.

The operator is trusted; tenants are not (docs/security.md). The operator is anyone acting as an
owner of the platform organization (settings.SWITCHBOARD_PLATFORM_ORG, which holds the built-in
model), or a Django superuser in person (a dashboard or admin session, never through an API key). Only the operator may write the
platform organization's blocks, run code or load model files on the server, choose queues, or let a
block reach internal addresses.
"""

from __future__ import annotations

from django.conf import settings
from rest_framework.exceptions import PermissionDenied

from registry.models import Membership, Organization
from registry.principal import Principal


def role_of(*, user, organization: Organization) -> str | None:
    if user is None or getattr(user, "pk", None) is None:
        return None
    return Membership.objects.filter(user=user, organization=organization).values_list("role", flat=True).first()


def caller_role(principal: Principal) -> str | None:
    if principal.dev_mode:
        return Membership.OWNER  # localhost-only embedded default: the machine's owner
    user = principal.user
    if user is None and principal.api_key is not None:
        if principal.api_key.created_by_id is None:
            return principal.api_key.role or Membership.MEMBER
        user = principal.api_key.created_by
    return role_of(user=user, organization=principal.organization)


def is_platform_org(organization: Organization | None) -> bool:
    return organization is not None and organization.slug == settings.SWITCHBOARD_PLATFORM_ORG


def is_operator(principal: Principal) -> bool:
    # A superuser is the operator only in person (a dashboard or admin session). API keys travel: a
    # key a superuser made for a tenant organization (the admin records them as its creator) must not
    # carry the operator's powers into that tenant's hands, so a key is the operator's only in the
    # platform organization, with the owner role.
    if principal.api_key is None and getattr(principal.user, "is_superuser", False):
        return True
    return is_platform_org(principal.organization) and caller_role(principal) == Membership.OWNER


def require_owner(principal: Principal, action: str) -> None:
    if caller_role(principal) != Membership.OWNER:
        raise PermissionDenied(f"Only organization owners may {action}.")


def require_operator(principal: Principal, action: str) -> None:
    if not is_operator(principal):
        raise PermissionDenied(f"Only the server's operator may {action}.")
