"""The identity of a synced object, and the moment it was fetched. Pure.

A synced object is stored as a delivery whose event id makes a re-fetch of an unchanged object a
recorded duplicate (``audit.events`` is unique on provider, account, event id), never a second
state change:

- Chargebee: ``sync:<kind>:<id>:<resource_version>``. The version changes with every change, so
  an unchanged object has the same id, a changed one a new id.
- Stripe objects carry no version, so the id is ``sync:<digest>:<basis>``: ``digest`` hashes
  what the billing state holds of the object (the neutral snapshot: fields and ``deleted``), so
  a field Ledgerhook does not keep changing is not a new state either; ``basis`` is the event
  that last changed the stored state (a webhook or reconciliation event id), inherited through
  snapshots (a snapshot's own basis), or ``-`` when there is none. The basis is what keeps
  "unchanged" honest when an object changes and changes back (A → B → A): the second A comes
  after event B, so its basis differs and it applies; and it is what lets a drift repair
  through when the state went wrong without a snapshot in between.
"""

from __future__ import annotations

import hashlib
import re
from email.utils import parsedate_to_datetime

import msgspec

from processors.model import ObjectUpdate

__all__ = [
    "STRIPE_PREFIX",
    "basis_of",
    "chargebee_event_id",
    "fetch_second",
    "neutral_digest",
    "raw_digest",
    "stripe_event_id",
]

STRIPE_PREFIX = "sync:"
_DIGEST_HEX = 24
_STRIPE_ID = re.compile(rf"sync:[0-9a-f]{{{_DIGEST_HEX}}}:(.*)", re.DOTALL)
_encoder = msgspec.json.Encoder(order="sorted")


def neutral_digest(update: ObjectUpdate) -> str:
    """What the state would hold of this object (not its bytes, not its version)."""
    held = (update.object_type, update.object_id, update.deleted, update.body)
    return hashlib.sha256(_encoder.encode(held)).hexdigest()[:_DIGEST_HEX]


def raw_digest(body: bytes) -> str:
    """For an object the normaliser cannot read (it will be dead-lettered, visibly)."""
    return hashlib.sha256(body).hexdigest()[:_DIGEST_HEX]


def stripe_event_id(digest: str, basis: str | None) -> str:
    assert len(digest) == _DIGEST_HEX
    return f"{STRIPE_PREFIX}{digest}:{basis or '-'}"


def basis_of(event_id: str, origin: str) -> str:
    """The basis a new snapshot inherits from the delivery that last changed the state."""
    match = _STRIPE_ID.fullmatch(event_id) if origin == "sync" else None
    return (match.group(1) or "-") if match else event_id


def chargebee_event_id(kind: str, object_id: str, resource_version: int | None, body: bytes) -> str:
    version = str(resource_version) if resource_version is not None else raw_digest(body)
    return f"sync:{kind}:{object_id}:{version}"


def fetch_second(started_at: float, date_header: str | None) -> int:
    """The second a listing was read: our clock when the request left, or the response's
    ``Date`` (the provider's clock) if that is earlier, so a clock running ahead of the
    provider's cannot date a snapshot after events that followed it."""
    ours = int(started_at)
    if not date_header:
        return ours
    try:
        theirs = int(parsedate_to_datetime(date_header).timestamp())
    except (TypeError, ValueError):
        return ours
    return min(ours, theirs)
