"""Chargebee event → neutral event. Pure: bytes in, :class:`NeutralEvent` (or None) out.

A Chargebee event's ``content`` carries every resource the event touched (a
``subscription_created`` also carries the customer and the first invoice), each with its own
``resource_version`` (milliseconds), which Chargebee documents as the ordering key. So one event
yields one update per known resource: the event's main resource first (the one the event type
names), then the others. Related resources are snapshots too, so applying them is as safe as
applying the main one; they are marked ``related`` and raise no anomalies (context, not the
subject of the event).

``version`` is ``resource_version`` zero-padded to 16 digits. Statuses are mapped into the
neutral vocabulary (``in_trial`` → ``trialing``, ``cancelled`` → ``canceled``, ``non_renewing`` →
``active`` with ``cancel_at_period_end``; invoice ``posted``/``payment_due`` → ``open``,
``not_paid`` → ``uncollectible``, ``voided`` → ``void``; transaction ``success`` →
``succeeded``). Transactions of type ``refund`` are refunds; other transactions are payments.
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

# event type -> (content key of the main resource, creates it, deletes it)
EVENTS: dict[str, tuple[str, bool, bool]] = {
    "customer_created": ("customer", True, False),
    "customer_changed": ("customer", False, False),
    "customer_deleted": ("customer", False, True),
    "subscription_created": ("subscription", True, False),
    "subscription_started": ("subscription", False, False),
    "subscription_activated": ("subscription", False, False),
    "subscription_trial_end_reminder": ("subscription", False, False),
    "subscription_changed": ("subscription", False, False),
    "subscription_renewed": ("subscription", False, False),
    "subscription_cancelled": ("subscription", False, False),
    "subscription_cancellation_scheduled": ("subscription", False, False),
    "subscription_scheduled_cancellation_removed": ("subscription", False, False),
    "subscription_reactivated": ("subscription", False, False),
    "subscription_paused": ("subscription", False, False),
    "subscription_resumed": ("subscription", False, False),
    "subscription_deleted": ("subscription", False, True),
    "invoice_generated": ("invoice", True, False),
    "invoice_updated": ("invoice", False, False),
    "invoice_deleted": ("invoice", False, True),
    "payment_succeeded": ("transaction", True, False),
    "payment_failed": ("transaction", True, False),
    "payment_refunded": ("transaction", True, False),
    "refund_initiated": ("transaction", True, False),
    "credit_note_created": ("credit_note", True, False),
    "credit_note_updated": ("credit_note", False, False),
    "credit_note_deleted": ("credit_note", False, True),
}

_ORDER = ("customer", "subscription", "invoice", "transaction", "credit_note")

_SUB_STATUS = {
    "future": "future",
    "in_trial": "trialing",
    "active": "active",
    "non_renewing": "active",
    "paused": "paused",
    "cancelled": "canceled",
    "transferred": "canceled",
}
_INVOICE_STATUS = {
    "paid": "paid",
    "posted": "open",
    "payment_due": "open",
    "not_paid": "uncollectible",
    "voided": "void",
    "pending": "draft",
}
_TXN_STATUS = {
    "success": "succeeded",
    "failure": "failed",
    "timeout": "failed",
    "in_progress": "pending",
    "needs_attention": "pending",
    "voided": "canceled",
}
_CN_STATUS = {"voided": "void"}


class _Event(msgspec.Struct):
    id: str
    event_type: str
    occurred_at: int
    content: dict[str, msgspec.Raw]


class _Wrapped(msgspec.Struct):
    event: msgspec.Raw


class _Customer(msgspec.Struct):
    id: str
    resource_version: int
    email: str | None = None
    first_name: str | None = None
    last_name: str | None = None
    company: str | None = None
    preferred_currency_code: str | None = None
    created_at: int | None = None
    deleted: bool = False
    meta_data: dict[str, Any] | None = None


class _SubItem(msgspec.Struct):
    item_price_id: str
    item_type: str = "plan"
    quantity: int = 1
    unit_price: int | None = None


class _Coupon(msgspec.Struct):
    coupon_id: str


class _CbDiscount(msgspec.Struct):
    id: str
    type: str | None = None
    percentage: float | None = None
    amount: int | None = None
    currency_code: str | None = None


class _Subscription(msgspec.Struct):
    id: str
    resource_version: int
    status: str
    customer_id: str | None = None
    currency_code: str | None = None
    billing_period: int = 1
    billing_period_unit: Literal["day", "week", "month", "year"] = "month"
    subscription_items: list[_SubItem] | None = None
    plan_id: str | None = None
    plan_quantity: int = 1
    plan_unit_price: int | None = None
    current_term_start: int | None = None
    current_term_end: int | None = None
    trial_end: int | None = None
    cancelled_at: int | None = None
    deleted: bool = False
    created_at: int | None = None
    meta_data: dict[str, Any] | None = None
    # ``coupons`` name coupons only; ``discounts`` (Product Catalog 2.0) carry their value.
    coupons: list[_Coupon] | None = None
    discounts: list[_CbDiscount] | None = None


class _LineItem(msgspec.Struct):
    date_from: int | None = None
    date_to: int | None = None


class _Invoice(msgspec.Struct):
    id: str
    resource_version: int
    status: str
    customer_id: str | None = None
    subscription_id: str | None = None
    currency_code: str | None = None
    total: int = 0
    amount_paid: int = 0
    amount_due: int = 0
    date: int | None = None
    due_date: int | None = None
    paid_at: int | None = None
    deleted: bool = False
    line_items: list[_LineItem] | None = None


class _LinkedInvoice(msgspec.Struct):
    invoice_id: str


class _LinkedRefund(msgspec.Struct):
    txn_amount: int = 0


class _Transaction(msgspec.Struct):
    id: str
    resource_version: int
    type: str
    status: str
    amount: int = 0
    currency_code: str | None = None
    customer_id: str | None = None
    date: int | None = None
    linked_invoices: list[_LinkedInvoice] | None = None
    linked_refunds: list[_LinkedRefund] | None = None
    reference_transaction_id: str | None = None
    refunded_txn_id: str | None = None
    error_text: str | None = None
    deleted: bool = False


class _CreditNote(msgspec.Struct):
    id: str
    resource_version: int
    status: str
    customer_id: str | None = None
    reference_invoice_id: str | None = None
    currency_code: str | None = None
    total: int = 0
    date: int | None = None
    create_reason_code: str | None = None
    reason_code: str | None = None
    deleted: bool = False


_event = msgspec.json.Decoder(_Event)
_wrapped = msgspec.json.Decoder(_Wrapped)
_customer = msgspec.json.Decoder(_Customer)
_subscription = msgspec.json.Decoder(_Subscription)
_invoice = msgspec.json.Decoder(_Invoice)
_transaction = msgspec.json.Decoder(_Transaction)
_credit_note = msgspec.json.Decoder(_CreditNote)


def _cur(code: str | None) -> str | None:
    return code.upper() if code else None


def _discounts(s: _Subscription) -> tuple[Discount, ...]:
    out = [
        Discount(
            id=d.id,
            percent_off=percent_hundredths(d.percentage) if d.type == "percentage" else None,
            amount_off=d.amount if d.type == "fixed_amount" else None,
            currency=_cur(d.currency_code),
        )
        for d in s.discounts or []
    ]
    named = {d.id for d in out}
    out += [Discount(id=c.coupon_id) for c in s.coupons or [] if c.coupon_id not in named]
    return tuple(out)


def _period(lines: list[_LineItem] | None) -> tuple[int | None, int | None]:
    starts = [li.date_from for li in lines or [] if li.date_from is not None]
    ends = [li.date_to for li in lines or [] if li.date_to is not None]
    return (min(starts) if starts else None, max(ends) if ends else None)


def _sub_body(s: _Subscription) -> Subscription:
    if s.subscription_items is not None:
        items = tuple(
            SubscriptionItem(
                price_id=i.item_price_id,
                quantity=i.quantity,
                unit_amount=i.unit_price or 0,
                interval=s.billing_period_unit,
                interval_count=s.billing_period,
            )
            for i in s.subscription_items
            if i.item_type != "charge"  # one-off charges are not recurring revenue
        )
    elif s.plan_id is not None:
        items = (
            SubscriptionItem(
                price_id=s.plan_id,
                quantity=s.plan_quantity,
                unit_amount=s.plan_unit_price or 0,
                interval=s.billing_period_unit,
                interval_count=s.billing_period,
            ),
        )
    else:
        items = ()
    if s.status not in _SUB_STATUS:
        raise NormalisationError(f"unknown subscription status {s.status!r}")
    status = _SUB_STATUS[s.status]
    return Subscription(
        customer_id=s.customer_id,
        status=status,
        currency=_cur(s.currency_code),
        items=items,
        current_period_start=s.current_term_start,
        current_period_end=s.current_term_end,
        trial_end=s.trial_end,
        cancel_at_period_end=s.status == "non_renewing",
        canceled_at=s.cancelled_at,
        ended_at=s.cancelled_at if status == "canceled" else None,
        mrr=monthly_amount(status, items),
        created_at=s.created_at,
        metadata=metadata_text(s.meta_data),
        discounts=_discounts(s),
    )


def _resource(key: str, raw: msgspec.Raw) -> tuple[ObjectType, str, int, bool, Body] | None:
    """(object type, id, resource_version, deleted, body) of a known resource; None otherwise."""
    if key == "customer":
        c = _customer.decode(raw)
        name = " ".join(p for p in (c.first_name, c.last_name) if p) or c.company
        body: Body = Customer(
            email=c.email,
            name=name,
            currency=_cur(c.preferred_currency_code),
            created_at=c.created_at,
            metadata=metadata_text(c.meta_data),
        )
        return "customer", c.id, c.resource_version, c.deleted, body
    if key == "subscription":
        s = _subscription.decode(raw)
        return "subscription", s.id, s.resource_version, s.deleted, _sub_body(s)
    if key == "invoice":
        i = _invoice.decode(raw)
        period_start, period_end = _period(i.line_items)
        body = Invoice(
            customer_id=i.customer_id,
            subscription_id=i.subscription_id,
            status=_INVOICE_STATUS.get(i.status, i.status),
            currency=_cur(i.currency_code),
            total=i.total,
            amount_paid=i.amount_paid,
            amount_due=i.amount_due,
            created_at=i.date,
            due_date=i.due_date,
            paid_at=i.paid_at,
            number=i.id,
            period_start=period_start,
            period_end=period_end,
        )
        return "invoice", i.id, i.resource_version, i.deleted, body
    if key == "transaction":
        t = _transaction.decode(raw)
        status = _TXN_STATUS.get(t.status, t.status)
        if t.type == "refund":
            body = Refund(
                payment_id=t.reference_transaction_id or t.refunded_txn_id,
                status=status,
                currency=_cur(t.currency_code),
                amount=t.amount,
                created_at=t.date,
            )
            return "refund", t.id, t.resource_version, t.deleted, body
        invoices = t.linked_invoices or []
        body = Payment(
            kind="transaction",
            customer_id=t.customer_id,
            invoice_id=invoices[0].invoice_id if invoices else None,
            status=status,
            currency=_cur(t.currency_code),
            amount=t.amount,
            amount_refunded=sum(r.txn_amount for r in t.linked_refunds or []),
            created_at=t.date,
            failure_reason=t.error_text,
        )
        return "payment", t.id, t.resource_version, t.deleted, body
    if key == "credit_note":
        n = _credit_note.decode(raw)
        body = CreditNote(
            customer_id=n.customer_id,
            invoice_id=n.reference_invoice_id,
            status=_CN_STATUS.get(n.status, n.status),
            currency=_cur(n.currency_code),
            total=n.total,
            created_at=n.date,
            reason=n.create_reason_code or n.reason_code,
        )
        return "credit_note", n.id, n.resource_version, n.deleted, body
    return None


def _decode_event(body: bytes) -> _Event:
    try:
        return _event.decode(body)
    except msgspec.ValidationError:
        # The retrieve API wraps the event in {"event": {...}}; accept both.
        return _event.decode(_wrapped.decode(body).event)


def normalize(body: bytes, *, account: str) -> NeutralEvent | None:
    try:
        ev = _decode_event(body)
    except (msgspec.ValidationError, msgspec.DecodeError) as exc:
        raise NormalisationError(f"not a Chargebee event: {exc}") from None
    spec = EVENTS.get(ev.event_type)
    if spec is None:
        return None
    main_key, creates, deletes = spec
    if main_key not in ev.content:
        raise NormalisationError(f"{ev.event_type}: content has no {main_key}")
    updates: list[ObjectUpdate] = []
    for key in (main_key, *(k for k in _ORDER if k != main_key)):
        raw = ev.content.get(key)
        if raw is None:
            continue
        try:
            found = _resource(key, raw)
        except (msgspec.ValidationError, msgspec.DecodeError) as exc:
            raise NormalisationError(f"{ev.event_type}: unexpected {key}: {exc}") from None
        if found is None:
            continue
        object_type, object_id, version, deleted, neutral = found
        is_main = key == main_key
        updates.append(
            ObjectUpdate(
                object_type=object_type,
                object_id=object_id,
                version=f"{version:016d}",
                deleted=deleted or (deletes and is_main),
                creates=creates and is_main,
                related=not is_main,
                body=neutral,
            )
        )
    return NeutralEvent(
        provider="chargebee",
        account=account,
        event_id=ev.id,
        event_type=ev.event_type,
        created=ev.occurred_at,
        updates=tuple(updates),
    )
