"""Coexistence alert rules over facts (pure): each fires on its condition and is silent once
the condition clears (returned charges, a subscription set to end, the grace period)."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

import msgspec

from alerts.coexist.model import (
    BothActive,
    Charge,
    CoexistFacts,
    DoubleCharge,
    Orphan,
    PlanChange,
    StraySubscription,
)
from alerts.coexist.rules import COEXIST_RULES, both_active, double_billing, orphan, wrong_side
from alerts.model import Facts
from alerts.rules import evaluate

DAY = 86_400
CUT = 1_800_000_000 - 1_800_000_000 % DAY
NOW = datetime.fromtimestamp(CUT + 3 * DAY, UTC)


def charge(side: str, **kw: Any) -> Charge:
    base: dict[str, Any] = {
        "cohort": "w1",
        "billing_account": "ba_1",
        "side": side,
        "provider": "chargebee" if side == "source" else "stripe",
        "account": "a",
        "object_type": "invoice",
        "object_id": f"in_{side}",
        "amount": 9_900,
        "returned": 0,
        "currency": "EUR",
        "period_start": CUT,
        "period_end": CUT + 30 * DAY,
        "authoritative": "target",
        "delivery_id": 7 if side == "source" else 8,
    }
    base.update(kw)
    return Charge(**base)


def facts(**kw: Any) -> Facts:
    return Facts(coexist=CoexistFacts(**kw))


def test_double_billing_fires_until_one_charge_is_returned() -> None:
    pair = DoubleCharge(source=charge("source"), target=charge("target"))
    (f,) = double_billing(facts(double_charges=(pair,)), NOW)
    assert (f.rule, f.severity, f.subject, f.delivery_ids) == (
        "coexist_double_billing",
        "critical",
        "ba_1",
        (7, 8),
    )
    assert f.evidence["cohort"] == "w1"
    refunded = msgspec.structs.replace(pair, source=charge("source", returned=9_900))
    assert double_billing(facts(double_charges=(refunded,)), NOW) == []
    partly = msgspec.structs.replace(pair, source=charge("source", returned=5_000))
    assert len(double_billing(facts(double_charges=(partly,)), NOW)) == 1


def both(**kw: Any) -> BothActive:
    base: dict[str, Any] = {
        "cohort": "w1",
        "billing_account": "ba_1",
        "source": "chargebee/a/s1",
        "target": "stripe/b/sub_1",
        "source_provider": "chargebee",
        "target_provider": "stripe",
        "authoritative": "target",
        "since": CUT,
        "other_cancel_at_period_end": False,
        "other_period_end": CUT + 30 * DAY,
    }
    base.update(kw)
    return BothActive(**base)


def test_both_active_after_the_grace_period_only() -> None:
    (f,) = both_active(facts(both_active=(both(),), grace_seconds=DAY), NOW)
    assert (f.provider, f.subject) == ("chargebee", "ba_1:chargebee/a/s1")
    assert "chargebee/a/s1 still bills" in f.summary
    assert both_active(facts(both_active=(both(),), grace_seconds=5 * DAY), NOW) == []
    assert both_active(facts(both_active=(both(since=None),)), NOW) == []  # nothing switched
    ending = both(other_cancel_at_period_end=True, other_period_end=CUT)
    assert both_active(facts(both_active=(ending,), grace_seconds=DAY), NOW) == []
    rolled_back = both(authoritative="source")
    (f,) = both_active(facts(both_active=(rolled_back,), grace_seconds=DAY), NOW)
    assert f.provider == "stripe"


def test_wrong_side_groups_activity_per_account_and_provider() -> None:
    stray = StraySubscription(
        cohort="w1",
        billing_account="ba_1",
        side="source",
        provider="chargebee",
        ref="chargebee/a/s2",
        status="active",
        created_at=CUT + DAY,
        authoritative_then="target",
        authoritative_now="target",
        since=CUT,
        delivery_id=9,
    )
    change = PlanChange(
        cohort="w1",
        billing_account="ba_1",
        side="source",
        provider="chargebee",
        ref="chargebee/a/s1",
        kind="upgraded",
        at=CUT + DAY,
        delivery_id=10,
    )
    (f,) = wrong_side(
        facts(wrong_side_charges=(charge("source"),), strays=(stray,), plan_changes=(change,)), NOW
    )
    assert (f.subject, f.count, f.provider, f.delivery_ids) == (
        "ba_1:chargebee",
        3,
        "chargebee",
        (7, 9, 10),
    )
    assert (
        "charge chargebee invoice in_source" in f.summary and "upgraded chargebee/a/s1" in f.summary
    )
    # refunded charges and subscriptions created on the authoritative side say nothing
    quiet = facts(
        wrong_side_charges=(charge("source", returned=9_900),),
        strays=(msgspec.structs.replace(stray, authoritative_then="source"),),
    )
    assert wrong_side(quiet, NOW) == []


def test_orphans_name_what_is_missing() -> None:
    found = orphan(
        facts(
            orphans=(
                Orphan(
                    reason="missing_target",
                    kind="customer",
                    ref="stripe/b/cus_1",
                    provider="stripe",
                    cohort="w1",
                    link_id=4,
                ),
                Orphan(
                    reason="tagged_unlinked",
                    kind="customer",
                    ref="stripe/b/cus_2",
                    provider="stripe",
                    cohort="w1",
                    detail="x",
                ),
                Orphan(
                    reason="left_behind",
                    kind="subscription",
                    ref="chargebee/a/s3",
                    provider="chargebee",
                    cohort="w1",
                ),
            )
        ),
        NOW,
    )
    assert [f.subject for f in found] == [
        "link:4:missing_target",
        "customer:stripe/b/cus_2",
        "subscription:chargebee/a/s3",
    ]
    assert "the target customer stripe/b/cus_1 is not in the state" in found[0].summary


def test_registered_and_silent_without_facts() -> None:
    assert evaluate(Facts(), NOW, only=COEXIST_RULES) == []
