"""Billing state for provider-migration tests, from real payloads with ids and fields rewritten.

Chargebee events come from the derived fixtures (tests/fixtures/chargebee), Stripe events from
../shared/fixtures/stripe; every builder returns an event dict, :func:`apply_events` stores them
in the audit log and applies them with the processors' own batch path.
"""

from __future__ import annotations

import copy
import uuid
from typing import Any

import asyncpg

from processors.service import process_batch
from tests.integration.processors_helpers import append, load_chargebee, load_stripe, new_delivery

ACCOUNTS = {"stripe": "acct_test", "chargebee": "acme-test"}
DAY = 86_400
# A midnight UTC a few weeks after "now" in these tests' own timeline.
CUT = 1_800_000_000 - 1_800_000_000 % DAY


def tag() -> str:
    return uuid.uuid4().hex[:8]


def cb_subscription(
    *,
    customer_id: str,
    sub_id: str,
    version: int,
    price: str = "team-EUR-monthly",
    amount: int = 9_900,
    qty: int = 1,
    currency: str = "EUR",
    status: str = "active",
    term_start: int = CUT - 30 * DAY,
    term_end: int = CUT - 1,
    trial_end: int | None = None,
    meta: dict[str, Any] | None = None,
    event_type: str = "subscription_created",
) -> dict[str, Any]:
    ev = copy.deepcopy(load_chargebee("subscription_created"))
    ev["id"] = f"ev_{uuid.uuid4().hex[:16]}"
    ev["event_type"] = event_type
    ev["occurred_at"] = version // 1000
    content = ev["content"]
    s = content["subscription"]
    s.update(
        id=sub_id,
        customer_id=customer_id,
        status=status,
        currency_code=currency,
        current_term_start=term_start,
        current_term_end=term_end,
        resource_version=version,
        created_at=term_start,
    )
    if trial_end is not None:
        s["trial_end"] = trial_end
    if meta is not None:
        s["meta_data"] = meta
    s["subscription_items"] = [
        dict(
            s["subscription_items"][0],
            item_price_id=price,
            quantity=qty,
            unit_price=amount,
            amount=amount * qty,
        )
    ]
    content["customer"].update(id=customer_id, resource_version=version - 1)
    content.pop("invoice", None)
    content.pop("card", None)
    return ev


def cb_customer(*, customer_id: str, version: int) -> dict[str, Any]:
    ev = copy.deepcopy(load_chargebee("customer_created"))
    ev["id"] = f"ev_{uuid.uuid4().hex[:16]}"
    ev["occurred_at"] = version // 1000
    ev["content"]["customer"].update(id=customer_id, resource_version=version)
    return ev


def cb_payment(
    *,
    customer_id: str,
    sub_id: str,
    invoice_id: str,
    txn_id: str,
    version: int,
    amount: int = 9_900,
    currency: str = "EUR",
    date_from: int = CUT - 30 * DAY,
    date_to: int = CUT - 1,
) -> dict[str, Any]:
    """A Chargebee ``payment_succeeded``: the transaction and the paid invoice it settles."""
    ev = copy.deepcopy(load_chargebee("payment_succeeded"))
    ev["id"] = f"ev_{uuid.uuid4().hex[:16]}"
    ev["occurred_at"] = version // 1000
    c = ev["content"]
    c["transaction"].update(
        id=txn_id,
        customer_id=customer_id,
        subscription_id=sub_id,
        amount=amount,
        currency_code=currency,
        resource_version=version,
        date=version // 1000,
        linked_invoices=[dict(c["transaction"]["linked_invoices"][0], invoice_id=invoice_id)],
    )
    c["invoice"].update(
        id=invoice_id,
        customer_id=customer_id,
        subscription_id=sub_id,
        status="paid",
        total=amount,
        amount_paid=amount,
        amount_due=0,
        currency_code=currency,
        resource_version=version,
        line_items=[
            dict(c["invoice"]["line_items"][0], date_from=date_from, date_to=date_to, amount=amount)
        ],
    )
    c["customer"].update(id=customer_id, resource_version=version - 1)
    c.pop("subscription", None)
    return ev


def stripe_customer(
    *, cus_id: str, created: int, metadata: dict[str, str] | None = None
) -> dict[str, Any]:
    ev = copy.deepcopy(load_stripe("customer_updated.json"))
    ev["id"] = f"evt_{uuid.uuid4().hex[:16]}"
    ev["type"] = "customer.created"
    ev["created"] = created
    ev["data"]["object"].update(id=cus_id, created=created, metadata=metadata or {})
    ev["data"].pop("previous_attributes", None)
    return ev


def stripe_subscription(
    *,
    sub_id: str,
    cus_id: str,
    created: int,
    price: str = "price_team",
    amount: int = 9_900,
    qty: int = 1,
    currency: str = "eur",
    status: str = "active",
    period_start: int = CUT - 30 * DAY,
    period_end: int = CUT,
    trial_end: int | None = None,
    cancel_at_period_end: bool = False,
    metadata: dict[str, str] | None = None,
    event_type: str = "customer.subscription.created",
) -> dict[str, Any]:
    ev = copy.deepcopy(load_stripe("subscription_created.json"))
    ev["id"] = f"evt_{uuid.uuid4().hex[:16]}"
    ev["type"] = event_type
    ev["created"] = created
    o = ev["data"]["object"]
    item = copy.deepcopy(o["items"]["data"][0])
    item["quantity"] = qty
    item["price"].update(id=price, unit_amount=amount, currency=currency)
    item["plan"].update(id=price, amount=amount, currency=currency)
    o.update(
        id=sub_id,
        customer=cus_id,
        created=created,
        status=status,
        current_period_start=period_start,
        current_period_end=period_end,
        trial_end=trial_end,
        cancel_at_period_end=cancel_at_period_end,
        metadata=metadata or {},
    )
    o["items"]["data"] = [item]
    return ev


def stripe_invoice_paid(
    *,
    inv_id: str,
    cus_id: str,
    sub_id: str,
    created: int,
    amount: int = 9_900,
    currency: str = "eur",
    period_start: int = CUT - 30 * DAY,
    period_end: int = CUT,
    charge: str | None = None,
) -> dict[str, Any]:
    ev = copy.deepcopy(load_stripe("invoice_paid.json"))
    ev["id"] = f"evt_{uuid.uuid4().hex[:16]}"
    ev["created"] = created
    o = ev["data"]["object"]
    o.update(
        id=inv_id,
        customer=cus_id,
        subscription=sub_id,
        created=created,
        currency=currency,
        total=amount,
        amount_paid=amount,
        amount_due=amount,
        status="paid",
        charge=charge,
    )
    o["lines"]["data"] = [
        dict(o["lines"]["data"][0], period={"start": period_start, "end": period_end})
    ]
    return ev


def stripe_charge_refunded(
    *, charge_id: str, cus_id: str, inv_id: str, created: int, amount: int = 9_900
) -> dict[str, Any]:
    ev = copy.deepcopy(load_stripe("charge_refunded.json"))
    ev["id"] = f"evt_{uuid.uuid4().hex[:16]}"
    ev["created"] = created
    ev["data"]["object"].update(
        id=charge_id,
        customer=cus_id,
        invoice=inv_id,
        amount=amount,
        amount_refunded=amount,
        currency="eur",
        created=created,
        status="succeeded",
    )
    return ev


async def apply_events(pool: asyncpg.Pool, events: list[tuple[str, dict[str, Any]]]) -> list[int]:
    """Store the events in the audit log and apply them (the processors' batch path)."""
    appended = await append(pool, [new_delivery(p, e, account=ACCOUNTS[p]) for p, e in events])
    ids = [a.id for a in appended]
    async with pool.acquire() as conn:
        outcomes = await process_batch(conn, ids)
    bad = {i: o for i, o in outcomes.items() if o not in ("applied", "stale", "duplicate")}
    assert not bad, bad
    return ids


def links_csv(rows: list[dict[str, str]]) -> bytes:
    cols = [
        "cohort",
        "kind",
        "source_provider",
        "source_id",
        "target_provider",
        "target_id",
        "billing_account",
    ]
    lines = [",".join(cols)] + [",".join(r.get(c, "") for c in cols) for r in rows]
    return ("\n".join(lines) + "\n").encode()


def pair_rows(
    cohort: str, cb_customer: str, cus: str, cb_sub: str | None, sub: str | None
) -> list[dict[str, str]]:
    """A customer link (and its subscription's) Chargebee -> Stripe."""
    rows = [
        {
            "cohort": cohort,
            "kind": "customer",
            "source_provider": "chargebee",
            "source_id": cb_customer,
            "target_provider": "stripe",
            "target_id": cus,
        }
    ]
    if cb_sub and sub:
        rows.append(
            {
                "cohort": cohort,
                "kind": "subscription",
                "source_provider": "chargebee",
                "source_id": cb_sub,
                "target_provider": "stripe",
                "target_id": sub,
            }
        )
    return rows
