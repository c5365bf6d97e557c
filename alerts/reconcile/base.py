"""What a provider's Events API listing yields: the event's identity and its exact JSON bytes."""

from __future__ import annotations

import msgspec

__all__ = ["ProviderEvent"]


class ProviderEvent(msgspec.Struct, frozen=True, kw_only=True):
    id: str
    type: str
    created: int
    object_id: str | None
    # The event object exactly as the API returned it (a slice of the response body).
    raw: bytes
    # Stripe only: listed by ``delivery_success=false`` (Stripe itself failed to deliver it).
    delivery_failed: bool | None = None
