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
from math import lcm

from processors.model import SubscriptionItem

__all__ = ["BILLING_STATUSES", "monthly_amount"]

BILLING_STATUSES = frozenset({"active", "past_due"})

# Twelfths of a month per interval: a month is 12/12, a year 1/12, a week 52/12, a day 365/12.
# Integer numerators over one common denominator keep the sum exact without Fraction objects,
# which cost ~10x more (verifying a 100 000-pair migration cohort computes it 200 000 times).
_TWELFTHS = {"month": 12, "year": 1, "week": 52, "day": 365}


def _round_half_away(numerator: int, denominator: int) -> int:
    whole, rest = divmod(abs(numerator), denominator)
    if 2 * rest >= denominator:
        whole += 1
    return whole if numerator >= 0 else -whole


def monthly_amount(status: str, items: Iterable[SubscriptionItem]) -> int:
    if status not in BILLING_STATUSES:
        return 0
    parts = [
        (
            item.unit_amount * item.quantity * _TWELFTHS[item.interval],
            12 * max(item.interval_count, 1),
        )
        for item in items
    ]
    if not parts:
        return 0
    denominator = lcm(*(d for _, d in parts))
    return _round_half_away(sum(n * (denominator // d) for n, d in parts), denominator)
