"""Provider payload → neutral event, one pure module per provider.

``normalize(provider, body, account)`` returns None for an event type the billing model does not
use (recorded as ``ignored``) and raises :class:`processors.errors.NormalisationError` for a
payload of a mapped type it cannot read (dead letter).

Deliveries of origin ``sync`` carry one object fetched from the provider's API, not an event
(event type ``snapshot.<kind>``, ``event_created`` the fetch time): :func:`normalize_delivery`
reads those with the provider's snapshot module (``stripe_snapshot``, ``chargebee_snapshot``)
and everything else with :func:`normalize`.
"""

from __future__ import annotations

from processors.errors import NormalisationError
from processors.model import NeutralEvent
from processors.normalize import chargebee, chargebee_snapshot, stripe, stripe_snapshot

__all__ = ["SNAPSHOT_ORIGIN", "SNAPSHOT_PREFIX", "normalize", "normalize_delivery"]

SNAPSHOT_ORIGIN = "sync"
SNAPSHOT_PREFIX = "snapshot."


def normalize(provider: str, body: bytes, *, account: str) -> NeutralEvent | None:
    if provider == "stripe":
        return stripe.normalize(body, account=account)
    if provider == "chargebee":
        return chargebee.normalize(body, account=account)
    raise NormalisationError(f"unknown provider {provider!r}")


def normalize_delivery(
    provider: str,
    body: bytes,
    *,
    account: str,
    origin: str,
    event_id: str,
    event_type: str,
    event_created: int,
) -> NeutralEvent | None:
    """A stored delivery of any origin: an event, or (origin ``sync``) a fetched object."""
    if origin != SNAPSHOT_ORIGIN:
        return normalize(provider, body, account=account)
    if not event_type.startswith(SNAPSHOT_PREFIX):
        raise NormalisationError(f"a sync delivery must be a snapshot, not {event_type!r}")
    kind = event_type.removeprefix(SNAPSHOT_PREFIX)
    if provider == "stripe":
        return stripe_snapshot.normalize(
            kind, body, account=account, event_id=event_id, fetched_at=event_created
        )
    if provider == "chargebee":
        return chargebee_snapshot.normalize(
            kind, body, account=account, event_id=event_id, fetched_at=event_created
        )
    raise NormalisationError(f"unknown provider {provider!r}")
