"""Where a tenant-defined backend may connect: the egress policy (docs/security.md).

A tenant's backend config names a destination the server then connects to, so it is untrusted
input aimed at the server's own network. By default only public addresses may be reached;
loopback, private, link-local, multicast, unspecified and reserved addresses and the server's own
addresses are refused unless the operator opens them:

- `EGRESS_ALLOW` (setting): CIDRs and host names every backend may reach;
- `"internal": true` in a block's backend config (operator only): that block may reach any address
  (internal upstreams, such as the engines the GPU workers register).

This module is pure policy. It is applied twice: here at registration, to literal addresses (a 400),
and by inference.backends.egress at connect time, after DNS resolution, on the very addresses the
connection then uses (a 502 `egress_denied` before any byte is sent).
"""

from __future__ import annotations

import contextlib
import fcntl
import functools
import ipaddress
import re
import socket
import struct
from dataclasses import dataclass
from typing import Any
from urllib.parse import urlsplit

from django.conf import settings

IPAddress = ipaddress.IPv4Address | ipaddress.IPv6Address

# The gateway marks the requests it sends upstream with how many gateways they went through, and
# refuses one that went through more than settings.GATEWAY_MAX_HOPS (a block pointing at a gateway).
HOPS_HEADER = "X-Switchboard-Hops"

# Config keys only the operator may set: they open the server's network or pick a worker's queue.
INTERNAL_KEY = "internal"
QUEUE_KEY = "queue"

# Request headers a block's config may add. Everything else is refused: Host and the forwarding
# headers (X-Forwarded-*, Forwarded, X-Real-IP) would let a tenant speak for the gateway or reach
# another virtual host behind an allowed address; hop-by-hop headers (Connection, Transfer-Encoding,
# ...) would desynchronize the pooled connection; our own headers are the gateway's to set.
ALLOWED_HEADERS = frozenset({
    "authorization", "api-key", "x-api-key", "x-goog-api-key",
    "openai-organization", "openai-project", "openai-beta",
    "anthropic-version", "anthropic-beta",
    "http-referer", "x-title", "user-agent", "accept-language",
})
MAX_HEADERS = 20
MAX_HEADER_VALUE = 4096
_TOKEN = re.compile(r"^[!#$%&'*+.^_`|~0-9A-Za-z-]+$")
_FORBIDDEN_IN_VALUE = re.compile(r"[\x00-\x08\x0a-\x1f\x7f]")  # CR, LF, NUL and other controls; tab is fine
# A gRPC target as tenants may give it: host:port. gRPC's own schemes (unix:, ipv4:, dns:///) are
# refused, since they would choose the address (or a local socket) without our check.
_GRPC_TARGET = re.compile(r"^(?:\[(?P<v6>[0-9A-Fa-f:.]+)\]|(?P<host>[A-Za-z0-9_.-]+)):(?P<port>[0-9]{1,5})$")

SIOCGIFADDR = 0x8915


class EgressDenied(OSError):
    """A connection the egress policy refuses. An OSError so that HTTP clients treat it like a refused
    connection (nothing was sent); the backends turn it into a 502 `egress_denied`."""


class DestinationRefused(ValueError):
    """A backend config this caller may not store; the message names the config key."""


@dataclass(frozen=True, eq=False)  # one object per setting value (_parse_policy): hashed by identity
class Policy:
    networks: tuple[ipaddress.IPv4Network | ipaddress.IPv6Network, ...]
    hosts: frozenset[str]


@functools.lru_cache(maxsize=8)
def _parse_policy(entries: tuple[str, ...]) -> Policy:
    networks = []
    hosts = set()
    for entry in entries:
        entry = entry.strip()
        if not entry:
            continue
        try:
            networks.append(ipaddress.ip_network(entry, strict=False))
        except ValueError:
            hosts.add(entry.lower().rstrip("."))
    return Policy(networks=tuple(networks), hosts=frozenset(hosts))


def policy() -> Policy:
    """The operator's openings, read from settings each time (tests change them); parsing is cached."""
    allow = settings.EGRESS_ALLOW
    if isinstance(allow, str):
        allow = allow.split(",")
    return _parse_policy(tuple(allow))


@functools.cache
def own_addresses() -> frozenset[IPAddress]:
    """The server's own addresses, as far as they are cheaply knowable: every interface's address and
    what the host name resolves to. (Loopback and unspecified are refused on their own.)"""
    found: set[IPAddress] = set()
    with contextlib.suppress(OSError):
        for info in socket.getaddrinfo(socket.gethostname(), None):
            with contextlib.suppress(ValueError):
                found.add(ipaddress.ip_address(info[4][0].split("%")[0]))
    with contextlib.suppress(OSError), socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as sock:
        for _, name in socket.if_nameindex():
            with contextlib.suppress(OSError):
                packed = fcntl.ioctl(sock.fileno(), SIOCGIFADDR, struct.pack("256s", name.encode()[:15]))
                found.add(ipaddress.IPv4Address(packed[20:24]))
    with contextlib.suppress(OSError), open("/proc/net/if_inet6") as lines:
        for line in lines:
            with contextlib.suppress(ValueError, IndexError):
                found.add(ipaddress.IPv6Address(int(line.split()[0], 16)))
    return frozenset(found)


def _normalized(ip: IPAddress) -> IPAddress:
    # ::ffff:127.0.0.1 is 127.0.0.1 on the wire; Python 3.11 does not classify it as loopback.
    if isinstance(ip, ipaddress.IPv6Address) and ip.ipv4_mapped is not None:
        return ip.ipv4_mapped
    return ip


def address_allowed(ip: IPAddress, *, internal_ok: bool = False) -> bool:
    """Public addresses only, unless the operator opened this one (EGRESS_ALLOW) or the block is internal."""
    return internal_ok or _allowed(ip, policy())


@functools.lru_cache(maxsize=4096)
def _allowed(ip: IPAddress, policy: Policy) -> bool:
    # Cached: ipaddress's classification walks a dozen networks (~6 us); a literal-IP upstream asks per request.
    ip = _normalized(ip)
    if any(ip.version == net.version and ip in net for net in policy.networks):
        return True
    if (ip.is_loopback or ip.is_private or ip.is_link_local or ip.is_multicast or ip.is_unspecified
            or ip.is_reserved or not ip.is_global):
        return False
    return ip not in own_addresses()


def host_opened(host: str) -> bool:
    """A host name the operator opened in EGRESS_ALLOW: whatever it resolves to may be reached."""
    hosts = policy().hosts
    return bool(hosts) and host.lower().rstrip(".") in hosts


def literal_ip(host: str) -> IPAddress | None:
    """The address a host string names by itself, in any spelling a resolver would accept
    (127.0.0.1, [::1], and the legacy 127.1, 2130706433, 0x7f.1 that inet_aton reads); None for a name."""
    host = host.strip("[]")
    try:
        return ipaddress.ip_address(host)
    except ValueError:
        pass
    if host and all(c in "0123456789abcdefxABCDEFX." for c in host):
        try:
            return ipaddress.IPv4Address(socket.inet_aton(host))
        except OSError:
            return None
    return None


def check_addresses(host: str, addresses: list[IPAddress], *, internal_ok: bool) -> list[IPAddress]:
    """The addresses of `host` a connection may use; EgressDenied when none is allowed."""
    if internal_ok or host_opened(host):
        return addresses
    allowed = [ip for ip in addresses if address_allowed(ip)]
    if not allowed:
        shown = ", ".join(str(ip) for ip in addresses[:4]) or "no address"
        raise EgressDenied(f"egress to {host} ({shown}) is not allowed: only public addresses may be reached "
                           "unless the operator allows them (EGRESS_ALLOW)")
    return allowed


def parse_grpc_target(target: str) -> tuple[str, int]:
    """(host, port) of a gRPC target `host:port` or `[v6]:port`; ValueError otherwise."""
    match = _GRPC_TARGET.match(target) if isinstance(target, str) else None
    if match is None or not 0 < int(match["port"]) < 65536:
        raise ValueError('"target" must be "host:port" (no scheme)')
    return match["v6"] or match["host"], int(match["port"])


def check_headers(headers: Any) -> None:
    """Raise ValueError unless `headers` is a small {name: value} of allowed names and clean values."""
    if headers is None:
        return
    if not isinstance(headers, dict):
        raise ValueError("headers: must be an object of header names to string values")
    if len(headers) > MAX_HEADERS:
        raise ValueError(f"headers: at most {MAX_HEADERS}")
    for name, value in headers.items():
        if not isinstance(name, str) or not _TOKEN.match(name):
            raise ValueError(f"headers: {name!r} is not a valid header name")
        if name.lower() not in ALLOWED_HEADERS:
            raise ValueError(f"headers: {name!r} may not be set; allowed: {', '.join(sorted(ALLOWED_HEADERS))}")
        if not isinstance(value, str) or len(value) > MAX_HEADER_VALUE:
            raise ValueError(f"headers: {name!r} must be a string of at most {MAX_HEADER_VALUE} characters")
        if _FORBIDDEN_IN_VALUE.search(value):
            raise ValueError(f"headers: {name!r} contains a line break or control character")


def _check_literal(key: str, host: str, *, internal_ok: bool) -> None:
    ip = literal_ip(host)
    if ip is not None and not address_allowed(ip, internal_ok=internal_ok):
        raise DestinationRefused(f"backend.config.{key}: {ip} is not a public address; the server does not "
                                 "connect there unless the operator allows it")


def check_destination(*, backend_type: str, config: dict[str, Any], operator: bool) -> None:
    """Registration-time checks (registry.backend_rules): operator-only keys, a literal destination
    address the policy refuses, the header allowlist. A host *name* is checked when it is connected to."""
    internal = config.get(INTERNAL_KEY)
    if internal is not None and not isinstance(internal, bool):
        raise DestinationRefused(f"backend.config.{INTERNAL_KEY}: must be true or false")
    if internal and not operator:
        raise DestinationRefused(f"backend.config.{INTERNAL_KEY}: only the server's operator may let a block "
                                 "reach internal addresses")
    if config.get(QUEUE_KEY) and not operator:
        raise DestinationRefused(f"backend.config.{QUEUE_KEY}: queues are the operator's; leave it out and a "
                                 "queued block goes to the default queue for its kind")
    internal_ok = bool(internal)
    if backend_type == "openai":
        base_url = config.get("base_url")
        if base_url is not None:
            if not isinstance(base_url, str):
                raise DestinationRefused("backend.config.base_url: must be a string")
            try:
                parts = urlsplit(base_url)
                host = parts.hostname
                parts.port  # noqa: B018 - raises ValueError on a bad port
            except ValueError as exc:
                raise DestinationRefused(f"backend.config.base_url: {exc}") from exc
            if parts.scheme not in ("http", "https") or not host:
                raise DestinationRefused("backend.config.base_url: must be an http:// or https:// URL with a host")
            _check_literal("base_url", host, internal_ok=internal_ok)
        try:
            check_headers(config.get("headers"))
        except ValueError as exc:
            raise DestinationRefused(f"backend.config.{exc}") from exc
    elif backend_type in ("aios_grpc", "orgllm_grpc"):
        target = config.get("target")
        if target is not None:
            try:
                host, _ = parse_grpc_target(target)
            except ValueError as exc:
                raise DestinationRefused(f"backend.config.target: {exc}") from exc
            _check_literal("target", host, internal_ok=internal_ok)
