"""Who the dashboard's user acts as: their first organization (as the REST API's session
authentication has it) and their role there. Every dashboard view starts here, so tenancy and the
owner-only rule have one definition on the page side, enforced on the server."""

from __future__ import annotations

from django.contrib.auth.base_user import AbstractBaseUser
from django.core.exceptions import PermissionDenied
from django.http import HttpRequest

from registry.auth import principal_for_user
from registry.models import Membership, Organization
from registry.principal import Principal
from registry.roles import caller_role

_CACHE_ATTR = "_dashboard_principal"


def _person(request: HttpRequest) -> AbstractBaseUser | None:
    """The logged-in person. Not a Principal: DRF puts one on request.user for an API key, and pages it
    renders (/api/docs/) run the context processor below too."""
    user = getattr(request, "user", None)
    return user if isinstance(user, AbstractBaseUser) and user.is_authenticated else None


def dashboard_principal(request: HttpRequest) -> Principal | None:
    """The user's principal (None for a user in no organization), looked up once per request."""
    if _person(request) is None:
        return None
    if not hasattr(request, _CACHE_ATTR):
        setattr(request, _CACHE_ATTR, principal_for_user(request.user))
    return getattr(request, _CACHE_ATTR)


def dashboard_org(request: HttpRequest) -> Organization | None:
    principal = dashboard_principal(request)
    return principal.organization if principal else None


def dashboard_role(request: HttpRequest) -> str | None:
    principal = dashboard_principal(request)
    return caller_role(principal) if principal else None


def require_member(request: HttpRequest) -> Principal:
    """The principal, or 403 for a user in no organization (there is nothing of theirs to show)."""
    principal = dashboard_principal(request)
    if principal is None:
        raise PermissionDenied("Your user belongs to no organization.")
    return principal


def require_owner(request: HttpRequest, action: str) -> Principal:
    principal = require_member(request)
    if caller_role(principal) != Membership.OWNER:
        raise PermissionDenied(f"Only organization owners may {action}.")
    return principal


def dashboard_context(request: HttpRequest) -> dict:
    """Template context for every page: the organization and role the nav and pages show."""
    if _person(request) is None:
        return {}
    role = dashboard_role(request)
    return {"org": dashboard_org(request), "role": role, "is_owner": role == Membership.OWNER}
