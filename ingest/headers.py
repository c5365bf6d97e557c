"""Request headers as stored: received order, original values, credentials redacted.

Headers are kept as JSON text ``[[name, value], ...]`` so the audit row shows exactly what arrived
(``Stripe-Signature`` included: it is not a credential and re-verifying needs it). Values of
headers that carry credentials (HTTP Basic for Chargebee, cookies, API keys, tokens) are replaced
by ``"[redacted]"`` before anything is stored, logged or recorded as a rejection.
"""

from __future__ import annotations

import functools
from collections.abc import Iterable

import msgspec

__all__ = [
    "PEER_HEADER",
    "REDACTED",
    "bounded_headers",
    "header_map",
    "headers_json",
    "is_credential",
    "peer_header",
]

REDACTED = "[redacted]"
_CREDENTIAL_NAMES = frozenset(
    {
        "authorization",
        "proxy-authorization",
        "cookie",
        "set-cookie",
        "x-api-key",
        "api-key",
        "x-auth-token",
        "x-csrf-token",
        "x-xsrf-token",
    }
)
_CREDENTIAL_PARTS = ("token", "secret", "password", "api-key", "apikey", "session")
_encoder = msgspec.json.Encoder()


def is_credential(name: str) -> bool:
    lower = name.lower()
    return lower in _CREDENTIAL_NAMES or any(part in lower for part in _CREDENTIAL_PARTS)


# The same dozen header names arrive on every request; their verdict is cached (bounded: names
# are client input).
_credential_name = functools.lru_cache(maxsize=1024)(is_credential)


def headers_json(raw: Iterable[tuple[bytes, bytes]]) -> str:
    """The JSON text stored in ``headers`` (ASGI headers are bytes; latin-1 maps them 1:1)."""
    pairs = []
    for name, value in raw:
        n = name.decode("latin-1")
        pairs.append((n, REDACTED if _credential_name(n) else value.decode("latin-1")))
    return _encoder.encode(pairs).decode()


def bounded_headers(raw: list[tuple[bytes, bytes]], max_bytes: int) -> list[tuple[bytes, bytes]]:
    """The first headers of an oversized set, values cut, within ``max_bytes`` in all, plus one
    marker saying how much was dropped: what a rejection record keeps of a header flood."""
    out: list[tuple[bytes, bytes]] = []
    budget = max_bytes
    for name, value in raw:
        cost = len(name) + min(len(value), 256)
        if cost > budget:
            break
        out.append((name[:256], value[:256]))
        budget -= cost
    dropped = sum(len(n) + len(v) for n, v in raw) - sum(len(n) + len(v) for n, v in out)
    out.append(
        (b"x-ledgerhook-truncated", f"{len(raw) - len(out) + 1} headers, {dropped} bytes".encode())
    )
    return out


PEER_HEADER = b"x-ledgerhook-peer"


def peer_header(peer: str | None) -> tuple[bytes, bytes]:
    """The TCP peer (a proxy) as a stored header, appended when the recorded source address is
    the client behind it: the audit row keeps both."""
    return (PEER_HEADER, (peer or "").encode("latin-1", "replace"))


def header_map(raw: Iterable[tuple[bytes, bytes]]) -> dict[str, str]:
    """Lower-cased name -> first value, for the verifiers (a repeated header counts once)."""
    out: dict[str, str] = {}
    for name, value in raw:
        out.setdefault(name.decode("latin-1").lower(), value.decode("latin-1"))
    return out
