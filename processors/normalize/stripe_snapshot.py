"""A Stripe object fetched from its API → a neutral snapshot update. Pure: bytes in, update out.

``ledgerhook sync`` and drift repairs store one object per delivery (origin ``sync``, event type
``snapshot.<kind>``, ``event_created`` = the second it was fetched; see :mod:`processors.sync`).
The object is the state as of that moment, so it is ordered like an event of that moment, with
the key events use (:mod:`processors.normalize.stripe`)::

    f"{moment:012d}.{rank:02d}.#sync"

- ``moment``: the fetch second, raised to the latest time the object itself records a change
  (``created``, ``canceled_at``, ``ended_at``, ``current_period_start``, ``voided_at``,
  ``status_transitions.*``): the object reflects those changes whatever our clock says.
- ``rank``: the lifecycle rank of the event that leaves an object in this state (a paid invoice
  ranks as ``invoice.paid``, a canceled subscription as ``customer.subscription.deleted``).
- ``#sync`` sorts before every event id (``evt_...``): at the same second and rank, the event
  wins.

So an event created in an earlier second than the snapshot is stale against it, an event of a
later second applies, and within the snapshot's second the lifecycle rank decides, ties going to
the event. Where this cannot be exact (README, Ordering and state): Stripe's ``created`` has
one-second resolution and Stripe objects carry no "updated at", so within the fetch second the
order is the lifecycle heuristic, not the truth; the fetch time is our clock, so a clock ahead of
Stripe's would make a newer event look older (:mod:`processors.sync` takes the earlier of our
clock and the response's ``Date``); a change that leaves no time on the object (a customer's
email) is placed at the fetch second only.
"""

from __future__ import annotations

import msgspec

from processors.errors import NormalisationError
from processors.model import (
    Body,
    CreditNote,
    Customer,
    Invoice,
    NeutralEvent,
    ObjectType,
    ObjectUpdate,
    Payment,
    Refund,
    Subscription,
)
from processors.normalize import stripe as events

__all__ = ["KINDS", "MARK", "normalize", "rank", "version"]

# Stripe object (the "object" field, and the kind in ``snapshot.<kind>``) -> neutral type.
KINDS: dict[str, ObjectType] = {
    "customer": "customer",
    "subscription": "subscription",
    "invoice": "invoice",
    "charge": "payment",
    "payment_intent": "payment",
    "refund": "refund",
    "credit_note": "credit_note",
}
MARK = "#sync"

_INVOICE_RANK = {"draft": 2, "open": 3, "paid": 5, "uncollectible": 6, "void": 6}


class _Transitions(msgspec.Struct):
    finalized_at: int | None = None
    paid_at: int | None = None
    voided_at: int | None = None
    marked_uncollectible_at: int | None = None


class _Moments(msgspec.Struct):
    """The times an object records for its own changes, and its kind."""

    object: str | None = None
    deleted: bool = False
    created: int | None = None
    canceled_at: int | None = None
    ended_at: int | None = None
    current_period_start: int | None = None
    voided_at: int | None = None
    status_transitions: _Transitions | None = None


_moments = msgspec.json.Decoder(_Moments)


def _latest(m: _Moments) -> int:
    t = m.status_transitions or _Transitions()
    times = (
        m.created,
        m.canceled_at,
        m.ended_at,
        m.current_period_start,
        m.voided_at,
        t.finalized_at,
        t.paid_at,
        t.voided_at,
        t.marked_uncollectible_at,
    )
    return max((x for x in times if x is not None), default=0)


def rank(kind: str, body: Body, deleted: bool) -> int:
    """The lifecycle rank of the event that would leave an object of ``kind`` in this state."""
    if deleted:
        return 9
    if isinstance(body, Customer):
        return 2
    if isinstance(body, Subscription):
        if body.status in ("canceled", "incomplete_expired"):
            return 9
        return 3 if body.status == "paused" else 2
    if isinstance(body, Invoice):
        return _INVOICE_RANK.get(body.status, 2)
    if isinstance(body, Payment):
        if kind == "charge":
            return 5 if body.amount_refunded > 0 else 1
        if body.status == "succeeded":
            return 4
        return 3 if body.failure_reason else 1
    if isinstance(body, Refund):
        return 3 if body.status == "failed" else 2
    assert isinstance(body, CreditNote)
    return 3 if body.status == "void" else 2


def version(fetched_at: int, latest_own_time: int, rank: int) -> str:
    """The snapshot's ordering key (see the module docstring)."""
    return f"{max(fetched_at, latest_own_time):012d}.{rank:02d}.{MARK}"


def normalize(
    kind: str, body: bytes, *, account: str, event_id: str, fetched_at: int
) -> NeutralEvent:
    object_type = KINDS.get(kind)
    if object_type is None:
        raise NormalisationError(f"snapshot of an unknown Stripe object kind {kind!r}")
    try:
        moments = _moments.decode(body)
        object_id, neutral, deleted = events._body(
            object_type, f"{kind}.snapshot", msgspec.Raw(body)
        )
    except (msgspec.ValidationError, msgspec.DecodeError) as exc:
        raise NormalisationError(f"snapshot.{kind}: unexpected object: {exc}") from None
    if moments.object not in (None, kind):
        raise NormalisationError(f"snapshot.{kind}: the object is a {moments.object!r}")
    deleted = deleted or moments.deleted
    update = ObjectUpdate(
        object_type=object_type,
        object_id=object_id,
        version=version(fetched_at, _latest(moments), rank(kind, neutral, deleted)),
        deleted=deleted,
        snapshot=True,
        # {"id", "object", "deleted": true}: all Stripe says of a deleted customer.
        tombstone=moments.deleted and moments.created is None,
        body=neutral,
    )
    return NeutralEvent(
        provider="stripe",
        account=account,
        event_id=event_id,
        event_type=f"snapshot.{kind}",
        created=fetched_at,
        updates=(update,),
    )
