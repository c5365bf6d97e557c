"""Synced snapshots against events: every arrival order converges on the right state.

A snapshot fetched at T is the object's state as of T (README, "Ordering and state"). Each row
names a snapshot and some events of one object and which of them must win; every permutation of
their arrival is folded through the pure ``apply`` and must end in the winner's state, with the
losers recorded as stale (or unchanged: the same state again), snapshots never raising anomalies.
Bodies are the real fixtures (Stripe: shared/fixtures; Chargebee: tests/fixtures/chargebee).
"""

from __future__ import annotations

import itertools
import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from processors.model import NeutralEvent, ObjectUpdate, StoredObject
from processors.normalize import normalize_delivery
from processors.transitions import apply
from tests.conftest import fixture_bytes

CB_DIR = Path(__file__).resolve().parents[1] / "fixtures" / "chargebee"
T = 1_700_000_000  # the fetch second of the snapshots below


# --- Stripe --------------------------------------------------------------------------------


def _stripe_fixture(name: str) -> dict[str, Any]:
    data: dict[str, Any] = json.loads(fixture_bytes("stripe", name))
    return data


def _sub_object(qty: int, status: str = "active", **fields: Any) -> dict[str, Any]:
    obj: dict[str, Any] = _stripe_fixture("subscription_updated.json")["data"]["object"]
    obj["id"] = "sub_order"
    obj["status"] = status
    obj["items"]["data"][0]["quantity"] = qty
    obj.update(fields)
    return obj


def _invoice_object(status: str, qty_marker: int, **transitions: int) -> dict[str, Any]:
    obj: dict[str, Any] = _stripe_fixture("invoice_paid.json")["data"]["object"]
    obj["id"] = "in_order"
    obj["status"] = status
    obj["amount_due"] = qty_marker  # marks which copy won
    obj["status_transitions"] = {
        "finalized_at": None,
        "paid_at": None,
        "voided_at": None,
        "marked_uncollectible_at": None,
        **transitions,
    }
    return obj


def stripe_event(event_type: str, created: int, obj: dict[str, Any]) -> NeutralEvent:
    body = json.dumps(
        {
            "id": f"evt_{event_type}_{created}_{obj.get('status')}",
            "object": "event",
            "type": event_type,
            "created": created,
            "data": {"object": obj},
        }
    ).encode()
    event = normalize_delivery(
        "stripe",
        body,
        account="acct",
        origin="webhook",
        event_id="unused",
        event_type=event_type,
        event_created=created,
    )
    assert event is not None
    return event


def snapshot(provider: str, kind: str, fetched_at: int, obj: dict[str, Any]) -> NeutralEvent:
    event = normalize_delivery(
        provider,
        json.dumps(obj, indent=2).encode(),  # as an API returns it: bytes differ, meaning not
        account="acct",
        origin="sync",
        event_id=f"sync:{kind}:{obj['id']}:{fetched_at}",
        event_type=f"snapshot.{kind}",
        event_created=fetched_at,
    )
    assert event is not None
    return event


# --- Chargebee -----------------------------------------------------------------------------


def _cb_subscription(version: int, qty: int) -> dict[str, Any]:
    ev: dict[str, Any] = json.loads((CB_DIR / "subscription_changed.json").read_bytes())
    sub: dict[str, Any] = ev["content"]["subscription"]
    sub["id"] = "cb_order"
    sub["resource_version"] = version
    sub["subscription_items"][0]["quantity"] = qty
    return sub


def cb_event(event_type: str, version: int, qty: int) -> NeutralEvent:
    ev: dict[str, Any] = json.loads((CB_DIR / "subscription_changed.json").read_bytes())
    ev["id"] = f"ev_{event_type}_{version}"
    ev["event_type"] = event_type
    ev["content"] = {"subscription": _cb_subscription(version, qty)}
    event = normalize_delivery(
        "chargebee",
        json.dumps(ev).encode(),
        account="acct",
        origin="webhook",
        event_id=ev["id"],
        event_type=event_type,
        event_created=ev["occurred_at"],
    )
    assert event is not None
    return event


def cb_snapshot(version: int, qty: int, fetched_at: int = T) -> NeutralEvent:
    return snapshot("chargebee", "subscription", fetched_at, _cb_subscription(version, qty))


# --- the fold ------------------------------------------------------------------------------


@dataclass(frozen=True)
class Case:
    name: str
    items: dict[str, NeutralEvent]
    winner: str


def _main(e: NeutralEvent) -> ObjectUpdate:
    return e.updates[0]


def fold(order: tuple[str, ...], items: dict[str, NeutralEvent]) -> tuple[StoredObject, list[Any]]:
    state: StoredObject | None = None
    steps = []
    for i, label in enumerate(order, start=1):
        u = _main(items[label])
        t = apply(state, u, provider="p", account="acct", delivery_id=i)
        steps.append((label, t.outcome, [a.kind for a in t.anomalies]))
        state = t.state
    assert state is not None
    return state, steps


CASES = [
    # Stripe: the fetch second decides; an event of an earlier second is stale.
    Case(
        "stripe: event before T is stale, event after T applies",
        {
            "snapshot": snapshot("stripe", "subscription", T, _sub_object(5)),
            "older": stripe_event("customer.subscription.updated", T - 10, _sub_object(1)),
            "newer": stripe_event("customer.subscription.updated", T + 10, _sub_object(9)),
        },
        "newer",
    ),
    Case(
        "stripe: only an older event",
        {
            "snapshot": snapshot("stripe", "subscription", T, _sub_object(5)),
            "older": stripe_event("customer.subscription.updated", T - 1, _sub_object(1)),
        },
        "snapshot",
    ),
    # Within the fetch second: the lifecycle rank, ties to the event.
    Case(
        "stripe: same second, creation ranks below an active snapshot",
        {
            "snapshot": snapshot("stripe", "subscription", T, _sub_object(5)),
            "created": stripe_event("customer.subscription.created", T, _sub_object(1)),
        },
        "snapshot",
    ),
    Case(
        "stripe: same second, same rank: the event wins",
        {
            "snapshot": snapshot("stripe", "subscription", T, _sub_object(5)),
            "updated": stripe_event("customer.subscription.updated", T, _sub_object(7)),
        },
        "updated",
    ),
    Case(
        "stripe: same second, deletion ranks above an active snapshot",
        {
            "snapshot": snapshot("stripe", "subscription", T, _sub_object(5)),
            "deleted": stripe_event(
                "customer.subscription.deleted", T, _sub_object(5, "canceled", canceled_at=T)
            ),
        },
        "deleted",
    ),
    Case(
        "stripe: a canceled snapshot outranks an update of its second",
        {
            "snapshot": snapshot(
                "stripe", "subscription", T, _sub_object(5, "canceled", canceled_at=T - 5)
            ),
            "updated": stripe_event("customer.subscription.updated", T, _sub_object(7)),
            "later": stripe_event("customer.subscription.updated", T + 1, _sub_object(8)),
        },
        "later",
    ),
    # The object's own times: a clock behind Stripe's cannot place the snapshot before them.
    Case(
        "stripe: the object's canceled_at lifts a fetch time that is behind",
        {
            "snapshot": snapshot(
                "stripe", "subscription", T - 100, _sub_object(5, "canceled", canceled_at=T)
            ),
            "before_cancel": stripe_event("customer.subscription.updated", T - 1, _sub_object(1)),
        },
        "snapshot",
    ),
    Case(
        "stripe: a paid invoice snapshot: finalized of its second is stale, paid ties to the event",
        {
            "snapshot": snapshot(
                "stripe", "invoice", T, _invoice_object("paid", 1, finalized_at=T - 3, paid_at=T)
            ),
            "finalized": stripe_event(
                "invoice.finalized", T, _invoice_object("open", 2, finalized_at=T - 3)
            ),
            "paid": stripe_event(
                "invoice.paid", T, _invoice_object("paid", 3, finalized_at=T - 3, paid_at=T)
            ),
        },
        "paid",
    ),
    Case(
        "stripe: an open invoice snapshot loses to a later void",
        {
            "snapshot": snapshot("stripe", "invoice", T, _invoice_object("open", 1)),
            "finalized": stripe_event("invoice.finalized", T - 2, _invoice_object("open", 2)),
            "voided": stripe_event(
                "invoice.voided", T + 3, _invoice_object("void", 3, voided_at=T + 3)
            ),
        },
        "voided",
    ),
    Case(
        "stripe: two snapshots, the later fetch wins",
        {
            "first": snapshot("stripe", "subscription", T, _sub_object(5)),
            "second": snapshot("stripe", "subscription", T + 60, _sub_object(6)),
            "between": stripe_event("customer.subscription.updated", T + 30, _sub_object(7)),
        },
        "second",
    ),
    # Chargebee: resource_version is exact.
    Case(
        "chargebee: older and newer resource versions",
        {
            "snapshot": cb_snapshot(5_000, qty=5),
            "older": cb_event("subscription_changed", 4_999, qty=1),
            "newer": cb_event("subscription_changed", 5_001, qty=9),
        },
        "newer",
    ),
    Case(
        "chargebee: an event older than the snapshot, whatever the fetch time",
        {
            "snapshot": cb_snapshot(5_000, qty=5, fetched_at=1),
            "older": cb_event("subscription_renewed", 4_000, qty=1),
        },
        "snapshot",
    ),
    Case(
        "chargebee: a newer event, whatever the fetch time",
        {
            "snapshot": cb_snapshot(5_000, qty=5, fetched_at=2_000_000_000),
            "newer": cb_event("subscription_cancelled", 6_000, qty=3),
        },
        "newer",
    ),
    Case(
        "chargebee: two snapshots and an event between them",
        {
            "first": cb_snapshot(5_000, qty=5),
            "event": cb_event("subscription_changed", 5_500, qty=7),
            "second": cb_snapshot(6_000, qty=6),
        },
        "second",
    ),
]


@pytest.mark.parametrize("case", CASES, ids=[c.name for c in CASES])
def test_every_arrival_order_ends_in_the_winners_state(case: Case) -> None:
    winner = _main(case.items[case.winner])
    for order in itertools.permutations(case.items):
        state, steps = fold(order, case.items)
        assert (state.version, state.body) == (winner.version, winner.body), (order, steps)
        seen_winner = False
        for label, outcome, anomalies in steps:
            update = _main(case.items[label])
            if seen_winner:
                # Everything after the winner loses to it: recorded, state untouched.
                assert outcome in ("stale", "unchanged"), (order, steps)
            if update.snapshot:
                assert anomalies == [], (order, steps)  # a snapshot is never an anomaly
            seen_winner = seen_winner or label == case.winner


def test_an_event_stale_against_a_snapshot_is_reported_out_of_order() -> None:
    snap = snapshot("stripe", "subscription", T, _sub_object(5))
    older = stripe_event("customer.subscription.updated", T - 10, _sub_object(1))
    _, steps = fold(("snapshot", "older"), {"snapshot": snap, "older": older})
    assert steps == [("snapshot", "applied", []), ("older", "stale", ["out_of_order"])]


def test_chargebee_same_resource_version_is_the_same_state() -> None:
    snap = cb_snapshot(5_000, qty=5)
    event = cb_event("subscription_changed", 5_000, qty=5)
    for order in (("snapshot", "event"), ("event", "snapshot")):
        _, steps = fold(order, {"snapshot": snap, "event": event})
        assert [s[1] for s in steps] == ["applied", "unchanged"]


def test_stripe_snapshot_versions_sort_below_events_of_their_second_and_rank() -> None:
    snap = _main(snapshot("stripe", "subscription", T, _sub_object(5)))
    event = _main(stripe_event("customer.subscription.updated", T, _sub_object(5)))
    assert snap.version == f"{T:012d}.02.#sync"
    assert snap.version < event.version
    assert snap.version[:16] == event.version[:16]
