"""Pure transitions and MRR, from tables: (prior state, update) -> expected."""

from __future__ import annotations

from typing import Any

import pytest

from processors.model import ObjectUpdate, StoredObject, Subscription, SubscriptionItem
from processors.mrr import monthly_amount
from processors.transitions import apply, classify, diff


def item(
    price: str = "p1", qty: int = 1, amount: int = 1000, interval: str = "month", count: int = 1
) -> SubscriptionItem:
    return SubscriptionItem(
        price_id=price,
        quantity=qty,
        unit_amount=amount,
        interval=interval,
        interval_count=count,  # type: ignore[arg-type]
    )


def sub(
    status: str = "active", items: tuple[SubscriptionItem, ...] = (), **kw: Any
) -> Subscription:
    items = items or (item(),)
    return Subscription(
        status=status, items=items, currency="USD", mrr=monthly_amount(status, items), **kw
    )


def stored(body: Subscription, version: str = "v05", deleted: bool = False) -> StoredObject:
    return StoredObject(
        object_type="subscription",
        provider="stripe",
        account="a",
        id="sub_1",
        version=version,
        deleted=deleted,
        body=body,
        last_delivery_id=1,
    )


def upd(
    body: Subscription, version: str, *, creates: bool = False, related: bool = False
) -> ObjectUpdate:
    return ObjectUpdate(
        object_type="subscription",
        object_id="sub_1",
        version=version,
        creates=creates,
        related=related,
        body=body,
    )


MRR_TABLE = [
    ("active", [item(amount=1000)], 1000),
    ("active", [item(amount=1000, qty=3)], 3000),
    ("active", [item(amount=12000, interval="year")], 1000),
    ("active", [item(amount=1000, interval="year")], 83),  # 83.33 -> 83
    ("active", [item(amount=1002, interval="year")], 84),  # 83.5 -> 84 (half away from zero)
    ("active", [item(amount=100, interval="week")], 433),  # 100*52/12 = 433.33
    ("active", [item(amount=10, interval="day")], 304),  # 10*365/12 = 304.17
    ("active", [item(amount=3000, count=3)], 1000),  # quarterly
    (
        "active",
        [item(amount=1000, interval="year"), item(price="p2", amount=1000, interval="year")],
        167,
    ),  # exact sum, rounded once
    ("past_due", [item(amount=500)], 500),
    ("trialing", [item(amount=500)], 0),
    ("canceled", [item(amount=500)], 0),
    ("paused", [item(amount=500)], 0),
]


@pytest.mark.parametrize(("status", "items", "expected"), MRR_TABLE)
def test_mrr(status: str, items: list[SubscriptionItem], expected: int) -> None:
    assert monthly_amount(status, items) == expected
    assert isinstance(monthly_amount(status, items), int)


def test_new_object_from_creation_event_has_no_anomaly() -> None:
    t = apply(None, upd(sub(), "v01", creates=True), provider="stripe", account="a", delivery_id=7)
    assert t.outcome == "applied"
    assert t.anomalies == ()
    assert t.state.last_delivery_id == 7
    assert t.change["status"] == [None, "active"]
    assert t.subscription_change is not None
    assert t.subscription_change.kind == "created"
    assert t.subscription_change.mrr_delta == 1000


def test_new_object_from_a_later_event_is_a_missing_predecessor() -> None:
    t = apply(None, upd(sub(), "v03"), provider="stripe", account="a", delivery_id=7)
    assert t.outcome == "applied"
    assert [a.kind for a in t.anomalies] == ["missing_predecessor"]


def test_related_resources_raise_no_anomalies() -> None:
    t = apply(None, upd(sub(), "v03", related=True), provider="stripe", account="a", delivery_id=7)
    assert t.anomalies == ()
    t = apply(
        stored(sub()),
        upd(sub(), "v01", related=True),
        provider="stripe",
        account="a",
        delivery_id=8,
    )
    assert t.outcome == "stale"
    assert t.anomalies == ()


def test_older_event_is_stale_and_out_of_order() -> None:
    prior = stored(sub(), "v05")
    t = apply(
        prior, upd(sub(status="canceled"), "v04"), provider="stripe", account="a", delivery_id=9
    )
    assert t.outcome == "stale"
    assert t.state == prior
    assert t.change == {}
    assert t.subscription_change is None
    (a,) = t.anomalies
    assert (a.kind, a.detail) == ("out_of_order", {"version": "v04", "stored_version": "v05"})


def test_same_version_is_unchanged() -> None:
    prior = stored(sub(), "v05")
    t = apply(prior, upd(sub(), "v05"), provider="stripe", account="a", delivery_id=9)
    assert (t.outcome, t.state, t.anomalies) == ("unchanged", prior, ())


def test_newer_event_replaces_state_with_field_diff() -> None:
    prior = stored(sub(), "v05")
    t = apply(
        prior,
        upd(sub(cancel_at_period_end=True), "v06"),
        provider="stripe",
        account="a",
        delivery_id=9,
    )
    assert t.outcome == "applied"
    assert t.change == {"cancel_at_period_end": [False, True]}
    assert t.state.version == "v06"


CLASSIFY = [
    (sub(), sub(items=(item(amount=2000),)), "upgraded", 1000),
    (sub(), sub(items=(item(amount=500),)), "downgraded", -500),
    (sub(), sub(items=(item(price="p2", amount=5000),)), "upgraded", 4000),
    (sub(), sub(items=(item(price="p2", amount=300),)), "downgraded", -700),
    (sub(), sub(items=(item(price="p2", amount=1000),)), "plan_switched", 0),
    (sub(), sub(items=(item(qty=4),)), "quantity_changed", 3000),
    (sub(), sub(status="canceled"), "canceled", -1000),
    (sub(), sub(cancel_at_period_end=True), "canceled", 0),
    (sub(cancel_at_period_end=True), sub(), "reactivated", 0),
    (sub(status="canceled"), sub(), "reactivated", 1000),
    (sub(), sub(status="paused"), "paused", -1000),
    (sub(status="paused"), sub(), "resumed", 1000),
    (sub(current_period_start=1), sub(current_period_start=2), "renewed", 0),
    (sub(), sub(), None, 0),
]


@pytest.mark.parametrize(("old", "new", "kind", "delta"), CLASSIFY)
def test_classify(old: Subscription, new: Subscription, kind: str | None, delta: int) -> None:
    change = classify(stored(old), stored(new, "v06"))
    if kind is None:
        assert change is None
        return
    assert change is not None
    assert change.kind == kind
    assert change.mrr_delta == delta


def test_diff_of_unchanged_state_is_empty() -> None:
    assert diff(stored(sub()), stored(sub(), "v09")) == {}
