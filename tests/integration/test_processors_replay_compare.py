"""``replay --rebuild --compare``: one command, one snapshot, every table, readable differences."""

from __future__ import annotations

import asyncio
import time

import asyncpg

from ledgerhook.db import connect
from ledgerhook.settings import Settings
from processors.replay import compare, rebuild_and_compare
from processors.service import process_batch
from tests.conftest import superuser
from tests.integration.processors_helpers import (
    append,
    chargebee_sequence,
    new_delivery,
    stripe_sequence,
    uid,
)
from tests.integration.replay_helpers import cli


async def _run(pool: asyncpg.Pool, tag: str, *, process: bool = True) -> list[int]:
    """Both providers' sequences under accounts of their own; applied unless ``process`` is off."""
    deliveries = [new_delivery("stripe", ev, account=f"acct_{tag}") for ev in stripe_sequence(tag)]
    deliveries += [
        new_delivery("chargebee", ev, account=f"site_{tag}") for ev in chargebee_sequence(tag)
    ]
    ids = [a.id for a in await append(pool, deliveries)]
    if process:
        async with pool.acquire() as conn:
            await process_batch(conn, ids)
    return ids


async def test_one_command_modes_and_usage_errors(
    fresh_settings: Settings, fresh_pool: asyncpg.Pool
) -> None:
    await _run(fresh_pool, uid())
    backlog = await _run(fresh_pool, uid(), process=False)

    # Rebuild and compare in one run: the backlog is reported, not mistaken for differences.
    both = cli(fresh_settings, "replay", "--rebuild", "--compare")
    assert both.returncode == 0, both.stdout + both.stderr
    assert "live state matches the rebuild" in both.stdout
    assert f"not compared: {len(backlog)} deliveries not processed yet" in both.stdout
    assert "replay --compare: rebuilt" in both.stderr  # progress and summary on stderr
    alone = cli(fresh_settings, "replay", "--compare")
    assert alone.returncode == 0, alone.stdout + alone.stderr
    assert "matches" in alone.stdout

    # --rebuild alone rebuilds the whole log, backlog included: live lacks what is not applied.
    rebuilt = cli(fresh_settings, "replay", "--rebuild")
    assert rebuilt.returncode == 0, rebuilt.stdout + rebuilt.stderr
    assert "into processors_replay" in rebuilt.stdout
    async with fresh_pool.acquire() as conn:
        diffs = await compare(conn)
    assert diffs
    assert {d.kind for d in diffs} == {"missing_live"}
    assert {d.delivery_id for d in diffs if d.table == "processed"} == set(backlog)

    for args in (
        (),
        ("--compare", "--delivery", "1"),
        ("--rebuild", "--dead-letters"),
        ("--delivery", "1", "--dead-letters"),
    ):
        usage = cli(fresh_settings, "replay", *args)
        assert usage.returncode == 2, (args, usage.stdout, usage.stderr)
        assert "usage:" in usage.stderr


async def _wait_for_lock(su: asyncpg.Connection, pid: int) -> None:
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        if await su.fetchval(
            "SELECT wait_event_type = 'Lock' FROM pg_stat_activity WHERE pid = $1", pid
        ):
            return
        await asyncio.sleep(0.01)
    raise AssertionError("the comparison never waited")


async def test_the_comparison_holds_one_snapshot_while_a_batch_commits(
    fresh_settings: Settings, fresh_pool: asyncpg.Pool
) -> None:
    await _run(fresh_pool, uid())
    later = await _run(fresh_pool, uid(), process=False)
    su = await superuser(fresh_settings)
    conn = await connect(fresh_settings.database_url)
    try:
        # Hold the comparison after its snapshot is taken (its first statement) and before it
        # rebuilds, by holding a lock its TRUNCATE of processors_replay must wait for ...
        hold = su.transaction()
        await hold.start()
        await su.execute("LOCK TABLE processors_replay.anomalies IN ACCESS SHARE MODE")
        task = asyncio.create_task(rebuild_and_compare(conn))
        await _wait_for_lock(su, conn.get_server_pid())
        # ... while a worker's batch commits the backlog.
        async with fresh_pool.acquire() as worker:
            results = await process_batch(worker, later)
        assert not [r for r in results.values() if isinstance(r, BaseException)]
        await hold.rollback()
        report = await asyncio.wait_for(task, 60)
    finally:
        await su.close()
        await conn.close()
    # The rebuild and the live side both stand at the snapshot: equal, with the batch unseen.
    assert [d.describe() for d in report.differences] == []
    assert report.stats.backlog == len(later)
    # Live as it is now is ahead of that rebuild (what comparing outside the snapshot would
    # have reported) ...
    async with fresh_pool.acquire() as c:
        assert await compare(c)
        # ... and a comparison run now matches again.
        again = await rebuild_and_compare(c)
    assert again.differences == []
    assert again.stats.backlog == 0


async def test_every_table_is_compared_and_described(
    fresh_settings: Settings, fresh_pool: asyncpg.Pool
) -> None:
    tag = uid()
    ids = await _run(fresh_pool, tag)
    su = await superuser(fresh_settings)
    try:
        sub = f"sub_{tag}"
        await su.execute(
            "UPDATE processors.subscription_changes SET mrr_delta = mrr_delta + 1 "
            "WHERE id = (SELECT max(id) FROM processors.subscription_changes WHERE subscription_id = $1)",
            sub,
        )
        history_id, delivery_id = await su.fetchrow(
            "SELECT id, delivery_id FROM processors.history "
            "WHERE object_id = $1 AND outcome = 'applied' ORDER BY id LIMIT 1",
            sub,
        )
        await su.execute(
            "UPDATE processors.history SET outcome = 'stale' WHERE id = $1", history_id
        )
        anomaly = await su.fetchrow(
            "DELETE FROM processors.anomalies WHERE id = (SELECT min(id) FROM processors.anomalies "
            "WHERE account = $1) RETURNING kind, object_id, delivery_id",
            f"site_{tag}",
        )
        assert anomaly is not None
        await su.execute(
            "UPDATE processors.processed SET outcome = 'ignored', object_type = NULL, "
            "object_id = NULL, change = NULL WHERE delivery_id = $1",
            ids[0],
        )
        await su.execute(
            "UPDATE processors.customers SET email = 'x@example.com', updated_at = now() - interval '1 day' "
            "WHERE id = $1",
            f"cus_{tag}",
        )
        # Derived from processing, not compared: when a row was written, how many attempts.
        await su.execute(
            "UPDATE processors.processed SET attempts = 3, processed_at = now() - interval '1 day' "
            "WHERE delivery_id = $1",
            ids[1],
        )
    finally:
        await su.close()

    result = cli(fresh_settings, "replay", "--rebuild", "--compare")
    assert result.returncode == 1, result.stdout + result.stderr
    out = result.stdout
    acct = f"stripe/acct_{tag}"
    assert f"subscription change of {acct}/{sub}, delivery " in out
    assert "mrr_delta: live " in out
    assert (
        f"history of subscription {acct}/{sub}, delivery {delivery_id}: outcome: "
        f'live "stale", rebuilt "applied"'
    ) in out
    assert (
        f"anomaly {anomaly['kind']} on " in out
        and f"/{anomaly['object_id']}, delivery {anomaly['delivery_id']}: "
        "only in the rebuild (missing from live)"
        in out
    )
    assert f'by delivery {ids[0]}: outcome: live "ignored", rebuilt "applied"' in out
    # A column that drifted from its snapshot is reported by its own name.
    assert f'customer {acct}/cus_{tag}: email: live "x@example.com", rebuilt ' in out
    assert "(column)" not in out
    assert "attempts" not in out
    assert "processed_at" not in out
    assert "updated_at" not in out
    assert "5 rows differ" in out
