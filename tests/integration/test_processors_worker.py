"""The arq worker with real Redis: burst workers, the sweeper, and a worker killed mid-batch."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import asyncpg
import pytest
import pytest_asyncio
from arq.connections import ArqRedis, RedisSettings, create_pool

from ledgerhook import metrics
from ledgerhook.jobs import deserialize, serialize
from ledgerhook.settings import Settings
from processors.worker import enqueue, run_sweep
from tests.conftest import CHECKPOINT_KEY, REDIS_URL, RUN_ID
from tests.integration.processors_helpers import (
    append,
    new_delivery,
    own_queue,
    run_burst,
    stripe_event,
    uid,
)

LEDGERHOOK = Path(sys.executable).with_name("ledgerhook")


@pytest_asyncio.fixture
async def redis() -> AsyncIterator[ArqRedis]:
    r = await create_pool(
        RedisSettings.from_dsn(REDIS_URL), job_serializer=serialize, job_deserializer=deserialize
    )
    yield r
    await r.aclose()


def _mixed_events(n: int) -> list[dict[str, Any]]:
    """Customer updates, contended subscription updates, and unknown types, from real fixtures."""
    subs = [uid("sub_") for _ in range(3)]
    events: list[dict[str, Any]] = []
    for i in range(n):
        if i % 3 == 0:
            events.append(stripe_event("customer_updated.json", object_id=uid("cus_")))
        elif i % 3 == 1:
            events.append(
                stripe_event(
                    "subscription_updated.json",
                    object_id=subs[i % len(subs)],
                    created=1_760_000_000 + i,
                )
            )
        else:
            events.append(stripe_event("product_updated.json"))
    return events


async def _counts(pool: asyncpg.Pool, first: int, last: int) -> asyncpg.Record:
    async with pool.acquire() as conn:
        row = await conn.fetchrow(
            """
            SELECT (SELECT count(*) FROM audit.deliveries WHERE id BETWEEN $1 AND $2) AS deliveries,
                   (SELECT count(*) FROM processors.processed WHERE delivery_id BETWEEN $1 AND $2)
                       AS processed,
                   (SELECT count(*) FROM (SELECT delivery_id FROM processors.history
                                          WHERE delivery_id BETWEEN $1 AND $2
                                          GROUP BY delivery_id HAVING count(*) > 1) x) AS twice
            """,
            first,
            last,
        )
    assert row is not None
    return row


async def test_burst_worker_applies_enqueued_deliveries(
    settings: Settings, pool: asyncpg.Pool, redis: ArqRedis
) -> None:
    s = own_queue(settings)
    appended = await append(pool, [new_delivery("stripe", e) for e in _mixed_events(12)])
    ids = [a.id for a in appended]
    assert await enqueue(redis, s, ids) == []
    assert await enqueue(redis, s, ids) == ids  # same job ids: queued once
    await run_burst(s)
    c = await _counts(pool, ids[0], ids[-1])
    assert (c["deliveries"], c["processed"], c["twice"]) == (12, 12, 0)


async def test_sweeper_processes_everything_when_nothing_was_enqueued(
    fresh_settings: Settings, fresh_pool: asyncpg.Pool, redis: ArqRedis
) -> None:
    s = own_queue(fresh_settings, sweep_after_seconds=5.0, sweep_batch=1000)
    old = await append(
        fresh_pool, [new_delivery("stripe", e, age_seconds=60) for e in _mixed_events(30)]
    )
    young = await append(
        fresh_pool, [new_delivery("stripe", stripe_event("customer_updated.json"))]
    )

    result = await run_sweep(fresh_pool, redis, s)
    assert result.due == [a.id for a in old]  # the young one waits for its own job
    assert result.backlog == 31
    assert metrics.queue_depth._value.get() == 31  # type: ignore[attr-defined]
    assert result.oldest_age_seconds >= 59
    await run_burst(s)

    result = await run_sweep(fresh_pool, redis, s)
    assert result.due == []
    # The young one had no job, but the worker's batches top themselves up with pending
    # deliveries (processors.batcher), so it was applied along with the swept ones.
    assert result.backlog == 0
    assert result.watermark == young[0].id
    c = await _counts(fresh_pool, old[0].id, old[-1].id)
    assert (c["deliveries"], c["processed"], c["twice"]) == (30, 30, 0)
    assert young[0].id not in result.due


def _worker_env(settings: Settings, **processors: Any) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("LEDGERHOOK_")}
    env.update(
        LEDGERHOOK_ENV_FILE="",  # never a developer's .env
        LEDGERHOOK_DATABASE_URL=settings.database_url.reveal(),
        LEDGERHOOK_REDIS_URL=REDIS_URL,
        LEDGERHOOK_CHECKPOINT_KEY=CHECKPOINT_KEY,
        LEDGERHOOK_LOG_FORMAT="text",
        LEDGERHOOK_LOG_LEVEL="WARNING",
    )
    for key, value in processors.items():
        env[f"LEDGERHOOK_PROCESSORS__{key.upper()}"] = str(value)
    return env


async def test_worker_killed_mid_batch_then_restart_processes_everything_once(
    fresh_settings: Settings, fresh_pool: asyncpg.Pool
) -> None:
    env = _worker_env(
        fresh_settings,
        queue_name=uid(f"lh-test-{RUN_ID}-kill-"),
        job_timeout_seconds=1,
        sweep_after_seconds=0,
        sweep_interval_seconds=1,
        max_jobs=4,
    )
    appended = await append(
        fresh_pool, [new_delivery("stripe", e, age_seconds=30) for e in _mixed_events(600)]
    )
    first, last = appended[0].id, appended[-1].id

    # Nothing is enqueued: the worker's start-up sweep finds the deliveries in PostgreSQL.
    proc = subprocess.Popen([str(LEDGERHOOK), "worker"], env=env)
    try:
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline:
            c = await _counts(fresh_pool, first, last)
            if c["processed"] >= 30:
                break
            time.sleep(0.02)
        proc.send_signal(signal.SIGKILL)
        proc.wait(timeout=10)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
    mid = await _counts(fresh_pool, first, last)
    assert 0 < mid["processed"] < 600, "the kill must land mid-batch"

    # Restart: jobs the killed worker had started stay marked in progress in Redis; the sweep
    # frees them once they are older than any live job could be, and everything gets done.
    # (Not --burst: a cron job the killed worker had started stays queued for its own timeout.)
    proc = subprocess.Popen([str(LEDGERHOOK), "worker"], env=env)
    try:
        deadline = time.monotonic() + 90
        while time.monotonic() < deadline:
            c = await _counts(fresh_pool, first, last)
            if c["processed"] == 600:
                break
            time.sleep(0.1)
    finally:
        proc.send_signal(signal.SIGTERM)
        try:
            proc.wait(timeout=15)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()
    c = await _counts(fresh_pool, first, last)
    assert (c["deliveries"], c["processed"], c["twice"]) == (600, 600, 0)
    async with fresh_pool.acquire() as conn:
        settled = await conn.fetchval(
            "SELECT count(*) FROM processors.processed WHERE outcome IN ('applied','stale','ignored')"
        )
    assert settled == 600  # every event distinct: each settled exactly once


@pytest.mark.parametrize("tries", [1, 3, 10])
def test_backoff_grows_and_is_capped(tries: int) -> None:
    from processors.worker import backoff

    assert 2 <= backoff(tries) <= 60
    assert backoff(tries + 1) >= backoff(tries)


async def test_sweeper_frees_a_job_a_dead_worker_left_in_progress(
    settings: Settings, pool: asyncpg.Pool, redis: ArqRedis
) -> None:
    from arq.constants import in_progress_key_prefix

    from ledgerhook.jobs import job_id

    s = own_queue(settings, sweep_after_seconds=0.0, job_timeout_seconds=5)
    (d,) = await append(
        pool,
        [
            new_delivery(
                "stripe",
                stripe_event("customer_updated.json", object_id=uid("cus_")),
                age_seconds=5,
            )
        ],
    )
    assert await enqueue(redis, s, [d.id]) == []
    key = in_progress_key_prefix + job_id(s, d.id)
    in_progress_timeout = 3610.0
    # A worker died 20 s into this job: its marker would block the job for another hour.
    await redis.psetex(key, int((in_progress_timeout - 20) * 1000), b"1")
    await run_sweep(pool, redis, s, in_progress_timeout_s=in_progress_timeout)
    assert await redis.exists(key) == 0
    await run_burst(s)
    async with pool.acquire() as conn:
        assert (
            await conn.fetchval(
                "SELECT outcome FROM processors.processed WHERE delivery_id = $1", d.id
            )
            == "applied"
        )


async def test_sweeper_leaves_a_running_job_alone(
    settings: Settings, pool: asyncpg.Pool, redis: ArqRedis
) -> None:
    from arq.constants import in_progress_key_prefix

    from ledgerhook.jobs import job_id

    s = own_queue(settings, sweep_after_seconds=0.0, job_timeout_seconds=60)
    (d,) = await append(
        pool,
        [
            new_delivery(
                "stripe",
                stripe_event("customer_updated.json", object_id=uid("cus_")),
                age_seconds=5,
            )
        ],
    )
    assert await enqueue(redis, s, [d.id]) == []
    key = in_progress_key_prefix + job_id(s, d.id)
    await redis.psetex(key, (3610 - 2) * 1000, b"1")  # started 2 s ago
    await run_sweep(pool, redis, s, in_progress_timeout_s=3610.0)
    assert await redis.exists(key) == 1
    await redis.delete(key)
    await run_burst(s)


async def test_lock_timeout_is_transient_and_retried_later(
    settings: Settings, pool: asyncpg.Pool, monkeypatch: pytest.MonkeyPatch
) -> None:
    from arq import Retry

    import processors.service as service
    from processors.worker import process_delivery_job

    ev = stripe_event("customer_updated.json", object_id=uid("cus_"))
    (d,) = await append(pool, [new_delivery("stripe", ev)])
    monkeypatch.setattr(service, "LOCK_TIMEOUT", "100ms")
    holder = await pool.acquire()
    try:
        tx = holder.transaction()
        await tx.start()
        # Another worker holds this event's lock (e.g. a stuck transaction).
        await holder.execute(
            "SELECT pg_advisory_xact_lock(hashtextextended($1, 0))",
            f"evt\x1fstripe\x1facct_test\x1f{ev['id']}",
        )
        with pytest.raises(Retry) as info:
            await process_delivery_job({"pool": pool, "job_try": 2}, d.id)
        assert info.value.defer_score == 4000
        await tx.rollback()
    finally:
        await pool.release(holder)
    async with pool.acquire() as conn:
        assert (
            await conn.fetchval(
                "SELECT count(*) FROM processors.processed WHERE delivery_id = $1", d.id
            )
            == 0
        )
    assert await process_delivery_job({"pool": pool, "job_try": 3}, d.id) == "applied"
