"""The demo's story: real fixture payloads rewritten into one coherent customer history (pure).

A Stripe customer subscribes to Basic, upgrades to Pro, pays the invoice, gets a partial refund
and a matching credit note; a Chargebee subscription is created and changed. Along the way the
story exercises what Ledgerhook is for:

- one event is **delivered twice** (providers retry): stored twice, applied once;
- one older update is **delivered late**, after a newer one: kept in the log, not applied over
  newer state, raised as an ``out_of_order`` alert;
- one event is **never delivered** but listed by the provider's Events API (the demo serves a
  stand-in): reconciliation finds it, backfills it and raises ``missing_event``.

Ids carry a run tag so the demo can run again against the same instance (event ids are part of an
event's identity). Provider times are ``now - 20 min`` onwards, inside the reconcile window.
"""

from __future__ import annotations

import base64
import copy
import hashlib
import hmac
import importlib.resources
from dataclasses import dataclass
from typing import Any, Literal

import msgspec

__all__ = [
    "BASIC",
    "PRO",
    "Delivery",
    "Event",
    "Story",
    "basic_auth",
    "build_story",
    "stripe_signature",
]

Plan = tuple[str, int]  # (price id, monthly unit amount in minor units)
BASIC: Plan = ("price_demo_basic", 1_500)
PRO: Plan = ("price_demo_pro", 4_900)
CURRENCY = "eur"


@dataclass(frozen=True, slots=True)
class Event:
    provider: Literal["stripe", "chargebee"]
    event_id: str
    event_type: str
    created: int
    object_id: str
    body: bytes
    note: str


@dataclass(frozen=True, slots=True)
class Delivery:
    """One POST the demo makes, in send order; ``event`` may repeat (a redelivery)."""

    event: Event
    label: str


@dataclass(frozen=True, slots=True)
class Story:
    tag: str
    customer_id: str
    subscription_id: str
    chargebee_subscription_id: str
    deliveries: tuple[Delivery, ...]
    # What the provider's Events API lists: every Stripe event, delivered or not.
    stripe_api_events: tuple[Event, ...]
    withheld: Event
    redelivered: Event
    late: Event


def _fixture(provider: str, name: str) -> dict[str, Any]:
    path = importlib.resources.files("ledgerhook.demo") / "fixtures" / provider / name
    data: dict[str, Any] = msgspec.json.decode(path.read_bytes())
    return data


def _encode(data: dict[str, Any]) -> bytes:
    return msgspec.json.encode(data)


def _items(sub_id: str, plan: Plan, created: int) -> dict[str, Any]:
    template = _fixture("stripe", "subscription_updated.json")["data"]["object"]
    item: dict[str, Any] = copy.deepcopy(template["items"]["data"][0])
    price_id, amount = plan
    item["id"] = f"si_{sub_id.removeprefix('sub_')}"
    item["subscription"] = sub_id
    item["created"] = created
    for key in ("plan", "price"):
        item[key]["id"] = price_id
        item[key]["currency"] = CURRENCY
        item[key]["product"] = "prod_demo_ledger"
        item[key]["nickname"] = price_id.removeprefix("price_demo_").title()
    item["plan"]["amount"] = amount
    item["plan"]["amount_decimal"] = str(amount)
    item["price"]["unit_amount"] = amount
    item["price"]["unit_amount_decimal"] = str(amount)
    return item


def _stripe_event(
    template: str,
    *,
    event_id: str,
    event_type: str,
    created: int,
    obj: dict[str, Any],
    previous: dict[str, Any] | None = None,
) -> dict[str, Any]:
    event = _fixture("stripe", template)
    event["id"] = event_id
    event["type"] = event_type
    event["created"] = created
    event["request"] = {"id": None, "idempotency_key": None}
    event["data"] = {"object": obj}
    if previous is not None:
        event["data"]["previous_attributes"] = previous
    return event


def build_story(tag: str, now: int) -> Story:
    """The story for run ``tag`` with provider times ending a little before ``now``."""
    t0 = now - 20 * 60
    cus, sub = f"cus_demo{tag}", f"sub_demo{tag}"
    inv, ch = f"in_demo{tag}", f"ch_demo{tag}"
    re_, cn = f"re_demo{tag}", f"cn_demo{tag}"
    events: list[Event] = []

    def add(data: dict[str, Any], object_id: str, note: str) -> Event:
        ev = Event(
            "stripe", data["id"], data["type"], data["created"], object_id, _encode(data), note
        )
        events.append(ev)
        return ev

    def eid(n: int) -> str:
        return f"evt_demo{tag}_{n:02d}"

    # 1. customer created (Stripe has no customer.created fixture: the updated one, retyped).
    customer = _fixture("stripe", "customer_updated.json")["data"]["object"]
    customer.update(
        id=cus,
        created=t0,
        email="ada@example.com",
        name="Ada Lovelace",
        currency=CURRENCY,
        subscriptions={
            "object": "list",
            "data": [],
            "has_more": False,
            "total_count": 0,
            "url": f"/v1/customers/{cus}/subscriptions",
        },
    )
    created_customer = add(
        _stripe_event(
            "customer_updated.json",
            event_id=eid(1),
            event_type="customer.created",
            created=t0,
            obj=customer,
        ),
        cus,
        "customer Ada signs up",
    )

    # 2. subscription created on Basic (trialing), 3. activated, 4. upgraded to Pro.
    base = _fixture("stripe", "subscription_created.json")["data"]["object"]

    def subscription(plan: Plan, status: str, at: int) -> dict[str, Any]:
        obj: dict[str, Any] = copy.deepcopy(base)
        item = _items(sub, plan, t0 + 60)
        obj.update(
            id=sub,
            customer=cus,
            created=t0 + 60,
            start_date=t0 + 60,
            status=status,
            billing_cycle_anchor=t0 + 60,
            current_period_start=at,
            current_period_end=at + 30 * 86400,
            latest_invoice=inv,
            plan=item["plan"],
            quantity=1,
            metadata={"demo": tag},
            items={
                "object": "list",
                "data": [item],
                "has_more": False,
                "total_count": 1,
                "url": f"/v1/subscription_items?subscription={sub}",
            },
            trial_end=None,
            trial_start=None,
            canceled_at=None,
            ended_at=None,
        )
        return obj

    sub_created = add(
        _stripe_event(
            "subscription_created.json",
            event_id=eid(2),
            event_type="customer.subscription.created",
            created=t0 + 60,
            obj=subscription(BASIC, "incomplete", t0 + 60),
        ),
        sub,
        "subscription created on Basic (15.00 EUR/month), awaiting payment",
    )
    activated = add(
        _stripe_event(
            "subscription_updated.json",
            event_id=eid(3),
            event_type="customer.subscription.updated",
            created=t0 + 120,
            obj=subscription(BASIC, "active", t0 + 60),
            previous={"status": "incomplete"},
        ),
        sub,
        "subscription active on Basic",
    )
    basic = subscription(BASIC, "active", t0 + 60)
    upgraded = add(
        _stripe_event(
            "subscription_updated.json",
            event_id=eid(4),
            event_type="customer.subscription.updated",
            created=t0 + 180,
            obj=subscription(PRO, "active", t0 + 180),
            previous={"items": basic["items"], "plan": basic["plan"]},
        ),
        sub,
        "upgraded to Pro (49.00 EUR/month)",
    )

    # 5. the upgrade's invoice is paid.
    invoice = _fixture("stripe", "invoice_paid.json")["data"]["object"]
    invoice.update(
        id=inv,
        customer=cus,
        subscription=sub,
        charge=ch,
        currency=CURRENCY,
        created=t0 + 240,
        amount_due=PRO[1],
        amount_paid=PRO[1],
        amount_remaining=0,
        subtotal=PRO[1],
        total=PRO[1],
        status="paid",
        paid=True,
        customer_email="ada@example.com",
        customer_name="Ada Lovelace",
        number=f"DEMO-{tag}-0001",
        period_start=t0 + 180,
        period_end=t0 + 180 + 30 * 86400,
        payment_intent=None,
        hosted_invoice_url=None,
        invoice_pdf=None,
    )
    invoice["lines"] = {
        "object": "list",
        "data": [],
        "has_more": False,
        "total_count": 0,
        "url": f"/v1/invoices/{inv}/lines",
    }
    paid = add(
        _stripe_event(
            "invoice_paid.json",
            event_id=eid(5),
            event_type="invoice.paid",
            created=t0 + 240,
            obj=invoice,
        ),
        inv,
        "invoice paid: 49.00 EUR",
    )

    # 6. a partial refund, 7. the credit note for it.
    refund = _fixture("stripe", "refund_created.json")["data"]["object"]
    refund.update(
        id=re_,
        amount=1_000,
        charge=ch,
        currency=CURRENCY,
        created=t0 + 300,
        status="succeeded",
        reason="requested_by_customer",
        payment_intent=None,
        balance_transaction=None,
    )
    refunded = add(
        _stripe_event(
            "refund_created.json",
            event_id=eid(6),
            event_type="refund.created",
            created=t0 + 300,
            obj=refund,
        ),
        re_,
        "refund of 10.00 EUR",
    )
    note = _fixture("stripe", "credit_note_created.json")["data"]["object"]
    note.update(
        id=cn,
        customer=cus,
        invoice=inv,
        refund=re_,
        currency=CURRENCY,
        created=t0 + 310,
        amount=1_000,
        subtotal=1_000,
        total=1_000,
        subtotal_excluding_tax=1_000,
        total_excluding_tax=1_000,
        number=f"DEMO-{tag}-CN-01",
        status="issued",
        customer_balance_transaction=None,
        pdf=None,
        memo="Goodwill refund",
    )
    note["lines"] = {
        "object": "list",
        "data": [],
        "has_more": False,
        "total_count": 0,
        "url": f"/v1/credit_notes/{cn}/lines",
    }
    credited = add(
        _stripe_event(
            "credit_note_created.json",
            event_id=eid(7),
            event_type="credit_note.created",
            created=t0 + 310,
            obj=note,
        ),
        cn,
        "credit note for the refund",
    )

    # 8. never delivered: the customer's billing email changes. Only the Events API has it.
    changed = dict(customer, email="ada.billing@example.com")
    withheld = add(
        _stripe_event(
            "customer_updated.json",
            event_id=eid(8),
            event_type="customer.updated",
            created=t0 + 400,
            obj=changed,
            previous={"email": "ada@example.com"},
        ),
        cus,
        "billing email changed (never delivered)",
    )

    # Chargebee: a subscription created, then changed to a bigger plan (resource_version orders).
    cb_template = _fixture("chargebee", "event_subscription_created_retrieve.json")["event"]
    cb_sub = f"demo{tag}cb"

    def chargebee(n: int, event_type: str, at: int, price: str, amount: int) -> Event:
        ev = copy.deepcopy(cb_template)
        ev["id"] = f"ev_demo{tag}_{n:02d}"
        ev["event_type"] = event_type
        ev["occurred_at"] = at
        content = ev["content"]
        content["subscription"].update(
            id=cb_sub,
            customer_id=f"demo{tag}",
            updated_at=at,
            resource_version=at * 1000,
            currency_code="EUR",
            created_at=t0,
            started_at=t0,
            activated_at=t0,
        )
        content["subscription"]["subscription_items"][0].update(
            item_price_id=price,
            unit_price=amount,
            amount=amount,
            unit_price_in_decimal=f"{amount / 100:.2f}",
            amount_in_decimal=f"{amount / 100:.2f}",
        )
        content["customer"]["id"] = f"demo{tag}"
        content.pop("invoice", None)
        content.pop("card", None)
        return Event(
            "chargebee",
            ev["id"],
            event_type,
            at,
            cb_sub,
            _encode(ev),
            f"Chargebee subscription {event_type.removeprefix('subscription_')}",
        )

    cb_created = chargebee(1, "subscription_created", t0 + 30, "team-EUR-monthly", 9_900)
    cb_changed = chargebee(2, "subscription_changed", t0 + 330, "business-EUR-monthly", 19_900)

    sends = [
        Delivery(created_customer, created_customer.note),
        Delivery(sub_created, sub_created.note),
        Delivery(cb_created, cb_created.note),
        # The upgrade arrives before the activation it follows: activation is the late one.
        Delivery(upgraded, upgraded.note),
        Delivery(activated, activated.note + " — delivered late, after the upgrade"),
        Delivery(paid, paid.note),
        Delivery(paid, paid.note + " — delivered again (provider retry)"),
        Delivery(refunded, refunded.note),
        Delivery(credited, credited.note),
        Delivery(cb_changed, cb_changed.note),
    ]
    return Story(
        tag=tag,
        customer_id=cus,
        subscription_id=sub,
        chargebee_subscription_id=cb_sub,
        deliveries=tuple(sends),
        stripe_api_events=tuple(sorted(events, key=lambda e: e.created, reverse=True)),
        withheld=withheld,
        redelivered=paid,
        late=activated,
    )


def stripe_signature(secret: str, timestamp: int, body: bytes) -> str:
    """The ``Stripe-Signature`` header value Stripe would send for ``body`` at ``timestamp``."""
    mac = hmac.new(secret.encode(), f"{timestamp}.".encode() + body, hashlib.sha256).hexdigest()
    return f"t={timestamp},v1={mac}"


def basic_auth(user_password: str) -> str:
    return "Basic " + base64.b64encode(user_password.encode()).decode()
