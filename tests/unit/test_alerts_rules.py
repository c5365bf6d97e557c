"""Alert rules as tables: facts in, findings out. No I/O, no clock."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest

from alerts.model import RULES as RULE_NAMES
from alerts.model import (
    Anomaly,
    DeadLetters,
    EndpointActivity,
    Facts,
    FetchBackMismatch,
    IntegrationBacklog,
    MissingEvent,
    ReconcileFailure,
    RejectionCount,
    Unprocessed,
    VerificationStatus,
)
from alerts.rules import RULES, evaluate, reconciliation_failing
from ledgerhook.settings import AlertSettings

NOW = datetime(2026, 1, 1, 12, 0, tzinfo=UTC)
CFG = AlertSettings(
    missing_predecessor_grace_seconds=300,
    rejections_threshold=5,
    rejections_window_seconds=60,
    lag_threshold_seconds=120,
)


def anomaly(
    aid: int,
    kind: str = "out_of_order",
    obj: str = "sub_1",
    *,
    age: int = 10,
    arrived: bool = False,
    delivery: int | None = None,
) -> Anomaly:
    return Anomaly(
        id=aid,
        kind=kind,  # type: ignore[arg-type]
        provider="stripe",
        account="acct",
        object_type="subscription",
        object_id=obj,
        delivery_id=delivery or aid * 10,
        event_type="customer.subscription.updated",
        event_created=1_700_000_000 + aid,
        created_at=NOW - timedelta(seconds=age),
        predecessor_arrived=arrived,
    )


def endpoint(silence: int, last_ago: int | None, watching_ago: int = 10_000) -> EndpointActivity:
    return EndpointActivity(
        provider="chargebee",
        endpoint="default",
        silence_after_seconds=silence,
        last_verified_at=None if last_ago is None else NOW - timedelta(seconds=last_ago),
        watching_since=NOW - timedelta(seconds=watching_ago),
    )


# (name, facts, expected [(rule, severity, subject, count)])
CASES: list[tuple[str, Facts, list[tuple[str, str, str, int]]]] = [
    ("nothing happened", Facts(config=CFG), []),
    (
        "out-of-order burst on one object is one finding, count = burst size",
        Facts(config=CFG, anomalies=(anomaly(1), anomaly(2), anomaly(3))),
        [("out_of_order", "warning", "stripe:acct:subscription:sub_1", 3)],
    ),
    (
        "out-of-order on two objects: two findings",
        Facts(
            config=CFG,
            anomalies=(anomaly(1, obj="sub_a"), anomaly(2, obj="sub_b"), anomaly(3, obj="sub_a")),
        ),
        [
            ("out_of_order", "warning", "stripe:acct:subscription:sub_a", 2),
            ("out_of_order", "warning", "stripe:acct:subscription:sub_b", 1),
        ],
    ),
    (
        "missing predecessor within grace: not yet",
        Facts(config=CFG, anomalies=(anomaly(1, "missing_predecessor", age=299),)),
        [],
    ),
    (
        "missing predecessor past grace and still missing: fires",
        Facts(config=CFG, anomalies=(anomaly(1, "missing_predecessor", age=301),)),
        [("missing_predecessor", "warning", "stripe:acct:subscription:sub_1", 1)],
    ),
    (
        "missing predecessor past grace but it arrived since: quiet",
        Facts(config=CFG, anomalies=(anomaly(1, "missing_predecessor", age=900, arrived=True),)),
        [],
    ),
    (
        "silence disabled (0) never fires",
        Facts(config=CFG, endpoints=(endpoint(0, None),)),
        [],
    ),
    (
        "silence: last delivery older than the window",
        Facts(config=CFG, endpoints=(endpoint(600, 601),)),
        [("silence", "warning", "chargebee/default", 1)],
    ),
    (
        "silence: recent delivery",
        Facts(config=CFG, endpoints=(endpoint(600, 599),)),
        [],
    ),
    (
        "silence: never delivered, counted from when the sweep started watching",
        Facts(config=CFG, endpoints=(endpoint(600, None, watching_ago=60),)),
        [],
    ),
    (
        "silence: never delivered, watched for longer than the window",
        Facts(config=CFG, endpoints=(endpoint(600, None, watching_ago=601),)),
        [("silence", "warning", "chargebee/default", 1)],
    ),
    (
        "rejections at the threshold: quiet",
        Facts(
            config=CFG, rejections=(RejectionCount(provider="stripe", endpoint="default", count=5),)
        ),
        [],
    ),
    (
        "rejections above the threshold: fires with the count",
        Facts(
            config=CFG,
            rejections=(
                RejectionCount(
                    provider="stripe", endpoint="default", count=6, reasons={"bad_signature": 6}
                ),
            ),
        ),
        [("rejections", "warning", "stripe/default", 6)],
    ),
    (
        "dead letters: critical per provider",
        Facts(
            config=CFG, dead_letters=(DeadLetters(provider="stripe", count=2, delivery_ids=(4, 9)),)
        ),
        [("processing", "critical", "dead_letter:stripe", 2)],
    ),
    (
        "lag under threshold",
        Facts(
            config=CFG,
            oldest_unprocessed=Unprocessed(
                delivery_id=7, provider="stripe", received_at=NOW - timedelta(seconds=119), count=3
            ),
        ),
        [],
    ),
    (
        "lag over threshold",
        Facts(
            config=CFG,
            oldest_unprocessed=Unprocessed(
                delivery_id=7, provider="stripe", received_at=NOW - timedelta(seconds=121), count=3
            ),
        ),
        [("processing", "warning", "lag", 3)],
    ),
    (
        "log verified",
        Facts(
            config=CFG,
            verification=VerificationStatus(
                ok=True, tree_size=10, finished_at=NOW, source="integrity"
            ),
        ),
        [],
    ),
    (
        "log broken: critical",
        Facts(
            config=CFG,
            verification=VerificationStatus(
                ok=False,
                tree_size=3,
                finished_at=NOW,
                source="cli",
                first_bad="leaf 3 (delivery 4)",
                reason="the delivery does not match its leaf",
            ),
        ),
        [("integrity", "critical", "audit.log", 1)],
    ),
    (
        "integration within the merge delay",
        Facts(
            config=CFG,
            integration=IntegrationBacklog(
                max_merge_delay_seconds=1.0,
                pending=40,
                oldest_received_at=NOW - timedelta(seconds=0.4),
            ),
        ),
        [],
    ),
    (
        "a delivery waits past the merge delay: critical",
        Facts(
            config=CFG,
            integration=IntegrationBacklog(
                max_merge_delay_seconds=1.0,
                pending=40,
                oldest_received_at=NOW - timedelta(seconds=3),
            ),
        ),
        [("merge_delay", "critical", "pending", 40)],
    ),
    (
        "leaves integrated late since the last sweep: warning",
        Facts(
            config=CFG,
            integration=IntegrationBacklog(
                max_merge_delay_seconds=1.0,
                pending=0,
                oldest_received_at=None,
                late_leaves=7,
                max_late_seconds=2.5,
                first_late_delivery=12,
            ),
        ),
        [("merge_delay", "warning", "late", 7)],
    ),
    (
        "each missing event is its own alert",
        Facts(
            config=CFG,
            missing_events=tuple(
                MissingEvent(
                    provider="stripe",
                    account="acct",
                    endpoint="default",
                    event_id=f"evt_{i}",
                    event_type="invoice.paid",
                    event_created=1,
                    delivery_id=i,
                )
                for i in (1, 2)
            ),
        ),
        [
            ("missing_event", "warning", "stripe:acct:evt_1", 1),
            ("missing_event", "warning", "stripe:acct:evt_2", 1),
        ],
    ),
    (
        "fetch-back mismatch is critical",
        Facts(
            config=CFG,
            mismatches=(
                FetchBackMismatch(
                    provider="chargebee",
                    endpoint="default",
                    delivery_id=5,
                    event_id="ev_1",
                    delivered_sha256="aa",
                    fetched_sha256="bb",
                    differences=("content differs",),
                ),
            ),
        ),
        [("fetch_back_mismatch", "critical", "chargebee:default:ev_1", 1)],
    ),
    (
        "a failing reconciliation, per provider endpoint",
        Facts(
            config=CFG,
            reconcile_failures=(
                ReconcileFailure(
                    provider="stripe",
                    endpoint="default",
                    account="acct",
                    api_url="https://api.stripe.com/v1/events",
                    error="stripe events API at https://api.stripe.com/v1/events: no connection",
                ),
            ),
        ),
        [("reconciliation_failing", "warning", "stripe/default", 1)],
    ),
]


@pytest.mark.parametrize(("name", "facts", "expected"), CASES, ids=[c[0] for c in CASES])
def test_rules(name: str, facts: Facts, expected: list[tuple[str, str, str, int]]) -> None:
    got = sorted((f.rule, f.severity, f.subject, f.count) for f in evaluate(facts, NOW))
    assert got == sorted(expected)


def test_burst_evidence_lists_its_deliveries_in_event_order() -> None:
    facts = Facts(config=CFG, anomalies=(anomaly(3, delivery=30), anomaly(1, delivery=10)))
    (f,) = evaluate(facts, NOW)
    assert f.delivery_ids == (10, 30)
    assert f.accumulate  # a later burst on the same object adds to the open alert


def test_state_rules_replace_rather_than_accumulate() -> None:
    facts = Facts(config=CFG, endpoints=(endpoint(600, 700),))
    (f,) = evaluate(facts, NOW)
    assert not f.accumulate


def test_every_rule_is_registered_once() -> None:

    names = [n for n, _ in RULES]
    assert len(names) == len(set(names)) == len(RULE_NAMES)
    assert tuple(names) == RULE_NAMES  # every declared rule has its function, in order


def test_reconciliation_failing_names_endpoint_and_url_and_counts_up() -> None:
    failure = ReconcileFailure(
        provider="chargebee",
        endpoint="eu",
        account="acme",
        api_url="https://acme.chargebee.com/api/v2/events",
        error="chargebee API at https://acme.chargebee.com/api/v2/events answered HTTP 401",
    )
    (f,) = reconciliation_failing(Facts(config=CFG, reconcile_failures=(failure,)), NOW)
    assert "endpoint eu" in f.summary and failure.api_url in f.summary
    assert f.evidence["api_url"] == failure.api_url and f.evidence["endpoint"] == "eu"
    assert f.accumulate  # each failed run counts


def test_only_restricts_the_rules_run() -> None:
    facts = Facts(config=CFG, anomalies=(anomaly(1),), endpoints=(endpoint(600, 700),))
    assert {f.rule for f in evaluate(facts, NOW, only=frozenset({"silence"}))} == {"silence"}
