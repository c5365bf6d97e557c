"""A sync's per-page state reads probe by key, on fresh tables and large ones.

A sync runs before anything analyzed the state tables (this project's PostgreSQL runs with
autovacuum off, and the worker's analyze may not have run yet), and it applies its pages itself.
Its read of the objects' current identities must not read every state row of the account for
each page (as a join it did, which made `make bench-sync` quadratic: 306 objects/s at 100 000
customers, PostgreSQL busy on that one statement), and it keeps statistics current for the
applier's reads, as the worker does.
"""

from __future__ import annotations

import json

import asyncpg
import msgspec
import pytest
import respx

from ledgerhook.settings import Settings
from processors.sync import run_sync, runner
from processors.sync.api import Fetched
from processors.sync.store import SyncTarget, deliveries
from tests.conftest import FIXTURES
from tests.integration.sync_helpers import ApiStandIn, sync_settings

ROWS = 20_000
PAGE = 100


async def _many_customers(conn: asyncpg.Connection) -> None:
    """ROWS customers of one account, never analyzed."""
    await conn.execute(
        "INSERT INTO processors.customers (provider, account, id, data, version, last_delivery_id) "
        "SELECT 'stripe', 'acct_big', 'obj_' || g, $2::jsonb, '0', g "
        "FROM generate_series(1, $1) AS g",
        ROWS,
        msgspec.json.encode({"type": "customer"}).decode(),
    )


async def _reads(conn: asyncpg.Connection, table: str) -> dict[str, int]:
    row = await conn.fetchrow(
        "SELECT seq_scan, idx_scan, idx_tup_fetch FROM pg_stat_xact_user_tables "
        "WHERE relid = $1::regclass",
        f"processors.{table}",
    )
    assert row is not None
    return dict(row)


async def test_a_sync_page_reads_only_its_own_objects_identities(
    fresh_pool: asyncpg.Pool,
) -> None:
    event = json.loads((FIXTURES / "stripe" / "customer_updated.json").read_bytes())
    raw = json.dumps(event["data"]["object"]).encode()
    async with fresh_pool.acquire() as conn:
        await _many_customers(conn)
        objects = [
            Fetched(kind="customer", object_id=f"obj_{i}", raw=raw) for i in range(1, PAGE + 1)
        ]
        target = SyncTarget(provider="stripe", endpoint="default", account="acct_big")
        async with conn.transaction():
            out = await deliveries(
                conn, target, objects, fetched_at=1, headers="{}", key_fingerprint="k"
            )
            reads = await _reads(conn, "customers")
    assert len(out) == PAGE
    assert reads["seq_scan"] == 0 and reads["idx_tup_fetch"] <= PAGE, reads


async def test_a_long_sync_keeps_the_state_tables_statistics_current(
    fresh_settings: Settings,
    fresh_pool: asyncpg.Pool,
    respx_mock: respx.MockRouter,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """The applier's state read (``= ANY`` on the primary key) is planned well only with
    statistics, so a sync refreshes stale ones as the worker does (here after every page)."""
    calls: list[list[str]] = []
    original = runner._analyze_stale

    async def spy(pool: asyncpg.Pool) -> None:
        await original(pool)  # the real function runs: its grant and SQL are exercised
        calls.append([])

    monkeypatch.setattr(runner, "ANALYZE_EVERY_SECONDS", 0.0)
    monkeypatch.setattr(runner, "_analyze_stale", spy)
    ApiStandIn(respx_mock, count=250)
    summary = await run_sync(fresh_pool, sync_settings(fresh_settings), "stripe", types="customers")
    assert summary.lists[0].applied == 250
    assert len(calls) == summary.lists[0].pages == 3
