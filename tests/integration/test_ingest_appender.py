"""Group commit on real PostgreSQL: batching, back-pressure, failures, and the chain."""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import Sequence
from datetime import UTC, datetime

import asyncpg
import pytest

from audit.chain import Appended, NewDelivery
from audit.verify import verify_chain
from ingest.appender import Appender
from ingest.errors import CommitFailed, CommitTimeout, Overloaded
from ledgerhook.db import create_pool
from ledgerhook.settings import Secret, Settings
from tests.conftest import CHECKPOINT_KEY, free_port, superuser


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
    batches: list[int] = []

    def on_commit(rows: Sequence[Appended]) -> None:
        batches.append(len(rows))

    appender = Appender(
        fresh_pool, max_batch=64, max_pending=10_000, commit_timeout=10, on_commit=on_commit
    )
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
    assert sorted(ids) == list(range(1, 303))
    assert sum(batches) == 302
    assert len(batches) < 302 and max(batches) <= 64  # commits were shared, and bounded
    assert rows[-1].duplicate_of == rows[-2].id
    conn = await superuser(fresh_settings)
    try:
        result = await verify_chain(conn, key=CHECKPOINT_KEY.encode())
        assert result.ok and result.head_id == 302, result.describe()
    finally:
        await conn.close()


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
        async with conn.transaction():  # hold the chain lock: the commit cannot finish in time
            await conn.execute("SELECT pg_advisory_xact_lock($1)", 0x4C48_0001)
            with pytest.raises(CommitTimeout):
                await appender.append(delivery())
        # released: the delayed batch commits after all (a retry would be a duplicate row)
    finally:
        await appender.stop()
        await conn.close()
    assert await fresh_pool.fetchval("SELECT count(*) FROM audit.deliveries") == 1
