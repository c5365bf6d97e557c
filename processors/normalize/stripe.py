"""Stripe event → neutral event. Pure: bytes in, :class:`NeutralEvent` (or None) out.

Ordering key (``ObjectUpdate.version``), compared as text::

    f"{event.created:012d}.{rank:02d}.{event.id}"

Stripe's ``created`` has one-second resolution, so several events of one object often share it
(``invoice.created``, ``invoice.finalized``, ``invoice.paid`` in the same second). Ties are broken
by the lifecycle rank of the event type (:data:`EVENTS`: creation first, deletion last, payment
outcomes after finalisation), then by the event id, which is arbitrary but deterministic: the
same set of events always folds to the same state.

Since API version 2025-03-31 ``current_period_start``/``current_period_end`` live on subscription
items rather than the subscription, and an invoice's subscription under
``parent.subscription_details``; both shapes are read (top level first, else the earliest
start and latest end over the items).

Unknown event types return None (recorded as ``ignored``). A mapped type whose payload does not
have the expected shape raises :class:`NormalisationError` (dead letter).
"""

from __future__ import annotations

from typing import Any, Literal

import msgspec

from processors.errors import NormalisationError
from processors.model import (
    Body,
    CreditNote,
    Customer,
    Discount,
    Invoice,
    NeutralEvent,
    ObjectType,
    ObjectUpdate,
    Payment,
    Refund,
    Subscription,
    SubscriptionItem,
)
from processors.mrr import monthly_amount
from processors.normalize._common import metadata_text, percent_hundredths

__all__ = ["EVENTS", "normalize"]

# event type -> (object type, lifecycle rank, creates the object, deletes it)
EVENTS: dict[str, tuple[ObjectType, int, bool, bool]] = {
    "customer.created": ("customer", 0, True, False),
    "customer.updated": ("customer", 2, False, False),
    "customer.deleted": ("customer", 9, False, True),
    "customer.subscription.created": ("subscription", 0, True, False),
    "customer.subscription.trial_will_end": ("subscription", 1, False, False),
    "customer.subscription.updated": ("subscription", 2, False, False),
    "customer.subscription.paused": ("subscription", 3, False, False),
    "customer.subscription.resumed": ("subscription", 4, False, False),
    "customer.subscription.deleted": ("subscription", 9, False, False),
    "invoice.created": ("invoice", 0, True, False),
    "invoice.updated": ("invoice", 2, False, False),
    "invoice.finalized": ("invoice", 3, False, False),
    "invoice.payment_failed": ("invoice", 4, False, False),
    "invoice.paid": ("invoice", 5, False, False),
    "invoice.marked_uncollectible": ("invoice", 6, False, False),
    "invoice.voided": ("invoice", 6, False, False),
    "invoice.deleted": ("invoice", 9, False, True),
    "charge.failed": ("payment", 1, True, False),
    "charge.succeeded": ("payment", 1, True, False),
    "charge.refunded": ("payment", 5, False, False),
    "payment_intent.payment_failed": ("payment", 3, True, False),
    "payment_intent.succeeded": ("payment", 4, True, False),
    "refund.created": ("refund", 0, True, False),
    "refund.updated": ("refund", 2, False, False),
    "refund.failed": ("refund", 3, False, False),
    "credit_note.created": ("credit_note", 0, True, False),
    "credit_note.updated": ("credit_note", 2, False, False),
    "credit_note.voided": ("credit_note", 3, False, False),
}


class _Data(msgspec.Struct):
    object: msgspec.Raw


class _Envelope(msgspec.Struct):
    id: str
    type: str
    created: int
    data: _Data


class _Customer(msgspec.Struct):
    id: str
    email: str | None = None
    name: str | None = None
    currency: str | None = None
    created: int | None = None
    deleted: bool = False
    metadata: dict[str, Any] | None = None


class _Recurring(msgspec.Struct):
    interval: Literal["day", "week", "month", "year"] = "month"
    interval_count: int = 1


class _Price(msgspec.Struct):
    id: str
    currency: str | None = None
    unit_amount: int | None = None
    product: str | dict[str, Any] | None = None
    recurring: _Recurring | None = None


class _Plan(msgspec.Struct):
    id: str
    currency: str | None = None
    amount: int | None = None
    product: str | dict[str, Any] | None = None
    interval: Literal["day", "week", "month", "year"] = "month"
    interval_count: int = 1


class _Item(msgspec.Struct):
    price: _Price | None = None
    plan: _Plan | None = None
    quantity: int | None = 1
    current_period_start: int | None = None
    current_period_end: int | None = None


class _Items(msgspec.Struct):
    data: list[_Item]


class _PauseCollection(msgspec.Struct):
    behavior: str | None = None


class _Coupon(msgspec.Struct):
    id: str | None = None
    percent_off: float | None = None
    amount_off: int | None = None
    currency: str | None = None


class _Discount(msgspec.Struct):
    id: str | None = None
    coupon: _Coupon | None = None


class _Subscription(msgspec.Struct):
    id: str
    customer: str
    status: str
    items: _Items
    currency: str | None = None
    current_period_start: int | None = None
    current_period_end: int | None = None
    trial_end: int | None = None
    cancel_at_period_end: bool = False
    canceled_at: int | None = None
    ended_at: int | None = None
    pause_collection: _PauseCollection | None = None
    created: int | None = None
    metadata: dict[str, Any] | None = None
    # ``discount`` (one, older API versions) and ``discounts`` (ids, or objects when expanded).
    discount: _Discount | None = None
    discounts: list[str | _Discount] | None = None


class _StatusTransitions(msgspec.Struct):
    paid_at: int | None = None


class _SubscriptionDetails(msgspec.Struct):
    subscription: str | None = None


class _InvoiceParent(msgspec.Struct):
    subscription_details: _SubscriptionDetails | None = None


class _Period(msgspec.Struct):
    start: int | None = None
    end: int | None = None


class _Line(msgspec.Struct):
    period: _Period | None = None


class _Lines(msgspec.Struct):
    data: list[_Line] = []


class _Invoice(msgspec.Struct):
    id: str
    status: str | None
    currency: str
    customer: str | None = None
    subscription: str | None = None
    # API >= 2025-03-31: the subscription moved to parent.subscription_details.
    parent: _InvoiceParent | None = None
    total: int = 0
    amount_paid: int = 0
    amount_due: int = 0
    created: int | None = None
    due_date: int | None = None
    number: str | None = None
    status_transitions: _StatusTransitions | None = None
    period_start: int | None = None
    period_end: int | None = None
    lines: _Lines | None = None


class _Charge(msgspec.Struct):
    id: str
    amount: int
    currency: str
    status: str
    customer: str | None = None
    invoice: str | None = None
    amount_refunded: int = 0
    created: int | None = None
    failure_message: str | None = None


class _PaymentError(msgspec.Struct):
    message: str | None = None
    code: str | None = None


class _PaymentIntent(msgspec.Struct):
    id: str
    amount: int
    currency: str
    status: str
    customer: str | None = None
    invoice: str | None = None
    amount_received: int = 0
    created: int | None = None
    last_payment_error: _PaymentError | None = None


class _Refund(msgspec.Struct):
    id: str
    amount: int
    currency: str
    status: str | None = None
    charge: str | None = None
    payment_intent: str | None = None
    reason: str | None = None
    created: int | None = None


class _CreditNote(msgspec.Struct):
    id: str
    currency: str
    status: str
    total: int
    customer: str | None = None
    invoice: str | None = None
    created: int | None = None
    reason: str | None = None


_envelope = msgspec.json.Decoder(_Envelope)
_decoders: dict[type[msgspec.Struct], msgspec.json.Decoder[Any]] = {
    t: msgspec.json.Decoder(t)
    for t in (_Customer, _Subscription, _Invoice, _Charge, _PaymentIntent, _Refund, _CreditNote)
}


def _cur(code: str | None) -> str | None:
    return code.upper() if code else None


def _product(p: str | dict[str, Any] | None) -> str | None:
    if isinstance(p, dict):
        value = p.get("id")
        return value if isinstance(value, str) else None
    return p


def _item(it: _Item) -> SubscriptionItem:
    qty = 1 if it.quantity is None else it.quantity
    if it.price is not None:
        rec = it.price.recurring or _Recurring()
        return SubscriptionItem(
            price_id=it.price.id,
            product_id=_product(it.price.product),
            quantity=qty,
            unit_amount=it.price.unit_amount or 0,
            interval=rec.interval,
            interval_count=rec.interval_count,
        )
    if it.plan is not None:
        return SubscriptionItem(
            price_id=it.plan.id,
            product_id=_product(it.plan.product),
            quantity=qty,
            unit_amount=it.plan.amount or 0,
            interval=it.plan.interval,
            interval_count=it.plan.interval_count,
        )
    raise NormalisationError("subscription item has neither price nor plan")


def _discounts(s: _Subscription) -> tuple[Discount, ...]:
    """``discount`` first (expanded), then ``discounts``; a bare id already seen expanded (the
    same discount listed both ways) counts once."""
    out: list[Discount] = []
    seen: set[str] = set()
    for d in [s.discount, *(s.discounts or [])]:
        if d is None:
            continue
        if isinstance(d, str):
            if d not in seen:
                seen.add(d)
                out.append(Discount(id=d))
            continue
        c = d.coupon or _Coupon()
        if d.id is not None:
            if d.id in seen:
                continue
            seen.add(d.id)
        out.append(
            Discount(
                id=c.id or d.id or "",
                percent_off=percent_hundredths(c.percent_off),
                amount_off=c.amount_off,
                currency=_cur(c.currency),
            )
        )
    return tuple(out)


def _invoice_period(i: _Invoice) -> tuple[int | None, int | None]:
    """The service period: the lines' periods when listed (an invoice's own ``period_*`` is the
    window in which its items were collected, the previous period for a renewal), else those."""
    lines = [ln.period for ln in (i.lines.data if i.lines else []) if ln.period is not None]
    starts = [p.start for p in lines if p.start is not None]
    ends = [p.end for p in lines if p.end is not None]
    if starts and ends:
        return min(starts), max(ends)
    return i.period_start, i.period_end


def _subscription(s: _Subscription) -> Subscription:
    items = tuple(_item(i) for i in s.items.data)
    start = s.current_period_start
    end = s.current_period_end
    if start is None:  # API >= 2025-03-31: periods live on the items
        starts = [
            i.current_period_start for i in s.items.data if i.current_period_start is not None
        ]
        start = min(starts) if starts else None
    if end is None:
        ends = [i.current_period_end for i in s.items.data if i.current_period_end is not None]
        end = max(ends) if ends else None
    currency = s.currency
    if currency is None:
        for i in s.items.data:
            currency = (i.price.currency if i.price else None) or (
                i.plan.currency if i.plan else None
            )
            if currency:
                break
    # Stripe's "paused" status is trial-end pausing; pause_collection is the billing pause.
    status = "paused" if s.pause_collection is not None and s.status == "active" else s.status
    return Subscription(
        customer_id=s.customer,
        status=status,
        currency=_cur(currency),
        items=items,
        current_period_start=start,
        current_period_end=end,
        trial_end=s.trial_end,
        cancel_at_period_end=s.cancel_at_period_end,
        canceled_at=s.canceled_at,
        ended_at=s.ended_at,
        mrr=monthly_amount(status, items),
        created_at=s.created,
        metadata=metadata_text(s.metadata),
        discounts=_discounts(s),
    )


def _body(object_type: ObjectType, event_type: str, raw: msgspec.Raw) -> tuple[str, Body, bool]:
    """(object id, neutral body, object says deleted)."""
    if object_type == "customer":
        c = _decoders[_Customer].decode(raw)
        return (
            c.id,
            Customer(
                email=c.email,
                name=c.name,
                currency=_cur(c.currency),
                created_at=c.created,
                metadata=metadata_text(c.metadata),
            ),
            c.deleted,
        )
    if object_type == "subscription":
        s = _decoders[_Subscription].decode(raw)
        return s.id, _subscription(s), False
    if object_type == "invoice":
        i = _decoders[_Invoice].decode(raw)
        paid_at = i.status_transitions.paid_at if i.status_transitions else None
        details = i.parent.subscription_details if i.parent else None
        period_start, period_end = _invoice_period(i)
        return (
            i.id,
            Invoice(
                customer_id=i.customer,
                subscription_id=i.subscription or (details.subscription if details else None),
                status=i.status or "draft",
                currency=_cur(i.currency),
                total=i.total,
                amount_paid=i.amount_paid,
                amount_due=i.amount_due,
                created_at=i.created,
                due_date=i.due_date,
                paid_at=paid_at,
                number=i.number,
                period_start=period_start,
                period_end=period_end,
            ),
            False,
        )
    if object_type == "payment" and event_type.startswith("charge."):
        ch = _decoders[_Charge].decode(raw)
        return (
            ch.id,
            Payment(
                kind="charge",
                customer_id=ch.customer,
                invoice_id=ch.invoice,
                status=ch.status,
                currency=_cur(ch.currency),
                amount=ch.amount,
                amount_refunded=ch.amount_refunded,
                created_at=ch.created,
                failure_reason=ch.failure_message,
            ),
            False,
        )
    if object_type == "payment":
        pi = _decoders[_PaymentIntent].decode(raw)
        failure = pi.last_payment_error
        return (
            pi.id,
            Payment(
                kind="payment_intent",
                customer_id=pi.customer,
                invoice_id=pi.invoice,
                status=pi.status,
                currency=_cur(pi.currency),
                amount=pi.amount,
                created_at=pi.created,
                failure_reason=(failure.message or failure.code) if failure else None,
            ),
            False,
        )
    if object_type == "refund":
        r = _decoders[_Refund].decode(raw)
        return (
            r.id,
            Refund(
                payment_id=r.charge or r.payment_intent,
                status=r.status or ("failed" if event_type == "refund.failed" else "pending"),
                currency=_cur(r.currency),
                amount=r.amount,
                reason=r.reason,
                created_at=r.created,
            ),
            False,
        )
    cn = _decoders[_CreditNote].decode(raw)
    return (
        cn.id,
        CreditNote(
            customer_id=cn.customer,
            invoice_id=cn.invoice,
            status=cn.status,
            currency=_cur(cn.currency),
            total=cn.total,
            created_at=cn.created,
            reason=cn.reason,
        ),
        False,
    )


def normalize(body: bytes, *, account: str) -> NeutralEvent | None:
    try:
        env = _envelope.decode(body)
    except (msgspec.ValidationError, msgspec.DecodeError) as exc:
        raise NormalisationError(f"not a Stripe event: {exc}") from None
    spec = EVENTS.get(env.type)
    if spec is None:
        return None
    object_type, rank, creates, deletes = spec
    try:
        object_id, neutral, deleted = _body(object_type, env.type, env.data.object)
    except (msgspec.ValidationError, msgspec.DecodeError) as exc:
        raise NormalisationError(f"{env.type}: unexpected payload: {exc}") from None
    update = ObjectUpdate(
        object_type=object_type,
        object_id=object_id,
        version=f"{env.created:012d}.{rank:02d}.{env.id}",
        deleted=deleted or deletes,
        creates=creates,
        body=neutral,
    )
    return NeutralEvent(
        provider="stripe",
        account=account,
        event_id=env.id,
        event_type=env.type,
        created=env.created,
        updates=(update,),
    )
