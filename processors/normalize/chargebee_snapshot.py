"""A Chargebee resource fetched from its API → a neutral snapshot update. Pure.

``ledgerhook sync`` and drift repairs store one resource per delivery (origin ``sync``, event
type ``snapshot.<kind>``, the body the resource object itself, not its list entry). Chargebee
gives every resource a ``resource_version`` (milliseconds) and documents it as the ordering key;
events carry the same field on every resource in their ``content``. So a snapshot's version is
the event's (``resource_version`` zero-padded to 16 digits) and ordering against events is exact:
an event whose resource is older is stale, the same version is the same state (``unchanged``),
a newer one applies. Deleted resources (listed with ``include_deleted``) carry ``deleted: true``
and all their fields.
"""

from __future__ import annotations

import msgspec

from processors.errors import NormalisationError
from processors.model import NeutralEvent, ObjectType, ObjectUpdate
from processors.normalize import chargebee as events

__all__ = ["KINDS", "normalize"]

# Chargebee resource (the kind in ``snapshot.<kind>``) -> neutral type; a transaction is a
# payment or a refund depending on its own ``type``.
KINDS: dict[str, tuple[ObjectType, ...]] = {
    "customer": ("customer",),
    "subscription": ("subscription",),
    "invoice": ("invoice",),
    "transaction": ("payment", "refund"),
    "credit_note": ("credit_note",),
}


def normalize(
    kind: str, body: bytes, *, account: str, event_id: str, fetched_at: int
) -> NeutralEvent:
    if kind not in KINDS:
        raise NormalisationError(f"snapshot of an unknown Chargebee resource {kind!r}")
    try:
        found = events._resource(kind, msgspec.Raw(body))
    except (msgspec.ValidationError, msgspec.DecodeError) as exc:
        raise NormalisationError(f"snapshot.{kind}: unexpected resource: {exc}") from None
    except NormalisationError as exc:
        raise NormalisationError(f"snapshot.{kind}: {exc}") from None
    assert found is not None  # every kind in KINDS is one _resource knows
    object_type, object_id, resource_version, deleted, neutral = found
    update = ObjectUpdate(
        object_type=object_type,
        object_id=object_id,
        version=f"{resource_version:016d}",
        deleted=deleted,
        snapshot=True,
        body=neutral,
    )
    return NeutralEvent(
        provider="chargebee",
        account=account,
        event_id=event_id,
        event_type=f"snapshot.{kind}",
        created=fetched_at,
        updates=(update,),
    )
