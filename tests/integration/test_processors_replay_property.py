"""live == rebuild == in-order state, whatever the log order, duplicates, batches and a killed batch.

Each example takes both providers' real event sequences (Stripe fixtures with rewritten ids,
every derived Chargebee event) under accounts of its own, and:

- appends them to the log in a drawn permutation, with drawn redeliveries (log order);
- applies them with the group-apply path (``process_batch``), split into drawn batches (any
  subset of deliveries, not only consecutive ids), run in a drawn order, so live applies them in
  an order that is neither the log's nor the events';
- kills one batch for real while its transaction is open (its PostgreSQL backend terminated
  after it wrote its effects, see ``kill_mid_batch``), checks it rolled back as a whole, and
  retries its deliveries at once or after all other batches, as one batch or one by one (the
  batch's fallback), as arq and the sweeper would;

then rebuilds from the log and compares in one snapshot (every table: state, settlements,
history, subscription changes, anomalies) and checks live and rebuilt state against the plain
in-order fold. Examples: ``LEDGERHOOK_REPLAY_EXAMPLES`` (default 8; the database grows with
each one, and each comparison covers all of it).
"""

from __future__ import annotations

import os
import uuid
from typing import Any

import asyncpg
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from ledgerhook.settings import Settings
from processors.replay import rebuild_and_compare
from processors.service import process_batch, process_delivery
from tests.integration.processors_helpers import (
    append,
    chargebee_sequence,
    new_delivery,
    stripe_sequence,
)
from tests.integration.replay_helpers import Event, in_order, kill_mid_batch, states

EXAMPLES = int(os.environ.get("LEDGERHOOK_REPLAY_EXAMPLES", "8"))
N_EVENTS = len(stripe_sequence("n")) + len(chargebee_sequence("n"))


def _events(tag: str) -> list[Event]:
    stripe = [("stripe", f"acct_{tag}", ev) for ev in stripe_sequence(tag)]
    chargebee = [("chargebee", f"site_{tag}", ev) for ev in chargebee_sequence(tag)]
    return stripe + chargebee


@st.composite
def _scenarios(draw: st.DrawFn) -> dict[str, Any]:
    dups = draw(st.lists(st.integers(0, N_EVENTS - 1), max_size=N_EVENTS // 2))
    order = draw(st.permutations([*range(N_EVENTS), *dups]))
    k = draw(st.integers(1, 6))
    assign = draw(st.lists(st.integers(0, k - 1), min_size=len(order), max_size=len(order)))
    groups = [[pos for pos, b in enumerate(assign) if b == i] for i in range(k)]
    batches = [g for g in groups if g]
    return {
        "order": order,
        "batches": batches,
        "killed": draw(st.integers(0, len(batches) - 1)),
        "victim": draw(st.integers(0, 10_000)),
        "retry_last": draw(st.booleans()),
        "retry_alone": draw(st.booleans()),
    }


async def _retry(pool: asyncpg.Pool, batch: list[int], *, alone: bool) -> None:
    async with pool.acquire() as conn:
        if alone:
            for delivery_id in batch:
                await process_delivery(conn, delivery_id)
        else:
            results = await process_batch(conn, batch)
            assert not [r for r in results.values() if isinstance(r, BaseException)]


@settings(
    max_examples=EXAMPLES,
    deadline=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
)
@given(scenario=_scenarios())
async def test_live_equals_rebuild_equals_in_order(
    fresh_settings: Settings, fresh_pool: asyncpg.Pool, scenario: dict[str, Any]
) -> None:
    tag = uuid.uuid4().hex[:10]
    events = _events(tag)
    log = [events[i] for i in scenario["order"]]
    appended = await append(fresh_pool, [new_delivery(p, ev, account=a) for p, a, ev in log])
    ids = [a.id for a in appended]
    batches = [[ids[pos] for pos in b] for b in scenario["batches"]]

    postponed: list[list[int]] = []
    for n, batch in enumerate(batches):
        if n != scenario["killed"]:
            await _retry(fresh_pool, batch, alone=False)
            continue
        await kill_mid_batch(fresh_settings, batch, victim=batch[scenario["victim"] % len(batch)])
        if scenario["retry_last"]:
            postponed.append(batch)
        else:
            await _retry(fresh_pool, batch, alone=scenario["retry_alone"])
    for batch in postponed:
        await _retry(fresh_pool, batch, alone=scenario["retry_alone"])

    accounts = [f"acct_{tag}", f"site_{tag}"]
    async with fresh_pool.acquire() as conn:
        report = await rebuild_and_compare(conn)
        live = await states(conn, "processors", accounts)
        rebuilt = await states(conn, "processors_replay", accounts)
    assert [d.describe() for d in report.differences] == []
    assert (report.stats.backlog, report.stats.dead_letters) == (0, 0)
    expected = in_order(events)
    assert live == expected
    assert rebuilt == expected
