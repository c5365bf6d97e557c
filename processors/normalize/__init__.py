"""Provider payload → neutral event, one pure module per provider.

``normalize(provider, body, account)`` returns None for an event type the billing model does not
use (recorded as ``ignored``) and raises :class:`processors.errors.NormalisationError` for a
payload of a mapped type it cannot read (dead letter).
"""

from __future__ import annotations

from processors.errors import NormalisationError
from processors.model import NeutralEvent
from processors.normalize import chargebee, stripe

__all__ = ["normalize"]


def normalize(provider: str, body: bytes, *, account: str) -> NeutralEvent | None:
    if provider == "stripe":
        return stripe.normalize(body, account=account)
    if provider == "chargebee":
        return chargebee.normalize(body, account=account)
    raise NormalisationError(f"unknown provider {provider!r}")
