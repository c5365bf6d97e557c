"""Side-by-side comparison of linked pairs: every mismatch kind detected, every legitimate
difference explained, exact matches accepted (pure, tables of (source, target, context))."""

from __future__ import annotations

from typing import Any

import msgspec
import pytest

from processors.coexist.compare import (
    Context,
    Tolerances,
    compare_customers,
    compare_subscriptions,
    verdict_of,
)
from processors.coexist.model import Ref
from processors.coexist.prices import PriceMap
from processors.model import Customer, Discount, Subscription, SubscriptionItem
from processors.mrr import monthly_amount

DAY = 86_400
CUT = 1_800_000_000 - 1_800_000_000 % DAY  # midnight UTC: a period boundary
SRC = Ref(provider="chargebee", account="acme", id="AzZ1")
TGT = Ref(provider="stripe", account="acct_1", id="sub_1")
PRICES = PriceMap.of([("chargebee", "team-EUR-monthly", "stripe", "price_team")])


def item(
    price: str, qty: int = 1, amount: int = 9_900, interval: str = "month", count: int = 1
) -> SubscriptionItem:
    return SubscriptionItem(
        price_id=price,
        quantity=qty,
        unit_amount=amount,
        interval=interval,  # type: ignore[arg-type]
        interval_count=count,
    )


def sub(**fields: Any) -> Subscription:
    base: dict[str, Any] = {
        "customer_id": "c",
        "status": "active",
        "currency": "EUR",
        "items": (item("team-EUR-monthly"),),
        "current_period_start": CUT - 30 * DAY,
        "current_period_end": CUT - 1,  # Chargebee's terms end at 23:59:59
    }
    base.update(fields)
    s = Subscription(**base)
    return msgspec.structs.replace(s, mrr=monthly_amount(s.status, s.items))


def tgt(**fields: Any) -> Subscription:
    base: dict[str, Any] = {
        "status": "active",
        "items": (item("price_team"),),
        "current_period_end": CUT,
    }
    base.update(fields)
    return sub(**base)


BEFORE = Context(now=CUT - 7 * DAY, authority="source", since=None, cutover_at=CUT)
UNPLANNED = Context(now=CUT - 7 * DAY, authority="source")
AFTER = Context(now=CUT + 3 * DAY, authority="target", since=CUT, cutover_at=CUT)
IN_GRACE = Context(now=CUT + 3600, authority="target", since=CUT, cutover_at=CUT)
ROLLED_BACK = Context(now=CUT + 3 * DAY, authority="source", since=CUT + DAY, cutover_at=CUT + DAY)
WAITING = {"status": "trialing", "trial_end": CUT}


def kinds(
    s: Subscription | None, t: Subscription | None, ctx: Context, **kw: Any
) -> dict[str, str]:
    checks = compare_subscriptions(
        s, t, source_ref=SRC, target_ref=TGT, prices=kw.get("prices", PRICES), ctx=ctx
    )
    return {c.kind: c.verdict for c in checks}


# (name, source, target, context, expected {kind: verdict})
TABLE: list[tuple[str, Subscription | None, Subscription | None, Context, dict[str, str]]] = [
    # matches and legitimate differences
    (
        "target waits with a trial to the cut-over",
        sub(),
        tgt(**WAITING),
        BEFORE,
        {"status": "explained", "trial_end": "explained"},
    ),
    (
        "after the cut-over the source is canceled",
        sub(status="canceled"),
        tgt(current_period_end=CUT + 30 * DAY),
        AFTER,
        {"status": "explained", "period_end": "explained"},
    ),
    (
        "after the cut-over the source ends with its period",
        sub(cancel_at_period_end=True),
        tgt(current_period_end=CUT + 30 * DAY),
        AFTER,
        {"cancel_at_period_end": "explained", "period_end": "explained"},
    ),
    ("both billing within the grace period", sub(), tgt(), IN_GRACE, {"status": "explained"}),
    (
        "rolled back: the target is canceled",
        sub(current_period_end=CUT + 29 * DAY),
        tgt(status="canceled", current_period_end=CUT + DAY),
        ROLLED_BACK,
        {"status": "explained", "period_end": "explained"},
    ),
    (
        "source set to end at the planned cut-over",
        sub(cancel_at_period_end=True),
        tgt(**WAITING),
        BEFORE,
        {"status": "explained", "trial_end": "explained", "cancel_at_period_end": "explained"},
    ),
    (
        "period ends a second apart",
        sub(status="canceled"),
        tgt(current_period_end=CUT),
        AFTER,
        {"status": "explained"},
    ),
    (
        "a year is twelve months",
        sub(items=(item("team-EUR-monthly", interval="year", amount=118_800),)),
        tgt(items=(item("price_team", interval="month", count=12, amount=118_800),), **WAITING),
        BEFORE,
        {"status": "explained", "trial_end": "explained"},
    ),
    (
        "same price id needs no map entry",
        sub(items=(item("p1"),)),
        tgt(items=(item("p1"),), **WAITING),
        BEFORE,
        {"status": "explained", "trial_end": "explained"},
    ),
    (
        "equal discounts",
        sub(discounts=(Discount(id="a", percent_off=1000),)),
        tgt(discounts=(Discount(id="b", percent_off=1000),), **WAITING),
        BEFORE,
        {"status": "explained", "trial_end": "explained"},
    ),
    (
        "bare coupons compare by number",
        sub(discounts=(Discount(id="a"),)),
        tgt(discounts=(Discount(id="b", amount_off=5),), **WAITING),
        BEFORE,
        {"status": "explained", "trial_end": "explained"},
    ),
    # mismatches
    ("target missing", sub(), None, BEFORE, {"missing_target": "mismatch"}),
    ("source missing", None, tgt(), BEFORE, {"missing_source": "mismatch"}),
    ("both billing before the cut-over", sub(), tgt(), BEFORE, {"status": "mismatch"}),
    (
        "both billing after the grace period",
        sub(),
        tgt(current_period_end=CUT + 30 * DAY),
        AFTER,
        {"status": "mismatch", "period_end": "mismatch"},
    ),
    (
        "target canceled before any cut-over",
        sub(),
        tgt(status="canceled"),
        UNPLANNED,
        {"status": "mismatch"},
    ),
    (
        "past due on one side",
        sub(status="past_due"),
        tgt(status="active"),
        AFTER,
        {"status": "mismatch"},
    ),
    (
        "currency",
        sub(),
        tgt(currency="USD", **WAITING),
        BEFORE,
        {"status": "explained", "trial_end": "explained", "currency": "mismatch"},
    ),
    (
        "unmapped price",
        sub(items=(item("other"),)),
        tgt(**WAITING),
        BEFORE,
        {
            "status": "explained",
            "trial_end": "explained",
            "price_unmapped": "mismatch",
            "price": "mismatch",
        },
    ),
    (
        "mapped to a price the target lacks",
        sub(),
        tgt(items=(item("price_pro"),), **WAITING),
        BEFORE,
        {"status": "explained", "trial_end": "explained", "price": "mismatch"},
    ),
    (
        "quantity",
        sub(items=(item("team-EUR-monthly", qty=3),)),
        tgt(items=(item("price_team", qty=2),), **WAITING),
        BEFORE,
        {
            "status": "explained",
            "trial_end": "explained",
            "quantity": "mismatch",
            "mrr": "mismatch",
        },
    ),
    (
        "amount",
        sub(),
        tgt(items=(item("price_team", amount=9_000),), **WAITING),
        BEFORE,
        {"status": "explained", "trial_end": "explained", "amount": "mismatch", "mrr": "mismatch"},
    ),
    (
        "interval",
        sub(),
        tgt(items=(item("price_team", interval="year", amount=9_900),), **WAITING),
        BEFORE,
        {
            "status": "explained",
            "trial_end": "explained",
            "interval": "mismatch",
            "mrr": "mismatch",
        },
    ),
    (
        "period end outside the cut-over day",
        sub(current_period_end=CUT + 5 * DAY),
        tgt(current_period_end=CUT + 9 * DAY, trial_end=CUT, status="trialing"),
        BEFORE,
        {"status": "explained", "trial_end": "explained", "period_end": "mismatch"},
    ),
    (
        "trial end",
        sub(),
        tgt(status="trialing", trial_end=CUT + 10 * DAY),
        BEFORE,
        {"status": "explained", "trial_end": "mismatch"},
    ),
    (
        "cancel at period end on the target before the cut-over",
        sub(),
        tgt(cancel_at_period_end=True, **WAITING),
        BEFORE,
        {"status": "explained", "trial_end": "explained", "cancel_at_period_end": "mismatch"},
    ),
    (
        "discount",
        sub(discounts=(Discount(id="a", percent_off=1000),)),
        tgt(**WAITING),
        BEFORE,
        {"status": "explained", "trial_end": "explained", "discount": "mismatch"},
    ),
    (
        "discount value",
        sub(discounts=(Discount(id="a", amount_off=500, currency="EUR"),)),
        tgt(discounts=(Discount(id="b", amount_off=400, currency="EUR"),), **WAITING),
        BEFORE,
        {"status": "explained", "trial_end": "explained", "discount": "mismatch"},
    ),
]


@pytest.mark.parametrize(
    ("name", "source", "target", "ctx", "expected"), TABLE, ids=[t[0] for t in TABLE]
)
def test_compare(
    name: str,
    source: Subscription | None,
    target: Subscription | None,
    ctx: Context,
    expected: dict[str, str],
) -> None:
    assert kinds(source, target, ctx) == expected


def test_identical_pair_matches() -> None:
    s = sub(items=(item("p1"),), current_period_end=CUT + 9 * DAY)
    ctx = Context(
        now=CUT + 3 * DAY, authority="target", since=CUT - 30 * DAY, cutover_at=CUT - 30 * DAY
    )
    assert compare_subscriptions(
        s,
        msgspec.structs.replace(s, status="canceled"),
        source_ref=SRC,
        target_ref=TGT,
        prices=PriceMap(),
        ctx=ctx,
    )
    checks = compare_subscriptions(
        msgspec.structs.replace(s, status="canceled"),
        s,
        source_ref=SRC,
        target_ref=TGT,
        prices=PriceMap(),
        ctx=ctx,
    )
    assert [c.kind for c in checks] == ["status"] and verdict_of(checks) == "explained"


def test_amount_tolerance_is_integer_minor_units() -> None:
    ctx = msgspec.structs.replace(BEFORE, tolerances=Tolerances(amount_minor=1))
    got = kinds(
        sub(items=(item("team-EUR-monthly", amount=11_667),)),
        tgt(items=(item("price_team", amount=11_666),), **WAITING),
        ctx,
    )
    assert got == {"status": "explained", "trial_end": "explained"}


def test_verdict_is_the_worst_check() -> None:
    checks = compare_subscriptions(
        sub(),
        tgt(currency="USD", **WAITING),
        source_ref=SRC,
        target_ref=TGT,
        prices=PRICES,
        ctx=BEFORE,
    )
    assert verdict_of(checks) == "mismatch"
    assert verdict_of([]) == "match"


def test_customers_are_checked_for_presence() -> None:
    assert compare_customers(Customer(), Customer()) == []
    assert [c.kind for c in compare_customers(None, Customer())] == ["missing_source"]
    assert [c.kind for c in compare_customers(Customer(), None)] == ["missing_target"]
