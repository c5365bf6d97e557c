"""Who is really calling: the client address behind trusted reverse proxies. Pure, no I/O.

The TCP peer is the client unless it is a trusted proxy (``LEDGERHOOK_API__TRUSTED_PROXIES``).
Only then is the forwarding header read (``X-Forwarded-For``, or RFC 7239 ``Forwarded`` with
``LEDGERHOOK_API__PROXY_HEADER=forwarded``; never both: a proxy that writes one passes the other
through from the client untouched, so honouring both would let any client pick its address).

The header is walked right to left, because each proxy appends the address it saw: the rightmost
entry was written by our peer, and everything left of the first untrusted address was written by
someone we cannot vouch for. Trusted hops are skipped; the first untrusted address is the client.
An entry that is not an address (``unknown``, an obfuscated ``_name``, garbage) stops the walk at
the nearest trusted hop, which is then the answer: nothing a client writes can move it anywhere
else. With no trusted proxies configured, the peer is returned without looking at any header.

Addresses come back normalised (``str(ipaddress.ip_address(...))``, IPv4-mapped IPv6 as IPv4). A
peer that is not an IP (a test client's ``"testclient"``) is returned as it is, and never trusted.

Used by the API guard and the brute-force brake (``audit.auth``, ``audit.brake``), by ingest for a
delivery's ``source_address``, and meant for the console's sign-in.
"""

from __future__ import annotations

import functools
import ipaddress
from collections.abc import Iterable, Mapping, Sequence
from typing import Any, Literal

__all__ = [
    "IPAddress",
    "Network",
    "ProxyHeader",
    "client_address",
    "parse_networks",
    "parse_node",
    "scope_address",
]

IPAddress = ipaddress.IPv4Address | ipaddress.IPv6Address
Network = ipaddress.IPv4Network | ipaddress.IPv6Network
ProxyHeader = Literal["x-forwarded-for", "forwarded"]


def parse_networks(entries: Iterable[str]) -> tuple[Network, ...]:
    """``"10.0.0.7"`` and ``"10.244.0.0/16"`` style entries; raises ValueError naming a bad one
    (a network with host bits set, such as ``10.244.1.0/16``, is refused as a likely typo)."""
    out: list[Network] = []
    for entry in entries:
        text = entry.strip()
        if not text:
            continue
        try:
            out.append(ipaddress.ip_network(text))
        except ValueError:
            raise ValueError(f"{text!r} is not an IP address or a CIDR network") from None
    return tuple(out)


def _ip(text: str) -> IPAddress | None:
    try:
        ip = ipaddress.ip_address(text)
    except ValueError:
        return None
    if isinstance(ip, ipaddress.IPv6Address) and ip.ipv4_mapped is not None:
        return ip.ipv4_mapped
    return ip


def parse_node(text: str) -> IPAddress | None:
    """One hop: ``1.2.3.4``, ``1.2.3.4:80``, ``2001:db8::1``, ``[2001:db8::1]:443``; else None."""
    node = text.strip()
    if node.startswith("["):
        end = node.find("]")
        rest = node[end + 1 :]
        if end < 0 or (rest and not (rest.startswith(":") and rest[1:].isdigit())):
            return None
        ip = _ip(node[1:end])
        return ip if isinstance(ip, ipaddress.IPv6Address) else None
    ip = _ip(node)
    if ip is not None or node.count(":") != 1:
        return ip
    host, _, port = node.partition(":")
    return _ip(host) if port.isdigit() else None


def _split_quoted(text: str, sep: str) -> list[str]:
    """``text`` split on ``sep`` outside double-quoted strings (backslash escapes inside)."""
    parts: list[str] = []
    current: list[str] = []
    quoted = escaped = False
    for ch in text:
        if escaped:
            escaped = False
        elif quoted and ch == "\\":
            escaped = True
        elif ch == '"':
            quoted = not quoted
        elif ch == sep and not quoted:
            parts.append("".join(current))
            current = []
            continue
        current.append(ch)
    parts.append("".join(current))
    return parts


def _unquote(value: str) -> str | None:
    if not value.startswith('"'):
        return value
    if len(value) < 2 or not value.endswith('"'):
        return None
    out: list[str] = []
    escaped = False
    for ch in value[1:-1]:
        if escaped or ch != "\\":
            out.append(ch)
            escaped = False
        else:
            escaped = True
    return None if escaped else "".join(out)


def _forwarded_for(element: str) -> IPAddress | None:
    """The ``for=`` node of one RFC 7239 element (``for=1.2.3.4;proto=https``), or None."""
    for pair in _split_quoted(element, ";"):
        name, eq, value = pair.strip().partition("=")
        if eq and name.strip().lower() == "for":
            node = _unquote(value.strip())
            return None if node is None else parse_node(node)
    return None


def _hops(headers: Iterable[tuple[bytes, bytes]], header: ProxyHeader) -> list[IPAddress | None]:
    """Every hop the header lists, left to right (repeated header lines joined in order)."""
    wanted = header.encode()
    hops: list[IPAddress | None] = []
    for name, raw in headers:
        if name.lower() != wanted:
            continue
        value = raw.decode("latin-1")
        if header == "forwarded":
            hops.extend(_forwarded_for(e) for e in _split_quoted(value, ","))
        else:
            hops.extend(parse_node(e) for e in value.split(","))
    return hops


def _trusted(ip: IPAddress, trusted: Sequence[Network]) -> bool:
    return any(ip.version == net.version and ip in net for net in trusted)


def client_address(
    peer: str | None,
    headers: Iterable[tuple[bytes, bytes]],
    trusted: Sequence[Network],
    header: ProxyHeader = "x-forwarded-for",
) -> str | None:
    """The client's address: ``peer`` itself unless it is a trusted proxy (see module doc)."""
    if peer is None:
        return None
    ip = _ip(peer)
    if ip is None:
        return peer
    if not trusted or not _trusted(ip, trusted):
        return str(ip)
    for hop in reversed(_hops(headers, header)):
        if hop is None:
            break
        ip = hop
        if not _trusted(ip, trusted):
            break
    return str(ip)


@functools.lru_cache(maxsize=16)
def _networks(entries: tuple[str, ...]) -> tuple[Network, ...]:
    return parse_networks(entries)


def scope_address(
    scope: Mapping[str, Any], trusted: tuple[str, ...], header: ProxyHeader = "x-forwarded-for"
) -> str | None:
    """:func:`client_address` of an ASGI scope, for ``settings.api.trusted_proxies`` entries."""
    client = scope.get("client")
    peer = client[0] if client else None
    return client_address(peer, scope.get("headers", ()), _networks(trusted), header)
