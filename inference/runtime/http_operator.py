"""`http_request`: {url, method?, headers?, body?} -> {status_code, headers, body}, from the server.

A tenant names the URL, so it goes through the egress policy exactly like an upstream backend
(inference/backends/egress.py: the resolver hands the connector only allowed addresses, a literal
address is checked before connecting) and is off for an organization until the operator opens it
(RUNTIME_HTTP_REQUEST and the organization's RuntimeAccess flag)."""

from __future__ import annotations

import re
from typing import Any
from urllib.parse import urlsplit

import aiohttp
from django.conf import settings

from inference.backends import egress
from inference.runtime import selectors
from inference.runtime.errors import VMFailure, bad_input
from registry.asyncdb import in_db_thread
from registry.egress import HOPS_HEADER, EgressDenied, literal_ip
from registry.principal import Principal

METHODS = ("GET", "HEAD", "POST", "PUT", "PATCH", "DELETE", "OPTIONS")
_TOKEN = re.compile(r"^[!#$%&'*+.^_`|~0-9A-Za-z-]+$")
_CONTROL = re.compile(r"[\x00-\x08\x0a-\x1f\x7f]")
# Headers the connection owns (hop-by-hop, framing), or that would speak for the server or for a proxy.
REFUSED_HEADERS = frozenset({"host", "content-length", "transfer-encoding", "connection", "keep-alive", "upgrade",
                             "te", "trailer", "proxy-authorization", "proxy-connection", "forwarded", "x-real-ip",
                             HOPS_HEADER.lower()})
MAX_HEADERS = 50


def _headers(value: Any) -> dict[str, str]:
    if value is None:
        return {}
    if not isinstance(value, dict) or len(value) > MAX_HEADERS:
        raise bad_input(f"'headers' must be an object of at most {MAX_HEADERS} names to strings.", "headers")
    for name, text in value.items():
        lowered = name.lower() if isinstance(name, str) else ""
        if not _TOKEN.match(lowered) or lowered in REFUSED_HEADERS or lowered.startswith("x-forwarded-"):
            raise bad_input(f"The header {name!r} may not be set.", "headers", rule=True)
        if not isinstance(text, str) or len(text) > 8192 or _CONTROL.search(text):
            raise bad_input(f"The header {name!r} must be a string without line breaks.", "headers", rule=True)
    return value


def _text(raw: bytes, charset: str | None) -> str:
    """The body as text in the charset the answer names; the remote names it, so a charset Python does not
    know (`charset=bogus`, LookupError), or a codec that is no text encoding or refuses errors="replace"
    (`idna`, UnicodeError), is read as UTF-8 instead."""
    try:
        return raw.decode(charset or "utf-8", errors="replace")
    except (LookupError, UnicodeError):
        return raw.decode("utf-8", errors="replace")


@in_db_thread
def _opened(principal: Principal) -> bool:
    return selectors.http_request_opened(organization=principal.organization)


async def http_request(principal: Principal, inputs: dict[str, Any]) -> dict[str, Any]:
    if not settings.RUNTIME_HTTP_REQUEST or not await _opened(principal):
        raise VMFailure(403, "The http_request operator is off for this organization; the server's operator "
                             "turns it on (docs/runtime.md).", code="operator_disabled")
    url = inputs.get("url")
    method = inputs.get("method", "GET")
    body = inputs.get("body")
    if not isinstance(url, str):
        raise bad_input("'url' must be a string.", "url", "invalid_type")
    try:
        parts = urlsplit(url)
        parts.port  # noqa: B018 - raises ValueError on a bad port
    except ValueError as exc:
        raise bad_input(f"'url': {exc}.", "url", rule=True) from None
    if parts.scheme not in ("http", "https") or not parts.hostname:
        raise bad_input("'url' must be an http:// or https:// URL with a host.", "url", rule=True)
    if not isinstance(method, str) or method.upper() not in METHODS:
        raise bad_input(f"'method' must be one of {', '.join(METHODS)}.", "method")
    if body is not None and not isinstance(body, str):
        raise bad_input("'body' must be a string.", "body", "invalid_type")
    headers = _headers(inputs.get("headers"))
    try:
        egress.check_literal(literal_ip(parts.hostname), internal_ok=False)
        timeout = aiohttp.ClientTimeout(total=settings.RUNTIME_HTTP_TIMEOUT_S)
        async with aiohttp.ClientSession(connector=egress.connector(internal_ok=False), timeout=timeout) as session:
            async with session.request(method.upper(), url, headers=headers, data=body, allow_redirects=False) as resp:
                raw = await resp.content.read(settings.RUNTIME_HTTP_MAX_BYTES + 1)
                if len(raw) > settings.RUNTIME_HTTP_MAX_BYTES:
                    raise VMFailure(502, f"The answer is larger than {settings.RUNTIME_HTTP_MAX_BYTES} bytes.",
                                    code="response_too_large")
                # str(): aiohttp's header names are `istr`, which JSON encoders do not take as keys.
                return {"status_code": resp.status, "headers": {str(k): v for k, v in resp.headers.items()},
                        "body": _text(raw, resp.charset)}
    except EgressDenied as exc:
        raise VMFailure(502, str(exc), code="egress_denied") from None
    except TimeoutError:
        raise VMFailure(504, f"{url} did not answer within {settings.RUNTIME_HTTP_TIMEOUT_S} s.",
                        code="upstream_timeout") from None
    except aiohttp.ClientError as exc:
        denied = egress.denial_of(exc)
        if denied is not None:
            raise VMFailure(502, str(denied), code="egress_denied") from None
        raise VMFailure(502, f"cannot reach {url}: {exc}", code="upstream_unreachable") from None
