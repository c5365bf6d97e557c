"""Pipelined group commits: several batches in flight, each hashed against the head the ones
before it will leave. A batch that fails, or another writer moving the head, must cost retries
or 503s for that batch only, never a 2xx without its row or a broken chain."""

from __future__ import annotations

import asyncio

import asyncpg
import msgspec

from audit.chain import Appended, append_deliveries
from audit.verify import verify_chain
from ingest.appender import Appender
from ingest.errors import CommitFailed
from ledgerhook.settings import Settings
from tests.conftest import CHECKPOINT_KEY, superuser
from tests.integration.test_ingest_appender import delivery


async def _verify(settings: Settings, count: int) -> None:
    conn = await superuser(settings)
    try:
        result = await verify_chain(conn, key=CHECKPOINT_KEY.encode())
        assert result.ok and result.checked == count, result.describe()
    finally:
        await conn.close()


async def test_pipelined_batches_keep_one_chain(
    fresh_settings: Settings, fresh_pool: asyncpg.Pool
) -> None:
    sizes: list[int] = []
    appender = Appender(
        fresh_pool,
        max_batch=16,
        max_pending=10_000,
        commit_timeout=10,
        on_commit=lambda rows: sizes.append(len(rows)),
        pipeline=3,
    )
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
    assert sorted(r.id for r in rows) == list(range(1, 206))
    assert sum(1 for r in rows if r.duplicate) == 4
    assert len(sizes) > 5
    await _verify(fresh_settings, 205)


async def test_failed_batch_in_the_pipeline(
    fresh_settings: Settings, fresh_pool: asyncpg.Pool
) -> None:
    # One delivery per batch, four in flight: the bad ones fail (CHECK constraint), and every
    # batch hashed after them must notice its guess was wrong and land correctly anyway.
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
    assert sorted(r.id for r in stored) == list(range(1, 19))
    async with fresh_pool.acquire() as conn:
        assert await conn.fetchval("SELECT count(*) FROM audit.deliveries") == 18
    await _verify(fresh_settings, 18)


async def test_another_writer_moves_the_head(
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
    async with fresh_pool.acquire() as conn:
        assert await conn.fetchval("SELECT count(*) FROM audit.deliveries") == total
    await _verify(fresh_settings, total)
