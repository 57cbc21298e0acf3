"""Authentication shared by the REST API (DRF) and the gateway (plain ASGI consumers).

One function, `principal_for` (`aprincipal_for` from async code), turns a bearer key into a
Principal so the hot gateway path and DRF agree on the rules. There is one principal cache, in
this module: hashed key -> Principal (None for a key that does not exist), kept KEY_CACHE_SECONDS,
shared by every caller in the process (DRF, /v1, the WebSocket chat, resume/cancel). Expiry and
revocation are checked on the cached key at every use, so a revocation made in this process
(registry.tenancy.services.api_key_revoke, which calls `forget_key`) holds at once, and one made
by another process within KEY_CACHE_SECONDS. The async side loads a key once however many
requests wait for it, refreshes a key in use before it expires, and serves a warm key through a
database outage for DB_OUTAGE_GRACE_S (registry.ttlcache).
"""

from __future__ import annotations

import ipaddress
from collections.abc import Callable

from django.conf import settings
from django.utils import timezone
from rest_framework import authentication, exceptions, permissions

from registry.asyncdb import in_db_thread
from registry.models import ApiKey, Membership, Organization, hash_api_key
from registry.principal import Principal
from registry.ttlcache import AsyncTTLCache

KEY_CACHE_SECONDS = 2.0
LOCAL_ORG_SLUG = "local"
# The cache entry of dev open access (loopback callers without a key, in the embedded default).
_DEV_OPEN_ACCESS = "dev-open-access"

_principals: AsyncTTLCache[Principal | None] = AsyncTTLCache(ttl=KEY_CACHE_SECONDS,
                                                             refresh_after=KEY_CACHE_SECONDS / 2)


def clear_principal_cache() -> None:
    _principals.clear()


def forget_key(hashed_key: str) -> None:
    """Drop one key from this process's cache (revocation is then immediate here)."""
    _principals.discard(hashed_key)


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


def _key_principal(hashed: str) -> Principal | None:
    key = ApiKey.objects.select_related("organization").filter(hashed_key=hashed).first()
    return None if key is None else Principal(organization=key.organization, api_key=key)


_akey_principal = in_db_thread(_key_principal)


def local_organization() -> Organization:
    org, _ = Organization.objects.get_or_create(slug=LOCAL_ORG_SLUG, defaults={"name": "Local"})
    return org


class AuthError(Exception):
    def __init__(self, message: str, code: str = "invalid_api_key"):
        super().__init__(message)
        self.message = message
        self.code = code


def _dev_principal() -> Principal:
    return Principal(organization=local_organization(), dev_mode=True)


_adev_principal = in_db_thread(_dev_principal)


def _hashed_token(authorization: str) -> str:
    token = bearer_token(authorization)
    if token is None:
        raise AuthError("Authorization header must be 'Bearer <key>'")
    return hash_api_key(token)


def _usable(principal: Principal | None) -> Principal:
    if principal is None:
        raise AuthError("Incorrect API key provided")
    if principal.api_key is not None and not principal.api_key.is_usable(timezone.now()):
        raise AuthError("API key is expired or revoked")
    return principal


def _dev_open_access(client_host: str | None) -> bool:
    return settings.DEV_OPEN_ACCESS and is_loopback(client_host)


def _cached(key: str, load: Callable[[], Principal | None]) -> Principal | None:
    found, principal = _principals.peek(key)
    if not found:
        principal = load()
        _principals.put(key, principal)
    return principal


def principal_for(authorization: str | None, client_host: str | None) -> Principal | None:
    """The caller behind an Authorization header; None when there is no credential at all.

    Raises AuthError for a credential that is present but wrong, expired or revoked.
    For code on a thread (DRF views); async code awaits `aprincipal_for`.
    """
    if authorization:
        hashed = _hashed_token(authorization)
        return _usable(_cached(hashed, lambda: _key_principal(hashed)))
    if _dev_open_access(client_host):
        return _cached(_DEV_OPEN_ACCESS, _dev_principal)
    return None


async def aprincipal_for(authorization: str | None, client_host: str | None) -> Principal | None:
    """`principal_for` from async code: a warm key costs no thread hop."""
    if authorization:
        hashed = _hashed_token(authorization)
        return _usable(await _principals.get(hashed, lambda: _akey_principal(hashed)))
    if _dev_open_access(client_host):
        return await _principals.get(_DEV_OPEN_ACCESS, _adev_principal)
    return None


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
