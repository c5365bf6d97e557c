"""The demo's migration story: three Chargebee customers moving to Stripe (pure).

Cohort ``demo-<tag>`` plans its cut-over for the next midnight UTC (a period boundary: every
Chargebee term ends there). Each customer exists in both providers, and the story is what
verification and the coexistence alerts find:

- **Grace** moved with a matching subscription: Team at 99.00 EUR on both sides, Stripe in a
  trial that ends at the cut-over;
- **Linus** moved at the wrong price (89.00 EUR on Stripe): verification finds it;
- **Marie** is charged by both: Chargebee collected her current term, and Stripe charged her
  too for a period that overlaps it: the double-billing alert.

Ids carry the run tag, like the main story, so the demo can run again on the same instance.
"""

from __future__ import annotations

import copy
import importlib.resources
from dataclasses import dataclass
from typing import Any

import msgspec

from ledgerhook.demo.story import Event

__all__ = ["Customer", "MigrationStory", "build_migration_story", "links_csv", "prices_csv"]

DAY = 86_400
TEAM = 9_900
CURRENCY = "EUR"


@dataclass(frozen=True, slots=True)
class Customer:
    name: str
    chargebee_customer: str
    chargebee_subscription: str
    stripe_customer: str
    stripe_subscription: str
    stripe_amount: int


@dataclass(frozen=True, slots=True)
class MigrationStory:
    tag: str
    cohort: str
    cutover_at: int
    chargebee_price: str
    stripe_price: str
    matching: Customer
    mismatched: Customer
    double_billed: Customer
    events: tuple[Event, ...]

    @property
    def customers(self) -> tuple[Customer, ...]:
        return (self.matching, self.mismatched, self.double_billed)


# Small helpers of its own rather than the main story's private ones: the two stories evolve
# separately.
def _fixture(provider: str, name: str) -> dict[str, Any]:
    path = importlib.resources.files("ledgerhook.demo") / "fixtures" / provider / name
    data: dict[str, Any] = msgspec.json.decode(path.read_bytes())
    return data


def _stripe(
    event_id: str, event_type: str, at: int, *, template: str, obj: dict[str, Any], note: str
) -> Event:
    data = _fixture("stripe", template)
    data.update(
        id=event_id, type=event_type, created=at, request={"id": None, "idempotency_key": None}
    )
    data["data"] = {"object": obj}
    return Event("stripe", event_id, event_type, at, obj["id"], msgspec.json.encode(data), note)


def _stripe_item(sub_id: str, price: str, amount: int, at: int) -> dict[str, Any]:
    template = _fixture("stripe", "subscription_updated.json")["data"]["object"]
    item: dict[str, Any] = copy.deepcopy(template["items"]["data"][0])
    item.update(id=f"si_{sub_id.removeprefix('sub_')}", subscription=sub_id, created=at, quantity=1)
    for key in ("plan", "price"):
        item[key].update(id=price, currency=CURRENCY.lower(), product="prod_demo_team")
    item["plan"].update(amount=amount, amount_decimal=str(amount))
    item["price"].update(unit_amount=amount, unit_amount_decimal=str(amount))
    return item


def _customer(tag: str, name: str, stripe_amount: int) -> Customer:
    key = name.lower()
    return Customer(
        name=name,
        chargebee_customer=f"demo{tag}{key}",
        chargebee_subscription=f"demo{tag}{key}sub",
        stripe_customer=f"cus_demo{tag}{key}",
        stripe_subscription=f"sub_demo{tag}{key}",
        stripe_amount=stripe_amount,
    )


def _chargebee(
    tag: str,
    n: int,
    event_type: str,
    at: int,
    *,
    content: dict[str, Any],
    note: str,
    object_id: str,
) -> Event:
    ev = copy.deepcopy(_fixture("chargebee", "event_subscription_created_retrieve.json")["event"])
    ev.update(id=f"ev_demo{tag}_m{n:02d}", event_type=event_type, occurred_at=at, content=content)
    return Event("chargebee", ev["id"], event_type, at, object_id, msgspec.json.encode(ev), note)


def build_migration_story(tag: str, now: int) -> MigrationStory:
    cut = now - now % DAY + DAY
    term = (cut - 30 * DAY, cut - 1)  # Chargebee terms end at 23:59:59
    cb_price, st_price = f"team-EUR-monthly-{tag}", f"price_demo_team_{tag}"
    people = (
        _customer(tag, "Grace", TEAM),
        _customer(tag, "Linus", 8_900),
        _customer(tag, "Marie", TEAM),
    )
    template = _fixture("chargebee", "event_subscription_created_retrieve.json")["event"]
    events: list[Event] = []
    n = 0

    def next_n() -> int:
        nonlocal n
        n += 1
        return n

    t0 = now - 15 * 60
    for i, p in enumerate(people):
        at = t0 + i
        rv = at * 1000
        content = copy.deepcopy(template["content"])
        content.pop("card", None)
        content.pop("invoice", None)
        content["customer"].update(
            id=p.chargebee_customer, first_name=p.name, resource_version=rv, created_at=term[0]
        )
        content["subscription"].update(
            id=p.chargebee_subscription,
            customer_id=p.chargebee_customer,
            currency_code=CURRENCY,
            status="active",
            current_term_start=term[0],
            current_term_end=term[1],
            next_billing_at=cut,
            created_at=term[0],
            resource_version=rv,
        )
        item = content["subscription"]["subscription_items"][0]
        item.update(
            item_price_id=cb_price,
            quantity=1,
            unit_price=TEAM,
            amount=TEAM,
            unit_price_in_decimal=f"{TEAM / 100:.2f}",
            amount_in_decimal=f"{TEAM / 100:.2f}",
        )
        events.append(
            _chargebee(
                tag,
                next_n(),
                "subscription_created",
                at,
                content=content,
                note=f"{p.name} on Chargebee: Team, 99.00 EUR/month",
                object_id=p.chargebee_subscription,
            )
        )

    for i, p in enumerate(people):
        at = t0 + 60 + i
        customer = _fixture("stripe", "customer_updated.json")["data"]["object"]
        customer.update(
            id=p.stripe_customer,
            created=at,
            email=f"{p.name.lower()}@example.com",
            name=p.name,
            currency=CURRENCY.lower(),
            metadata={"chargebee_customer_id": p.chargebee_customer},
        )
        events.append(
            _stripe(
                f"evt_demo{tag}_m{next_n():02d}",
                "customer.created",
                at,
                template="customer_updated.json",
                obj=customer,
                note=f"{p.name} created on Stripe by the migration",
            )
        )
        sub: dict[str, Any] = copy.deepcopy(
            _fixture("stripe", "subscription_created.json")["data"]["object"]
        )
        item = _stripe_item(p.stripe_subscription, st_price, p.stripe_amount, at)
        sub.update(
            id=p.stripe_subscription,
            customer=p.stripe_customer,
            created=at,
            start_date=at,
            status="trialing",
            trial_start=at,
            trial_end=cut,
            current_period_start=at,
            current_period_end=cut,
            billing_cycle_anchor=cut,
            plan=item["plan"],
            quantity=1,
            metadata={"chargebee_subscription_id": p.chargebee_subscription},
            items={"object": "list", "data": [item], "has_more": False, "total_count": 1},
            canceled_at=None,
            ended_at=None,
        )
        price = "89.00" if p.stripe_amount != TEAM else "99.00"
        events.append(
            _stripe(
                f"evt_demo{tag}_m{next_n():02d}",
                "customer.subscription.created",
                at,
                template="subscription_created.json",
                obj=sub,
                note=f"{p.name}'s subscription on Stripe: {price} EUR/month, trial until the cut-over",
            )
        )

    # Marie: Chargebee collects her current term, and Stripe charges her again for a period
    # starting today, inside that term.
    m = people[2]
    at = t0 + 120
    content = copy.deepcopy(template["content"])
    content.pop("card", None)
    content.pop("subscription", None)
    content["customer"].update(
        id=m.chargebee_customer, first_name=m.name, resource_version=at * 1000
    )
    content["invoice"].update(
        id=f"demo{tag}inv",
        customer_id=m.chargebee_customer,
        subscription_id=m.chargebee_subscription,
        status="paid",
        total=TEAM,
        amount_paid=TEAM,
        amount_due=0,
        currency_code=CURRENCY,
        paid_at=at,
        resource_version=at * 1000,
    )
    content["invoice"]["line_items"] = [
        dict(
            content["invoice"]["line_items"][0],
            date_from=term[0],
            date_to=term[1],
            amount=TEAM,
            unit_amount=TEAM,
            subscription_id=m.chargebee_subscription,
            customer_id=m.chargebee_customer,
        )
    ]
    content["transaction"] = {
        "id": f"txn_demo{tag}",
        "customer_id": m.chargebee_customer,
        "subscription_id": m.chargebee_subscription,
        "type": "payment",
        "status": "success",
        "amount": TEAM,
        "currency_code": CURRENCY,
        "date": at,
        "resource_version": at * 1000,
        "deleted": False,
        "object": "transaction",
        "linked_invoices": [{"invoice_id": f"demo{tag}inv", "applied_amount": TEAM}],
        "linked_refunds": [],
    }
    events.append(
        _chargebee(
            tag,
            next_n(),
            "payment_succeeded",
            at,
            content=content,
            note="Chargebee collects Marie's term: 99.00 EUR",
            object_id=f"txn_demo{tag}",
        )
    )
    invoice = _fixture("stripe", "invoice_paid.json")["data"]["object"]
    invoice.update(
        id=f"in_demo{tag}m",
        customer=m.stripe_customer,
        subscription=m.stripe_subscription,
        currency=CURRENCY.lower(),
        created=at + 60,
        amount_due=TEAM,
        amount_paid=TEAM,
        amount_remaining=0,
        subtotal=TEAM,
        total=TEAM,
        status="paid",
        paid=True,
        number=f"DEMO-{tag}-M001",
        period_start=now - now % DAY,
        period_end=now - now % DAY + 30 * DAY,
        charge=None,
        payment_intent=None,
        hosted_invoice_url=None,
        invoice_pdf=None,
    )
    invoice["lines"] = {"object": "list", "data": [], "has_more": False, "total_count": 0}
    events.append(
        _stripe(
            f"evt_demo{tag}_m{next_n():02d}",
            "invoice.paid",
            at + 60,
            template="invoice_paid.json",
            obj=invoice,
            note="Stripe charges Marie too: 99.00 EUR for a period inside that term",
        )
    )
    return MigrationStory(
        tag=tag,
        cohort=f"demo-{tag}",
        cutover_at=cut,
        chargebee_price=cb_price,
        stripe_price=st_price,
        matching=people[0],
        mismatched=people[1],
        double_billed=people[2],
        events=tuple(events),
    )


def links_csv(story: MigrationStory) -> bytes:
    rows = ["cohort,kind,source_provider,source_id,target_provider,target_id"]
    for p in story.customers:
        rows.append(
            f"{story.cohort},customer,chargebee,{p.chargebee_customer},stripe,{p.stripe_customer}"
        )
        rows.append(
            f"{story.cohort},subscription,chargebee,{p.chargebee_subscription},stripe,{p.stripe_subscription}"
        )
    return ("\n".join(rows) + "\n").encode()


def prices_csv(story: MigrationStory) -> bytes:
    return (
        "source_provider,source_price,target_provider,target_price\n"
        f"chargebee,{story.chargebee_price},stripe,{story.stripe_price}\n"
    ).encode()
