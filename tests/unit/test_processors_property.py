"""Order independence: any shuffle of a real event sequence, with duplicates, folds to one state."""

from __future__ import annotations

from typing import Any

import msgspec
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from processors.model import Body
from processors.normalize import normalize
from processors.transitions import apply
from tests.integration.processors_helpers import chargebee_sequence, stripe_sequence

State = dict[tuple[str, str], tuple[str, bool, Body]]

STRIPE = [("stripe", msgspec.json.encode(e), e["id"]) for e in stripe_sequence("prop")]
CHARGEBEE = [("chargebee", msgspec.json.encode(e), e["id"]) for e in chargebee_sequence("prop")]
EVENTS = STRIPE + CHARGEBEE


def fold(deliveries: list[tuple[str, bytes, str]]) -> State:
    """What the workers do, minus I/O: first delivery of an event applies, later ones are no-ops."""
    state: dict[tuple[str, str, str], Any] = {}
    settled: set[tuple[str, str]] = set()
    for delivery_id, (provider, body, event_id) in enumerate(deliveries, start=1):
        if (provider, event_id) in settled:
            continue
        settled.add((provider, event_id))
        event = normalize(provider, body, account="acct")
        if event is None:
            continue
        for u in event.updates:
            key = (provider, u.object_type, u.object_id)
            t = apply(state.get(key), u, provider=provider, account="acct", delivery_id=delivery_id)
            state[key] = t.state
    return {(f"{k[0]}:{k[1]}", k[2]): (s.version, s.deleted, s.body) for k, s in state.items()}


IN_ORDER = fold(EVENTS)


def test_in_order_fold_is_the_expected_billing_state() -> None:
    sub = IN_ORDER[("stripe:subscription", "sub_prop")]
    assert sub[2].status == "canceled"  # type: ignore[union-attr]
    assert IN_ORDER[("stripe:invoice", "in_prop")][2].status == "paid"  # type: ignore[union-attr]
    assert IN_ORDER[("stripe:customer", "cus_prop")][1] is True
    assert IN_ORDER[("stripe:refund", "re_prop")][2].status == "succeeded"  # type: ignore[union-attr]
    assert IN_ORDER[("stripe:credit_note", "cn_prop")][2].status == "void"  # type: ignore[union-attr]
    cb_sub = IN_ORDER[("chargebee:subscription", "16BPgETyVrQVHGh1")][2]
    assert cb_sub.status == "active"  # type: ignore[union-attr]
    assert cb_sub.mrr == 2 * 11667  # type: ignore[union-attr]
    assert IN_ORDER[("chargebee:customer", "sarah")][1] is True
    assert IN_ORDER[("chargebee:invoice", "204")][1] is True


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(data=st.data())
def test_any_order_with_duplicates_gives_the_same_state(data: st.DataObject) -> None:
    dups = data.draw(st.lists(st.sampled_from(range(len(EVENTS))), max_size=len(EVENTS)))
    order = data.draw(st.permutations([*range(len(EVENTS)), *dups]))
    assert fold([EVENTS[i] for i in order]) == IN_ORDER
