"""Normalised monthly recurring revenue, in integer minor units.

Each item contributes ``unit_amount * quantity`` per ``interval_count`` intervals, converted to a
month exactly with rational arithmetic (no floats): a year is 12 months, a week 52/12 of a month
per week (52 weeks a year), a day 365/12 (365 days a year). The exact sum over items is rounded
once, half away from zero, to a whole minor unit. Only subscriptions that are billing count:
``active`` and ``past_due`` (a subscription set to cancel at period end still counts until it
ends); trials, paused, unpaid, canceled and incomplete subscriptions contribute 0. Discounts and
taxes are not included.
"""

from __future__ import annotations

from collections.abc import Iterable
from fractions import Fraction

from processors.model import SubscriptionItem

__all__ = ["BILLING_STATUSES", "monthly_amount"]

BILLING_STATUSES = frozenset({"active", "past_due"})

_PER_MONTH = {
    "month": Fraction(1),
    "year": Fraction(1, 12),
    "week": Fraction(52, 12),
    "day": Fraction(365, 12),
}


def _round_half_away(x: Fraction) -> int:
    n = abs(x)
    whole = n.numerator // n.denominator
    if n - whole >= Fraction(1, 2):
        whole += 1
    return whole if x >= 0 else -whole


def monthly_amount(status: str, items: Iterable[SubscriptionItem]) -> int:
    if status not in BILLING_STATUSES:
        return 0
    total = Fraction(0)
    for item in items:
        count = max(item.interval_count, 1)
        total += Fraction(item.unit_amount * item.quantity) * _PER_MONTH[item.interval] / count
    return _round_half_away(total)
