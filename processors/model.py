"""The provider-neutral billing model: what a normalised event says, and what state looks like.

A normaliser turns one provider event into a :class:`NeutralEvent`: one or more
:class:`ObjectUpdate` values, each a *full snapshot* of one object at one version. Snapshots (not
deltas) are what make the fold order-independent: the state of an object is the snapshot with the
highest version, whatever order the events arrive in (:mod:`processors.transitions`).

Money is integer minor units with an upper-case ISO currency code, never floats. Times are unix
seconds. Field names are part of the stored JSON (``data`` columns): add fields, never rename.
"""

from __future__ import annotations

from typing import Literal

import msgspec

__all__ = [
    "OBJECT_TYPES",
    "Anomaly",
    "Body",
    "CreditNote",
    "Customer",
    "Discount",
    "Invoice",
    "NeutralEvent",
    "ObjectType",
    "ObjectUpdate",
    "Payment",
    "Refund",
    "StoredObject",
    "Subscription",
    "SubscriptionItem",
]

ObjectType = Literal["customer", "subscription", "invoice", "payment", "refund", "credit_note"]
OBJECT_TYPES: tuple[ObjectType, ...] = (
    "customer",
    "subscription",
    "invoice",
    "payment",
    "refund",
    "credit_note",
)


class Customer(msgspec.Struct, frozen=True, kw_only=True, tag="customer"):
    email: str | None = None
    name: str | None = None
    currency: str | None = None
    created_at: int | None = None
    # The provider's free-form metadata (Stripe ``metadata``, Chargebee ``meta_data``), values as
    # text: migration tooling tags migrated objects here (``processors.coexist`` links on it).
    metadata: dict[str, str] = {}


class SubscriptionItem(msgspec.Struct, frozen=True, kw_only=True):
    price_id: str
    product_id: str | None = None
    quantity: int = 1
    # Per unit, per billing interval, minor units. Metered and tiered prices carry 0.
    unit_amount: int = 0
    interval: Literal["day", "week", "month", "year"] = "month"
    interval_count: int = 1


class Discount(msgspec.Struct, frozen=True, kw_only=True):
    """A coupon or discount applied to a subscription. Neither value is known for a bare
    reference (a Stripe discount id not expanded, a Chargebee ``coupons`` entry)."""

    id: str
    # Hundredths of a percent (12.5 % is 1250): exact, never a float.
    percent_off: int | None = None
    # A fixed amount off, minor units of ``currency``.
    amount_off: int | None = None
    currency: str | None = None


class Subscription(msgspec.Struct, frozen=True, kw_only=True, tag="subscription"):
    customer_id: str | None = None
    # Neutral vocabulary: future, trialing, active, past_due, unpaid, paused, canceled,
    # incomplete, incomplete_expired.
    status: str
    currency: str | None = None
    items: tuple[SubscriptionItem, ...] = ()
    current_period_start: int | None = None
    current_period_end: int | None = None
    trial_end: int | None = None
    cancel_at_period_end: bool = False
    canceled_at: int | None = None
    ended_at: int | None = None
    # Normalised monthly recurring amount, minor units (see processors.mrr).
    mrr: int = 0
    created_at: int | None = None
    metadata: dict[str, str] = {}
    discounts: tuple[Discount, ...] = ()


class Invoice(msgspec.Struct, frozen=True, kw_only=True, tag="invoice"):
    customer_id: str | None = None
    subscription_id: str | None = None
    # draft, open, paid, void, uncollectible
    status: str
    currency: str | None = None
    total: int = 0
    amount_paid: int = 0
    amount_due: int = 0
    created_at: int | None = None
    due_date: int | None = None
    paid_at: int | None = None
    number: str | None = None
    # The service period the invoice bills (its subscription lines), for overlap checks.
    period_start: int | None = None
    period_end: int | None = None


class Payment(msgspec.Struct, frozen=True, kw_only=True, tag="payment"):
    # charge / payment_intent (Stripe), transaction (Chargebee)
    kind: str
    customer_id: str | None = None
    invoice_id: str | None = None
    # succeeded, failed, pending, canceled, requires_action, ...
    status: str
    currency: str | None = None
    amount: int = 0
    amount_refunded: int = 0
    created_at: int | None = None
    failure_reason: str | None = None


class Refund(msgspec.Struct, frozen=True, kw_only=True, tag="refund"):
    payment_id: str | None = None
    # succeeded, pending, failed, canceled
    status: str
    currency: str | None = None
    amount: int = 0
    reason: str | None = None
    created_at: int | None = None


class CreditNote(msgspec.Struct, frozen=True, kw_only=True, tag="credit_note"):
    customer_id: str | None = None
    invoice_id: str | None = None
    # issued, void (plus Chargebee's adjusted, refunded, refund_due)
    status: str
    currency: str | None = None
    total: int = 0
    created_at: int | None = None
    reason: str | None = None


Body = Customer | Subscription | Invoice | Payment | Refund | CreditNote


class ObjectUpdate(msgspec.Struct, frozen=True, kw_only=True):
    """One object's full snapshot at ``version``.

    ``version`` is a text ordering key compared as a string (fixed-width fields): Chargebee
    ``resource_version`` zero-padded; Stripe ``created`` zero-padded, then the lifecycle rank of
    the event type, then the event id (see :mod:`processors.normalize.stripe`).
    ``creates`` says the event is the object's own creation event; an update for an unknown
    object that does not create it is a missing predecessor.

    ``snapshot`` says the update is an object fetched from the provider's API (``ledgerhook
    sync``, a drift repair), not an event: it may introduce an object (no missing predecessor,
    no ``created`` business change) and may lose to a newer event without being out of order.
    ``tombstone`` says the provider reported only that the object is deleted (Stripe's
    ``{"id", "object", "deleted": true}``): the stored fields are kept, marked deleted.
    """

    object_type: ObjectType
    object_id: str
    version: str
    deleted: bool = False
    creates: bool = False
    related: bool = False
    snapshot: bool = False
    tombstone: bool = False
    body: Body


class NeutralEvent(msgspec.Struct, frozen=True, kw_only=True):
    """A normalised provider event. ``updates[0]`` is the main object (the one ``processed`` names)."""

    provider: str
    account: str
    event_id: str
    event_type: str
    created: int
    updates: tuple[ObjectUpdate, ...]


class StoredObject(msgspec.Struct, frozen=True, kw_only=True):
    """The current state of one object (one row of a state table)."""

    object_type: ObjectType
    provider: str
    account: str
    id: str
    version: str
    deleted: bool = False
    body: Body
    last_delivery_id: int


class Anomaly(msgspec.Struct, frozen=True, kw_only=True):
    kind: Literal["out_of_order", "missing_predecessor"]
    object_type: ObjectType
    object_id: str
    detail: dict[str, str]
