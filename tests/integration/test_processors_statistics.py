"""Planner statistics kept current by the worker (processors/migrations/0102_analyze_stale.sql).

On a server with autovacuum off (this machine's is), nothing else ever analyzes Ledgerhook's
tables, and a statement prepared while they were empty keeps its first plan as they grow: the
10-minute soak showed the worker's "already settled?" read taking 75 ms per batch at 300 000
rows instead of 0.07 ms. These tests rebuild that situation and check that the worker's job
brings the plan back to the indexes.
"""

from __future__ import annotations

import logging

import asyncpg
import pytest

from ledgerhook.settings import Settings
from processors.repository import SETTLEMENT_SQL
from processors.worker import analyze_stale, warn_if_autovacuum_off

# The worker's settlement read, as a named SQL statement so that EXPLAIN EXECUTE shows the plan
# the session has cached for it.
PREPARE = f"PREPARE settlement(bigint[], text[], text[], text[]) AS {SETTLEMENT_SQL}"
EXECUTE = "settlement('{1,2,3}', '{stripe}', '{acct_s}', '{evt_5}')"


async def _insert_processed(conn: asyncpg.Connection, first: int, last: int) -> None:
    await conn.execute(
        """
        INSERT INTO processors.processed
            (delivery_id, provider, account, event_id, event_type, outcome)
        SELECT i, 'stripe', 'acct_s', 'evt_' || i, 'invoice.paid', 'applied'
        FROM generate_series($1::bigint, $2::bigint) i
        """,
        first,
        last,
    )
    # A backend sends its table counters at most once a second; the job reads them.
    await conn.execute("SELECT pg_stat_force_next_flush()")


async def _plan(conn: asyncpg.Connection) -> str:
    rows = await conn.fetch(f"EXPLAIN EXECUTE {EXECUTE}")
    return "\n".join(r[0] for r in rows)


async def test_a_plan_cached_on_empty_tables_is_replanned_after_the_job(
    fresh_pool: asyncpg.Pool,
) -> None:
    async with fresh_pool.acquire() as conn:
        await conn.execute(PREPARE)
        for _ in range(6):  # the sixth run on is planned once, generically, and cached
            await conn.fetch(f"EXECUTE {EXECUTE}")
        await _insert_processed(conn, 1, 50000)
        # What the soak met: the whole table read for three ids (autovacuum, where it is on,
        # has not had its minute yet).
        assert "Seq Scan on processed" in await _plan(conn)

        analyzed = await analyze_stale({"pool": fresh_pool})
        assert "processors.processed" in analyzed

        fresh = await _plan(conn)
        assert "Seq Scan" not in fresh
        assert "processed_pkey" in fresh
        assert "Index Scan using processed_event_once" in fresh


async def test_only_tables_with_enough_changes_are_analyzed(
    fresh_pool: asyncpg.Pool, fresh_settings: Settings
) -> None:
    async with fresh_pool.acquire() as conn:
        await analyze_stale({"pool": fresh_pool})  # whatever migrate left
        assert await analyze_stale({"pool": fresh_pool}) == []
        # Below autovacuum_analyze_threshold (50) changes: nothing to do.
        await _insert_processed(conn, 1, 10)
        assert await analyze_stale({"pool": fresh_pool}) == []
        await _insert_processed(conn, 11, 200)
        assert await analyze_stale({"pool": fresh_pool}) == ["processors.processed"]
        assert await analyze_stale({"pool": fresh_pool}) == []
    # Runs as the table owner, not as the application role it is called by.
    su = await asyncpg.connect(fresh_settings.database_url.reveal())
    try:
        last = await su.fetchval(
            "SELECT last_analyze FROM pg_stat_user_tables "
            "WHERE schemaname = 'processors' AND relname = 'processed'"
        )
        assert last is not None
    finally:
        await su.close()


async def test_the_worker_warns_when_autovacuum_is_off(
    fresh_pool: asyncpg.Pool, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.WARNING, logger="processors.worker")
    async with fresh_pool.acquire() as conn:
        off = await conn.fetchval("SHOW autovacuum") == "off"
        assert await warn_if_autovacuum_off(conn) is off
    assert any("autovacuum is off" in r.getMessage() for r in caplog.records) is off
