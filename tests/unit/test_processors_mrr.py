"""MRR in integer arithmetic equals the rational definition (a year is 12 months, a week 52/12
of a month, a day 365/12), rounded once half away from zero."""

from __future__ import annotations

from fractions import Fraction

import pytest
from hypothesis import given
from hypothesis import strategies as st

from processors.model import SubscriptionItem
from processors.mrr import monthly_amount

_PER_MONTH = {
    "month": Fraction(1),
    "year": Fraction(1, 12),
    "week": Fraction(52, 12),
    "day": Fraction(365, 12),
}


def reference(items: list[SubscriptionItem]) -> int:
    total = sum(
        (
            Fraction(i.unit_amount * i.quantity) * _PER_MONTH[i.interval] / max(i.interval_count, 1)
            for i in items
        ),
        Fraction(0),
    )
    whole, rest = divmod(abs(total.numerator), total.denominator)
    if 2 * rest >= total.denominator:
        whole += 1
    return whole if total >= 0 else -whole


items = st.lists(
    st.builds(
        SubscriptionItem,
        price_id=st.just("p"),
        quantity=st.integers(0, 1000),
        unit_amount=st.integers(-(10**9), 10**9),
        interval=st.sampled_from(["day", "week", "month", "year"]),
        interval_count=st.integers(0, 36),
    ),
    max_size=5,
)


@given(items)
def test_equals_the_rational_definition(xs: list[SubscriptionItem]) -> None:
    assert monthly_amount("active", xs) == reference(xs)


@pytest.mark.parametrize(
    ("interval", "count", "amount", "expected"),
    [
        ("year", 1, 12_000, 1_000),
        ("year", 1, 1_001, 83),
        ("week", 1, 1_000, 4_333),
        ("day", 1, 100, 3_042),
        ("month", 3, 100, 33),
        ("month", 2, 1, 1),
    ],
)
def test_examples(interval: str, count: int, amount: int, expected: int) -> None:
    item = SubscriptionItem(
        price_id="p", unit_amount=amount, interval=interval, interval_count=count
    )  # type: ignore[arg-type]
    assert monthly_amount("active", [item]) == expected
    assert monthly_amount("trialing", [item]) == 0
