"""What a provider's Events API listing yields: the event's identity and its exact JSON bytes."""

from __future__ import annotations

from urllib.parse import urlsplit, urlunsplit

import msgspec

__all__ = ["ProviderEvent", "public_url"]


def public_url(url: str) -> str:
    """``url`` fit for a message, an alert or a log: no user info (a key could be there), no query."""
    parts = urlsplit(url)
    host = parts.hostname or ""
    if parts.port is not None:
        host = f"{host}:{parts.port}"
    return urlunsplit((parts.scheme, host, parts.path, "", ""))


class ProviderEvent(msgspec.Struct, frozen=True, kw_only=True):
    id: str
    type: str
    created: int
    object_id: str | None
    # The event object exactly as the API returned it (a slice of the response body).
    raw: bytes
    # Stripe only: listed by ``delivery_success=false`` (Stripe itself failed to deliver it).
    delivery_failed: bool | None = None
