"""Facts the coexistence rules read: plain values, no I/O.

Times are unix seconds and money integer minor units, like the billing state. The gathering
(:mod:`alerts.coexist.facts`) already knows who was authoritative when (it has the authority
history), so each fact carries the side that was authoritative at its own moment; the rules
decide what is wrong, and for how long it may be.
"""

from __future__ import annotations

from typing import Literal

import msgspec

__all__ = [
    "BothActive",
    "Charge",
    "CoexistFacts",
    "DoubleCharge",
    "Orphan",
    "PlanChange",
    "StraySubscription",
]

Side = Literal["source", "target"]


class Charge(msgspec.Struct, frozen=True, kw_only=True):
    """A paid invoice, or a succeeded payment with no invoice in the state, of a linked customer."""

    cohort: str
    billing_account: str
    side: Side
    provider: str
    account: str
    object_type: Literal["invoice", "payment"]
    object_id: str
    amount: int
    # Refunded or credited back (minor units); a charge returned in full no longer counts.
    returned: int
    currency: str | None
    # The service period (a payment alone: the UTC day it was made).
    period_start: int
    period_end: int
    # Who was authoritative when the period started (the payment was made).
    authoritative: Side
    delivery_id: int

    @property
    def net(self) -> int:
        return self.amount - self.returned

    def describe(self) -> str:
        return f"{self.provider} {self.object_type} {self.object_id}"


class DoubleCharge(msgspec.Struct, frozen=True, kw_only=True):
    """A source charge and a target charge of one account whose service periods overlap."""

    source: Charge
    target: Charge


class BothActive(msgspec.Struct, frozen=True, kw_only=True):
    """A linked subscription pair with both sides billing (active or past due)."""

    cohort: str
    billing_account: str
    source: str
    target: str
    source_provider: str
    target_provider: str
    # Authority now, and since when (None: the source, since always: nothing switched yet).
    authoritative: Side
    since: int | None
    # The side that is not authoritative: set to end at its period end, and when that is.
    other_cancel_at_period_end: bool
    other_period_end: int | None


class StraySubscription(msgspec.Struct, frozen=True, kw_only=True):
    """A live subscription of a linked customer that no subscription link covers."""

    cohort: str
    billing_account: str
    side: Side
    provider: str
    ref: str
    status: str
    created_at: int | None
    # Who was authoritative when it was created, and who is now (since when).
    authoritative_then: Side | None
    authoritative_now: Side
    since: int | None
    delivery_id: int


class PlanChange(msgspec.Struct, frozen=True, kw_only=True):
    """A classified change (upgrade, quantity, plan switch, ...) of a live subscription of a
    linked customer, on a side that was not authoritative when it happened."""

    cohort: str
    billing_account: str
    side: Side
    provider: str
    ref: str
    kind: str
    at: int
    delivery_id: int


class Orphan(msgspec.Struct, frozen=True, kw_only=True):
    """Something of a migration that is not where it should be (see ``reason``)."""

    reason: Literal["missing_source", "missing_target", "tagged_unlinked", "left_behind"]
    kind: str
    ref: str
    provider: str
    cohort: str
    billing_account: str | None = None
    link_id: int | None = None
    detail: str = ""
    delivery_id: int | None = None


class CoexistFacts(msgspec.Struct, frozen=True, kw_only=True):
    grace_seconds: int = 86_400
    double_charges: tuple[DoubleCharge, ...] = ()
    wrong_side_charges: tuple[Charge, ...] = ()
    both_active: tuple[BothActive, ...] = ()
    strays: tuple[StraySubscription, ...] = ()
    plan_changes: tuple[PlanChange, ...] = ()
    orphans: tuple[Orphan, ...] = ()
