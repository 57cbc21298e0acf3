"""Authentication shared by the REST API (DRF) and the gateway (plain ASGI consumers).

One function, `principal_for`, turns a bearer key into a Principal so the hot gateway
path and DRF agree on the rules. Key lookups are cached for a few seconds: a revoked key
stops working within KEY_CACHE_SECONDS, and the gateway skips a database round trip.
"""

from __future__ import annotations

import ipaddress
import time
from collections.abc import Callable

from asgiref.sync import sync_to_async
from django.conf import settings
from django.utils import timezone
from rest_framework import authentication, exceptions, permissions

from registry.models import ApiKey, Membership, Organization, hash_api_key
from registry.principal import Principal

KEY_CACHE_SECONDS = 2.0
LOCAL_ORG_SLUG = "local"

_key_cache: dict[str, tuple[float, ApiKey | None]] = {}


def clear_key_cache() -> None:
    _key_cache.clear()


def forget_key(hashed_key: str) -> None:
    """Drop one key from this process's cache (revocation is then immediate here)."""
    _key_cache.pop(hashed_key, None)


# Caches of principals kept by the layers above (the gateway's), registered when their module
# loads: a revocation clears them without this layer importing them.
_revocation_hooks: list[Callable[[], None]] = []


def on_keys_revoked(hook: Callable[[], None]) -> Callable[[], None]:
    """Call `hook` in this process whenever keys are revoked."""
    if hook not in _revocation_hooks:
        _revocation_hooks.append(hook)
    return hook


def keys_revoked() -> None:
    for hook in _revocation_hooks:
        hook()


def is_loopback(host: str | None) -> bool:
    if not host:
        return False
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def bearer_token(header: str | None) -> str | None:
    if not header:
        return None
    scheme, _, token = header.partition(" ")
    if scheme.lower() != "bearer" or not token.strip():
        return None
    return token.strip()


def _lookup_key(raw: str) -> ApiKey | None:
    hashed = hash_api_key(raw)
    hit = _key_cache.get(hashed)
    now = time.monotonic()
    if hit and now - hit[0] < KEY_CACHE_SECONDS:
        return hit[1]
    key = ApiKey.objects.select_related("organization").filter(hashed_key=hashed).first()
    _key_cache[hashed] = (now, key)
    return key


def local_organization() -> Organization:
    org, _ = Organization.objects.get_or_create(slug=LOCAL_ORG_SLUG, defaults={"name": "Local"})
    return org


class AuthError(Exception):
    def __init__(self, message: str, code: str = "invalid_api_key"):
        super().__init__(message)
        self.message = message
        self.code = code


def principal_for(authorization: str | None, client_host: str | None) -> Principal | None:
    """The caller behind an Authorization header; None when there is no credential at all.

    Raises AuthError for a credential that is present but wrong, expired or revoked.
    """
    if authorization:
        token = bearer_token(authorization)
        if token is None:
            raise AuthError("Authorization header must be 'Bearer <key>'")
        key = _lookup_key(token)
        if key is None:
            raise AuthError("Incorrect API key provided")
        if not key.is_usable(timezone.now()):
            raise AuthError("API key is expired or revoked")
        return Principal(organization=key.organization, api_key=key)
    if settings.DEV_OPEN_ACCESS and is_loopback(client_host):
        return Principal(organization=local_organization(), dev_mode=True)
    return None


aprincipal_for = sync_to_async(principal_for, thread_sensitive=False)


def principal_for_user(user) -> Principal | None:
    membership = (
        Membership.objects.select_related("organization").filter(user=user).order_by("id").first()
    )
    if membership is None:
        return None
    return Principal(organization=membership.organization, user=user)


class ApiKeyAuthentication(authentication.BaseAuthentication):
    def authenticate(self, request):
        try:
            principal = principal_for(
                request.META.get("HTTP_AUTHORIZATION"), request.META.get("REMOTE_ADDR")
            )
        except AuthError as exc:
            raise exceptions.AuthenticationFailed(exc.message) from exc
        if principal is None:
            return None
        return (principal, principal.api_key)

    def authenticate_header(self, request) -> str:
        return 'Bearer realm="switchboard"'


class SessionAuthentication(authentication.SessionAuthentication):
    """Dashboard users act for their first organization."""

    def authenticate(self, request):
        result = super().authenticate(request)
        if result is None:
            return None
        principal = principal_for_user(result[0])
        if principal is None:
            raise exceptions.PermissionDenied("Your user belongs to no organization")
        return (principal, None)


class HasOrganization(permissions.BasePermission):
    def has_permission(self, request, view) -> bool:
        return isinstance(request.user, Principal)
