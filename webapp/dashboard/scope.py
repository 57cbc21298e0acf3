"""Whose dashboard this is: the signed-in user's organization and role there. Every page of
metrics_views, request_log_views, approvals_views and workflow_views reads through these."""

from __future__ import annotations

from django.http import Http404, HttpRequest

from registry.auth import principal_for_user
from registry.models import Membership, Organization
from registry.principal import Principal
from registry.roles import caller_role


def principal_of(request: HttpRequest) -> Principal | None:
    return principal_for_user(request.user)


def organization_or_404(request: HttpRequest) -> Organization:
    """A user with no organization has nothing to see on these pages."""
    principal = principal_of(request)
    if principal is None:
        raise Http404("You belong to no organization.")
    return principal.organization


def is_owner(request: HttpRequest) -> bool:
    principal = principal_of(request)
    return principal is not None and caller_role(principal) == Membership.OWNER
