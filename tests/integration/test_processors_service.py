"""process_delivery against real PostgreSQL: apply, duplicates, ordering, dead letters, crashes."""

from __future__ import annotations

import asyncio
import itertools
from typing import Any

import asyncpg
import msgspec
import pytest

import processors.service as service
from processors import repository as repo
from processors.normalize import stripe as stripe_norm
from processors.service import process_delivery
from tests.integration.processors_helpers import (
    append,
    load_chargebee,
    new_delivery,
    stripe_event,
    uid,
)


async def _row(pool: asyncpg.Pool, sql: str, *args: Any) -> asyncpg.Record | None:
    async with pool.acquire() as conn:
        return await conn.fetchrow(sql, *args)


async def _process(pool: asyncpg.Pool, delivery_id: int) -> str:
    async with pool.acquire() as conn:
        return await process_delivery(conn, delivery_id)


async def test_subscription_created_end_to_end(pool: asyncpg.Pool) -> None:
    sub_id = uid("sub_")
    ev = stripe_event("subscription_created.json", object_id=sub_id)
    (d,) = await append(pool, [new_delivery("stripe", ev)])
    assert await _process(pool, d.id) == "applied"

    row = await _row(
        pool,
        "SELECT * FROM processors.subscriptions WHERE provider='stripe' AND account='acct_test' AND id=$1",
        sub_id,
    )
    assert row is not None
    assert row["status"] == "active"
    assert row["customer_id"] == "cus_IhGfebO16cMIGN"
    assert row["currency"] == "USD"
    assert row["last_delivery_id"] == d.id
    assert row["version"].startswith(f"{ev['created']:012d}.00.")
    processed = await _row(pool, "SELECT * FROM processors.processed WHERE delivery_id=$1", d.id)
    assert processed is not None
    assert processed["outcome"] == "applied"
    assert processed["object_type"] == "subscription"
    assert processed["object_id"] == sub_id
    assert msgspec.json.decode(processed["change"])["status"] == [None, "active"]
    change = await _row(
        pool, "SELECT * FROM processors.subscription_changes WHERE subscription_id=$1", sub_id
    )
    assert change is not None
    assert change["kind"] == "created"
    assert change["delivery_id"] == d.id
    # An auditor can walk from the number back to the raw webhook.
    raw = await _row(
        pool,
        "SELECT d.body FROM audit.deliveries d JOIN processors.subscriptions s "
        "ON s.last_delivery_id = d.id WHERE s.id = $1",
        sub_id,
    )
    assert raw is not None
    assert msgspec.json.decode(raw["body"])["id"] == ev["id"]


async def test_second_run_and_duplicate_delivery_are_no_ops(pool: asyncpg.Pool) -> None:
    cus = uid("cus_")
    ev = stripe_event("customer_updated.json", object_id=cus)
    first, dup = await append(pool, [new_delivery("stripe", ev), new_delivery("stripe", ev)])
    assert dup.duplicate_of == first.id
    assert await _process(pool, first.id) == "applied"
    assert await _process(pool, first.id) == "applied"  # second run: nothing more happens
    assert await _process(pool, dup.id) == "duplicate"
    assert await _process(pool, dup.id) == "duplicate"
    counts = await _row(
        pool,
        """
        SELECT (SELECT count(*) FROM processors.history WHERE object_id = $1) AS history,
               (SELECT count(*) FROM processors.processed WHERE event_id = $2) AS processed,
               (SELECT count(*) FROM processors.processed WHERE event_id = $2 AND outcome='applied') AS applied
        """,
        cus,
        ev["id"],
    )
    assert counts is not None
    assert dict(counts) == {"history": 1, "processed": 2, "applied": 1}


async def test_duplicate_processed_first_applies_and_original_becomes_duplicate(
    pool: asyncpg.Pool,
) -> None:
    ev = stripe_event("customer_updated.json", object_id=uid("cus_"))
    first, dup = await append(pool, [new_delivery("stripe", ev), new_delivery("stripe", ev)])
    assert await _process(pool, dup.id) == "applied"
    assert await _process(pool, first.id) == "duplicate"


async def test_database_refuses_to_settle_an_event_twice(pool: asyncpg.Pool) -> None:
    ev = stripe_event("customer_updated.json", object_id=uid("cus_"))
    first, dup = await append(pool, [new_delivery("stripe", ev), new_delivery("stripe", ev)])
    assert await _process(pool, first.id) == "applied"
    async with pool.acquire() as conn:
        d = await repo.fetch_delivery(conn, dup.id)
        assert d is not None
        with pytest.raises(asyncpg.UniqueViolationError):
            await repo.record_outcome(conn, d, outcome="applied")


async def test_out_of_order_and_missing_predecessor(pool: asyncpg.Pool) -> None:
    sub_id = uid("sub_")
    created = stripe_event("subscription_created.json", object_id=sub_id, created=1_700_000_000)

    def cancel(obj: dict[str, Any]) -> None:
        obj["cancel_at_period_end"] = True

    updated = stripe_event(
        "subscription_updated.json", object_id=sub_id, created=1_700_000_100, change=cancel
    )
    d_created, d_updated = await append(
        pool, [new_delivery("stripe", created), new_delivery("stripe", updated)]
    )
    # The update arrives first: the object is created from its snapshot, with an anomaly.
    assert await _process(pool, d_updated.id) == "applied"
    assert await _process(pool, d_created.id) == "stale"
    row = await _row(pool, "SELECT * FROM processors.subscriptions WHERE id=$1", sub_id)
    assert row is not None
    assert row["cancel_at_period_end"] is True
    assert row["last_delivery_id"] == d_updated.id
    anomalies = await _row(
        pool,
        """
        SELECT array_agg(kind ORDER BY id) AS kinds, array_agg(delivery_id ORDER BY id) AS ids
        FROM processors.anomalies WHERE object_id = $1
        """,
        sub_id,
    )
    assert anomalies is not None
    assert anomalies["kinds"] == ["missing_predecessor", "out_of_order"]
    assert anomalies["ids"] == [d_updated.id, d_created.id]
    hist = await _row(
        pool,
        "SELECT array_agg(outcome ORDER BY id) AS o FROM processors.history WHERE object_id=$1",
        sub_id,
    )
    assert hist is not None
    assert hist["o"] == ["applied", "stale"]


async def test_unknown_event_type_is_ignored(pool: asyncpg.Pool) -> None:
    ev = stripe_event("plan_created.json")
    (d,) = await append(pool, [new_delivery("stripe", ev)])
    assert await _process(pool, d.id) == "ignored"


async def test_dead_letter_then_replay_after_fix(
    pool: asyncpg.Pool, monkeypatch: pytest.MonkeyPatch
) -> None:
    sub_id = uid("sub_")

    def break_items(obj: dict[str, Any]) -> None:
        obj["items"] = "not-a-list"

    ev = stripe_event("subscription_updated.json", object_id=sub_id, change=break_items)
    d, dup = await append(pool, [new_delivery("stripe", ev), new_delivery("stripe", ev)])
    assert await _process(pool, d.id) == "dead_letter"
    # A duplicate of a dead-lettered event cannot be applied either: it dead-letters too.
    assert await _process(pool, dup.id) == "dead_letter"
    row = await _row(pool, "SELECT * FROM processors.processed WHERE delivery_id=$1", d.id)
    assert row is not None
    assert row["outcome"] == "dead_letter"
    assert "items" in row["error"]
    assert await _row(pool, "SELECT 1 FROM processors.subscriptions WHERE id=$1", sub_id) is None

    # "A fix": a normaliser that tolerates the bad field (as a code fix would).
    real = service.normalize

    def fixed(provider: str, body: bytes, *, account: str) -> Any:
        data = msgspec.json.decode(body)
        data["data"]["object"]["items"] = {"data": []}
        return stripe_norm.normalize(msgspec.json.encode(data), account=account)

    monkeypatch.setattr(service, "normalize", fixed)
    assert await _process(pool, d.id) == "applied"
    assert await _process(pool, dup.id) == "duplicate"
    monkeypatch.setattr(service, "normalize", real)
    row = await _row(pool, "SELECT * FROM processors.processed WHERE delivery_id=$1", d.id)
    assert row is not None
    assert row["outcome"] == "applied"
    assert row["attempts"] == 2
    assert (
        await _row(pool, "SELECT 1 FROM processors.subscriptions WHERE id=$1", sub_id) is not None
    )


async def test_crash_after_state_write_rolls_back_everything(
    pool: asyncpg.Pool, monkeypatch: pytest.MonkeyPatch
) -> None:
    sub_id = uid("sub_")
    ev = stripe_event("subscription_created.json", object_id=sub_id)
    (d,) = await append(pool, [new_delivery("stripe", ev)])

    async def crash(*args: Any, **kwargs: Any) -> bool:
        raise RuntimeError("worker died between the state write and the processed row")

    monkeypatch.setattr(repo, "record_outcome", crash)
    with pytest.raises(RuntimeError):
        await _process(pool, d.id)
    monkeypatch.undo()
    counts = await _row(
        pool,
        """
        SELECT (SELECT count(*) FROM processors.subscriptions WHERE id = $1) AS state,
               (SELECT count(*) FROM processors.history WHERE object_id = $1) AS history,
               (SELECT count(*) FROM processors.subscription_changes WHERE subscription_id = $1) AS changes,
               (SELECT count(*) FROM processors.processed WHERE delivery_id = $2) AS processed
        """,
        sub_id,
        d.id,
    )
    assert counts is not None
    assert dict(counts) == {"state": 0, "history": 0, "changes": 0, "processed": 0}
    assert await _process(pool, d.id) == "applied"
    assert await _process(pool, d.id) == "applied"
    counts = await _row(
        pool,
        """
        SELECT (SELECT count(*) FROM processors.history WHERE object_id = $1) AS history,
               (SELECT count(*) FROM processors.subscription_changes WHERE subscription_id = $1) AS changes
        """,
        sub_id,
    )
    assert counts is not None
    assert dict(counts) == {"history": 1, "changes": 1}


async def test_concurrent_workers_on_one_subscription_serialise(pool: asyncpg.Pool) -> None:
    sub_id = uid("sub_")
    events = []
    for i in range(16):

        def qty(obj: dict[str, Any], i: int = i) -> None:
            obj["items"]["data"][0]["quantity"] = i + 1
            obj["items"]["data"][0]["price"]["unit_amount"] = 1000

        events.append(
            stripe_event(
                "subscription_updated.json", object_id=sub_id, created=1_750_000_000 + i, change=qty
            )
        )
    appended = await append(pool, [new_delivery("stripe", e) for e in reversed(events)])
    outcomes = await asyncio.gather(*(_process(pool, a.id) for a in appended))
    assert set(outcomes) <= {"applied", "stale"}
    assert "applied" in outcomes
    row = await _row(pool, "SELECT * FROM processors.subscriptions WHERE id=$1", sub_id)
    assert row is not None
    assert row["mrr"] == 16 * 1000
    assert row["version"].startswith(f"{1_750_000_015:012d}.")
    hist = await pool.fetch(
        "SELECT version, outcome FROM processors.history WHERE object_id=$1 ORDER BY id", sub_id
    )
    assert len(hist) == 16
    # Serialised: every applied update saw the one before it, so applied versions only increase.
    applied = [h["version"] for h in hist if h["outcome"] == "applied"]
    assert applied == sorted(applied)
    assert applied[-1] == row["version"]
    # The change history chains: each row's mrr_before is the previous row's mrr_after.
    changes = await pool.fetch(
        "SELECT kind, mrr_before, mrr_after FROM processors.subscription_changes "
        "WHERE subscription_id=$1 ORDER BY id",
        sub_id,
    )
    for prev, cur in itertools.pairwise(changes):
        assert cur["mrr_before"] == prev["mrr_after"]
    assert changes[-1]["mrr_after"] == 16_000


async def test_chargebee_event_updates_every_resource_it_carries(pool: asyncpg.Pool) -> None:
    ev = load_chargebee("subscription_created")
    ev["id"] = uid("ev_")
    account = uid("site-")
    (d,) = await append(pool, [new_delivery("chargebee", ev, account=account)])
    assert await _process(pool, d.id) == "applied"
    sub = await _row(
        pool,
        "SELECT * FROM processors.subscriptions WHERE provider='chargebee' AND account=$1",
        account,
    )
    assert sub is not None
    assert (sub["id"], sub["status"], sub["currency"], sub["mrr"]) == (
        "16BPgETyVrQVHGh1",
        "active",
        "INR",
        11667,
    )
    assert sub["version"] == f"{1702645601793:016d}"
    cust = await _row(pool, "SELECT * FROM processors.customers WHERE account=$1", account)
    inv = await _row(pool, "SELECT * FROM processors.invoices WHERE account=$1", account)
    assert cust is not None
    assert cust["id"] == "sarah"
    assert inv is not None
    assert (inv["status"], inv["total"], inv["amount_paid"]) == ("paid", 11667, 11667)
    anomalies = await _row(
        pool, "SELECT count(*) AS n FROM processors.anomalies WHERE account=$1", account
    )
    assert anomalies is not None
    assert anomalies["n"] == 0
