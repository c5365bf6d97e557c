"""Concurrent group commits: several batches in flight per process, other writers beside them.

Nothing orders the batches (the sequencer does, later): a batch that fails, or another writer
appending at the same time, must cost 503s for that batch only, never a 2xx without its row, and
every stored row must end up in the tree exactly once."""

from __future__ import annotations

import asyncio

import asyncpg
import msgspec

from audit.append import Appended, append_deliveries
from audit.checkpoints import log_origin
from audit.note import parse_verifier_key
from audit.verify import verify_tree
from ingest.appender import Appender
from ingest.errors import CommitFailed
from ledgerhook.settings import Settings
from tests.conftest import PUBLIC_KEY
from tests.integration.audit_helpers import integrate
from tests.integration.test_ingest_appender import delivery


async def _integrated_and_verified(pool: asyncpg.Pool, settings: Settings, count: int) -> None:
    async with pool.acquire() as conn:
        assert await integrate(conn) == count
        result = await verify_tree(
            conn, verifiers=[parse_verifier_key(PUBLIC_KEY)], origin=log_origin(settings)
        )
        assert result.ok and result.leaves_checked == count, result.describe()


async def test_batches_in_flight_all_land(
    fresh_settings: Settings, fresh_pool: asyncpg.Pool
) -> None:
    appender = Appender(fresh_pool, max_batch=16, max_pending=10_000, commit_timeout=10, pipeline=3)
    appender.start()
    try:
        shared = delivery("evt_shared")
        rows = []
        for _wave in range(5):  # waves keep several batches in flight, duplicates across them
            rows += await asyncio.gather(
                *(appender.append(delivery()) for _ in range(40)),
                appender.append(shared),
            )
    finally:
        await appender.stop()
    assert len({r.id for r in rows}) == 205
    assert sum(1 for r in rows if r.duplicate) == 4
    async with fresh_pool.acquire() as conn:
        assert await conn.fetchval("SELECT count(DISTINCT txid) FROM audit.deliveries") > 5
    await _integrated_and_verified(fresh_pool, fresh_settings, 205)


async def test_failed_batch_in_the_pipeline(
    fresh_settings: Settings, fresh_pool: asyncpg.Pool
) -> None:
    # One delivery per batch, four in flight: the bad ones fail (CHECK constraint) alone.
    appender = Appender(fresh_pool, max_batch=1, max_pending=1000, commit_timeout=10, pipeline=4)
    appender.start()
    bad = msgspec.structs.replace(delivery("evt_bad"), provider="paypal")
    items = [bad if i in (3, 9) else delivery() for i in range(20)]
    try:
        results = await asyncio.gather(*(appender.append(d) for d in items), return_exceptions=True)
    finally:
        await appender.stop()
    assert [isinstance(r, CommitFailed) for r in results] == [i in (3, 9) for i in range(20)]
    stored = [r for r in results if isinstance(r, Appended)]
    assert len({r.id for r in stored}) == 18
    async with fresh_pool.acquire() as conn:
        assert await conn.fetchval("SELECT count(*) FROM audit.deliveries") == 18
    await _integrated_and_verified(fresh_pool, fresh_settings, 18)


async def test_another_writer_appends_beside(
    fresh_settings: Settings, fresh_pool: asyncpg.Pool
) -> None:
    appender = Appender(fresh_pool, max_batch=8, max_pending=10_000, commit_timeout=10, pipeline=2)
    appender.start()

    async def other() -> int:
        n = 0
        for _i in range(20):
            async with fresh_pool.acquire() as conn:
                n += len(await append_deliveries(conn, [delivery(), delivery()]))
            await asyncio.sleep(0)
        return n

    try:
        results = await asyncio.gather(other(), *(appender.append(delivery()) for _ in range(200)))
    finally:
        await appender.stop()
    total = results[0] + 200
    assert all(isinstance(r, Appended) for r in results[1:])
    await _integrated_and_verified(fresh_pool, fresh_settings, total)
