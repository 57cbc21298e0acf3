"""The egress policy (registry/egress.py) at connect time, after DNS resolution.

The check runs on the addresses the connection then uses, so a name cannot resolve to a public
address when checked and to an internal one when connected (no time-of-check/time-of-use gap):
- aiohttp: `EgressResolver` wraps the default resolver and hands the connector only allowed addresses.
  aiohttp skips the resolver for a literal IP, so `check_literal` covers those before a request.
- gRPC: `resolve_target` resolves `host:port` here, checks, and the channel connects to the address.
A refusal raises before any byte is sent and becomes a 502 `egress_denied`.
"""

from __future__ import annotations

import asyncio
import ipaddress
import socket
from typing import Any

import aiohttp
from aiohttp.abc import AbstractResolver, ResolveResult
from aiohttp.resolver import DefaultResolver

from inference.backends.base import BackendError
from registry.egress import EgressDenied, IPAddress, address_allowed, check_addresses, host_opened, literal_ip


def egress_denied(exc: EgressDenied) -> BackendError:
    return BackendError(str(exc), status=502, code="egress_denied")


def denial_of(exc: BaseException) -> EgressDenied | None:
    """The EgressDenied behind an aiohttp connection error (aiohttp wraps resolver errors), if any."""
    while exc is not None:
        if isinstance(exc, EgressDenied):
            return exc
        exc = exc.__cause__ or getattr(exc, "os_error", None)
    return None


def check_literal(ip: IPAddress | None, *, internal_ok: bool) -> None:
    """For a URL whose host is an IP literal (aiohttp connects to it without asking a resolver);
    `ip` is registry.egress.literal_ip(host), None for a name."""
    if ip is not None and not internal_ok and not address_allowed(ip):
        raise EgressDenied(f"egress to {ip} is not allowed: only public addresses may be reached "
                           "unless the operator allows them (EGRESS_ALLOW)")


class EgressResolver(AbstractResolver):
    """aiohttp's default resolver, keeping only the addresses the egress policy allows."""

    def __init__(self, *, internal_ok: bool):
        self.internal_ok = internal_ok
        self._resolver = DefaultResolver()

    async def resolve(self, host: str, port: int = 0, family: socket.AddressFamily = socket.AF_INET
                      ) -> list[ResolveResult]:
        results = await self._resolver.resolve(host, port, family=family)
        if self.internal_ok or host_opened(host):
            return results
        by_ip = {ipaddress.ip_address(r["host"].split("%")[0]): r for r in results}
        allowed = check_addresses(host, list(by_ip), internal_ok=False)
        return [by_ip[ip] for ip in allowed]

    async def close(self) -> None:
        await self._resolver.close()


def connector(*, internal_ok: bool, **options: Any) -> aiohttp.TCPConnector:
    return aiohttp.TCPConnector(resolver=EgressResolver(internal_ok=internal_ok), **options)


def _pick(host: str, port: int, infos: list, *, internal_ok: bool) -> str:
    """A gRPC target naming one checked address (ipv4:a.b.c.d:port or ipv6:[..]:port)."""
    addresses = list(dict.fromkeys(ipaddress.ip_address(info[4][0].split("%")[0]) for info in infos))
    ip = check_addresses(host, addresses, internal_ok=internal_ok)[0]
    return f"ipv4:{ip}:{port}" if ip.version == 4 else f"ipv6:[{ip}]:{port}"


def _literal_target(host: str, port: int, *, internal_ok: bool) -> str | None:
    ip = literal_ip(host)
    if ip is None:
        return None
    check_literal(ip, internal_ok=internal_ok)
    return f"ipv4:{ip}:{port}" if ip.version == 4 else f"ipv6:[{ip}]:{port}"


async def resolve_target(host: str, port: int, *, internal_ok: bool) -> str:
    literal = _literal_target(host, port, internal_ok=internal_ok)
    if literal is not None:
        return literal
    try:
        infos = await asyncio.get_running_loop().getaddrinfo(host, port, type=socket.SOCK_STREAM)
    except OSError as exc:
        raise BackendError(f"gRPC upstream {host}:{port} could not be resolved: {exc}", status=502,
                           code="upstream_unreachable") from exc
    return _pick(host, port, infos, internal_ok=internal_ok)


def resolve_target_sync(host: str, port: int, *, internal_ok: bool) -> str:
    literal = _literal_target(host, port, internal_ok=internal_ok)
    if literal is not None:
        return literal
    try:
        infos = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM)
    except OSError as exc:
        raise BackendError(f"gRPC upstream {host}:{port} could not be resolved: {exc}", status=502,
                           code="upstream_unreachable") from exc
    return _pick(host, port, infos, internal_ok=internal_ok)
