"""Group commit on real PostgreSQL: batching, back-pressure, failures, timeouts."""

from __future__ import annotations

import asyncio
import uuid
from datetime import UTC, datetime

import asyncpg
import pytest

from audit.append import Appended, NewDelivery, append_deliveries
from audit.checkpoints import log_origin
from audit.note import parse_verifier_key
from audit.verify import verify_tree
from ingest.appender import Appender
from ingest.errors import CommitFailed, CommitTimeout, Overloaded
from ledgerhook.db import create_pool
from ledgerhook.settings import Secret, Settings
from tests.conftest import PUBLIC_KEY, free_port, superuser
from tests.integration.audit_helpers import integrate


def delivery(event_id: str | None = None) -> NewDelivery:
    eid = event_id or f"evt_{uuid.uuid4().hex}"
    return NewDelivery(
        received_at=datetime.now(UTC),
        provider="stripe",
        endpoint="default",
        account="acct_test",
        event_id=eid,
        event_type="customer.updated",
        event_created=1700000000,
        object_id="cus_1",
        source_address="127.0.0.1",
        content_type="application/json",
        headers="[]",
        verification="stripe-v1:key=test",
        body=f'{{"id":"{eid}"}}'.encode(),
    )


async def test_concurrent_appends_share_commits(
    fresh_settings: Settings, fresh_pool: asyncpg.Pool
) -> None:
    appender = Appender(fresh_pool, max_batch=64, max_pending=10_000, commit_timeout=10)
    appender.start()
    try:
        shared = delivery("evt_dup")
        rows = await asyncio.gather(
            *(appender.append(delivery()) for _ in range(300)),
            appender.append(shared),
            appender.append(shared),
        )
    finally:
        await appender.stop()
    ids = [r.id for r in rows]
    assert len(set(ids)) == 302
    assert rows[-1].duplicate_of == rows[-2].id
    async with fresh_pool.acquire() as conn:
        # Rows of one group commit share its transaction: commits were shared, and bounded.
        batches = [
            r["n"]
            for r in await conn.fetch(
                "SELECT count(*) AS n FROM audit.deliveries GROUP BY txid ORDER BY 1"
            )
        ]
        assert sum(batches) == 302 and len(batches) < 302 and max(batches) <= 64
        assert await integrate(conn) == 302
        result = await verify_tree(
            conn, verifiers=[parse_verifier_key(PUBLIC_KEY)], origin=log_origin(fresh_settings)
        )
        assert result.ok and result.tree_size == 302, result.describe()


async def test_overload_is_refused_at_once(fresh_pool: asyncpg.Pool) -> None:
    appender = Appender(fresh_pool, max_batch=1, max_pending=2, commit_timeout=10)
    appender.start()
    try:
        results = await asyncio.gather(
            *(appender.append(delivery()) for _ in range(10)), return_exceptions=True
        )
    finally:
        await appender.stop()
    refused = [r for r in results if isinstance(r, Overloaded)]
    stored = [r for r in results if isinstance(r, Appended)]
    assert refused and stored
    assert len(refused) + len(stored) == 10


async def test_commit_failure_answers_every_waiter(settings: Settings) -> None:
    dead = Settings(database_url=Secret(f"postgresql://postgres@127.0.0.1:{free_port()}/x"))
    pool = await create_pool(dead, min_size=0, max_size=2)
    appender = Appender(pool, max_batch=8, max_pending=100, commit_timeout=5)
    appender.start()
    try:
        results = await asyncio.gather(
            *(appender.append(delivery()) for _ in range(5)), return_exceptions=True
        )
    finally:
        await appender.stop()
        await pool.close()
    assert all(isinstance(r, CommitFailed) for r in results)


async def test_commit_timeout(fresh_settings: Settings, fresh_pool: asyncpg.Pool) -> None:
    conn = await superuser(fresh_settings)
    appender = Appender(fresh_pool, max_batch=8, max_pending=100, commit_timeout=0.3)
    appender.start()
    try:
        # Another writer's uncommitted first delivery of the same event: this one must wait.
        blocker = conn.transaction()
        await blocker.start()
        await append_deliveries(conn, [delivery("evt_contended")])
        with pytest.raises(CommitTimeout):
            await appender.append(delivery("evt_contended"))
        await blocker.rollback()
        # released: the delayed batch commits after all (a retry would be a duplicate row)
    finally:
        await appender.stop()
        await conn.close()
    assert await fresh_pool.fetchval("SELECT count(*) FROM audit.deliveries") == 1
