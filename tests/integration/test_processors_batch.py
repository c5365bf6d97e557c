"""Group apply (``process_batch``) and the worker's ``Batcher``, against real PostgreSQL and Redis.

The batch path must be indistinguishable from processing the same deliveries one by one in id
order: same outcomes, same state, same history, same anomalies. These tests prove it on the real
fixture sequences, shuffled and redelivered, and check that a failure stays its delivery's own.
"""

from __future__ import annotations

import asyncio
import random
import re
from typing import Any

import asyncpg
import pytest
from arq.connections import RedisSettings, create_pool

import processors.repository as repo
import processors.service as service
from audit.append import Appended
from audit.dbtypes import Conn
from ledgerhook.jobs import PROCESS_DELIVERY, deserialize, job_id, serialize
from ledgerhook.settings import Settings
from processors.batcher import Batcher
from processors.errors import DeliveryNotFound
from processors.service import process_batch, process_delivery
from tests.conftest import REDIS_URL
from tests.integration.processors_helpers import (
    append,
    chargebee_sequence,
    new_delivery,
    own_queue,
    stripe_event,
    stripe_sequence,
    uid,
)


def _shuffled_run(account: str, site: str, suffix: str, seed: int) -> list[Any]:
    """Real Stripe and Chargebee lives, a third redelivered, shuffled (deterministic per seed)."""
    rng = random.Random(seed)
    ds = [new_delivery("stripe", ev, account=account) for ev in stripe_sequence(suffix)]
    ds += [new_delivery("chargebee", ev, account=site) for ev in chargebee_sequence(suffix)]
    ds += rng.sample(ds, len(ds) // 3)
    rng.shuffle(ds)
    return ds


async def _snapshot(conn: Conn, accounts: tuple[str, str], first_id: int) -> Any:
    """Everything the deliveries of ``accounts`` produced, delivery ids made relative."""
    out: dict[str, Any] = {}
    rel = "delivery_id - $3"
    out["processed"] = [
        tuple(r)
        for r in await conn.fetch(
            f"SELECT {rel}, outcome, object_type, object_id, change::text, error "
            "FROM processors.processed WHERE account = ANY(ARRAY[$1, $2]) ORDER BY 1",
            *accounts,
            first_id,
        )
    ]
    out["history"] = [
        tuple(r)
        for r in await conn.fetch(
            f"SELECT {rel}, object_type, object_id, version, outcome, change::text "
            "FROM processors.history WHERE account = ANY(ARRAY[$1, $2]) ORDER BY 1, 2, 3",
            *accounts,
            first_id,
        )
    ]
    out["changes"] = [
        tuple(r)
        for r in await conn.fetch(
            f"SELECT {rel}, subscription_id, kind, mrr_before, mrr_after, version "
            "FROM processors.subscription_changes WHERE account = ANY(ARRAY[$1, $2]) "
            "ORDER BY 1, 2",
            *accounts,
            first_id,
        )
    ]
    out["anomalies"] = [
        tuple(r)
        for r in await conn.fetch(
            f"SELECT {rel}, kind, object_type, object_id, detail::text "
            "FROM processors.anomalies WHERE account = ANY(ARRAY[$1, $2]) ORDER BY 1, 2, 3, 4",
            *accounts,
            first_id,
        )
    ]
    for table in repo.TABLES.values():
        out[table] = [
            tuple(r)
            for r in await conn.fetch(
                f"SELECT provider, id, data::text, version, deleted, last_delivery_id - $3 "
                f"FROM processors.{table} WHERE account = ANY(ARRAY[$1, $2]) ORDER BY 1, 2",
                *accounts,
                first_id,
            )
        ]
    return out


async def test_batches_equal_one_by_one_on_shuffled_redelivered_sequences(
    pool: asyncpg.Pool,
) -> None:
    # The same run twice under different accounts (so the rows never meet): once one by one,
    # once in batches of random sizes. Everything they produce must be the same.
    run = uid()
    one = (f"acct_one_{run}", f"site-one-{run}")
    many = (f"acct_many_{run}", f"site-many-{run}")
    a = await append(pool, _shuffled_run(*one, suffix=f"o{run}", seed=7))
    b = await append(pool, _shuffled_run(*many, suffix=f"m{run}", seed=7))
    assert len(a) == len(b)
    # Both runs hold the same events in the same shuffled order; object ids differ by suffix
    # and accounts by name, which the comparison below masks.
    rng = random.Random(11)
    async with pool.acquire() as conn:
        for d in a:
            await process_delivery(conn, d.id)
        ids = [d.id for d in b]
        while ids:
            size = rng.randint(1, 25)
            chunk, ids = ids[:size], ids[size:]
            results = await process_batch(conn, chunk)
            assert all(isinstance(r, str) for r in results.values()), results
        snap_one = await _snapshot(conn, one, a[0].id)
        snap_many = await _snapshot(conn, many, b[0].id)
    text_one = repr(snap_one).replace(f"o{run}", "#").replace(f"one_{run}", "#")
    text_many = repr(snap_many).replace(f"m{run}", "#").replace(f"many_{run}", "#")
    text_one = text_one.replace(f"one-{run}", "#")
    text_many = text_many.replace(f"many-{run}", "#")
    assert snap_one["processed"] and snap_one["history"] and snap_one["anomalies"]
    outcomes = {p[1] for p in snap_many["processed"]}
    assert {"applied", "duplicate", "stale"} <= outcomes
    # stripe_sequence draws fresh event ids (they end the Stripe version strings): mask them.
    assert re.sub(r"evt_[0-9a-f]{12}", "evt_#", text_one) == re.sub(
        r"evt_[0-9a-f]{12}", "evt_#", text_many
    )


async def test_a_failure_stays_the_failing_deliverys_own(pool: asyncpg.Pool) -> None:
    def break_items(obj: dict[str, Any]) -> None:
        obj["items"] = "not-a-list"

    good = stripe_event("customer_updated.json", object_id=uid("cus_"))
    bad = stripe_event("subscription_updated.json", object_id=uid("sub_"), change=break_items)
    unknown = stripe_event("customer_updated.json", object_id=uid("cus_"))
    unknown["type"] = "issuing_card.created"
    d_good, d_dup, d_bad, d_unknown = await append(
        pool,
        [
            new_delivery("stripe", good),
            new_delivery("stripe", good),
            new_delivery("stripe", bad),
            new_delivery("stripe", unknown),
        ],
    )
    missing = d_unknown.id + 10_000_000
    async with pool.acquire() as conn:
        results = await process_batch(conn, [d_unknown.id, d_bad.id, missing, d_dup.id, d_good.id])
        assert results[d_good.id] == "applied"
        assert results[d_dup.id] == "duplicate"
        assert results[d_bad.id] == "dead_letter"
        assert results[d_unknown.id] == "ignored"
        assert isinstance(results[missing], DeliveryNotFound)
        error = await conn.fetchval(
            "SELECT error FROM processors.processed WHERE delivery_id = $1", d_bad.id
        )
        assert "items" in error
        # A second run is a no-op with the same outcomes (the dead letter is retried and fails
        # again, counting its attempt, as one by one).
        again = await process_batch(conn, [d_good.id, d_dup.id, d_bad.id, d_unknown.id])
        assert again == {k: v for k, v in results.items() if k != missing}
        assert (
            await conn.fetchval(
                "SELECT count(*) FROM processors.history WHERE delivery_id = ANY($1::bigint[])",
                [d_good.id, d_dup.id],
            )
            == 1
        )


async def test_a_failed_batch_is_redone_one_by_one_without_leftovers(
    pool: asyncpg.Pool, monkeypatch: pytest.MonkeyPatch
) -> None:
    ds = await append(
        pool,
        [
            new_delivery("stripe", stripe_event("customer_updated.json", object_id=uid("cus_")))
            for _ in range(4)
        ],
    )
    ids = [d.id for d in ds]

    async def broken(conn: Any, rows: Any) -> None:
        await conn.execute("SELECT 1")
        raise RuntimeError("history store broke mid-batch")

    monkeypatch.setattr(repo, "insert_history_rows", broken)
    async with pool.acquire() as conn:
        results = await process_batch(conn, ids)
        assert results == dict.fromkeys(ids, "applied")
        # Exactly one history row and one processed row each: the batch left nothing behind.
        rows = await conn.fetch(
            "SELECT delivery_id, count(*) AS n FROM processors.history "
            "WHERE delivery_id = ANY($1::bigint[]) GROUP BY 1",
            ids,
        )
        assert {r["delivery_id"]: r["n"] for r in rows} == dict.fromkeys(ids, 1)


async def test_concurrent_overlapping_batches_apply_each_event_once(pool: asyncpg.Pool) -> None:
    sub = uid("sub_")
    events = [
        stripe_event("subscription_updated.json", object_id=sub, created=1_760_000_000 + i)
        for i in range(30)
    ]
    cus = [stripe_event("customer_updated.json", object_id=uid("cus_")) for _ in range(30)]
    ds = await append(pool, [new_delivery("stripe", e) for e in events + cus + events])
    ids = [d.id for d in ds]

    async def run(chunk: list[int]) -> dict[int, str | BaseException]:
        async with pool.acquire() as conn:
            return await process_batch(conn, chunk)

    rng = random.Random(3)
    chunks = [rng.sample(ids, 40) for _ in range(6)]
    results = await asyncio.gather(*(run(c) for c in chunks))
    for r in results:
        assert all(isinstance(v, str) for v in r.values()), r
    async with pool.acquire() as conn:
        await process_batch(conn, ids)
        rows = await conn.fetch(
            "SELECT outcome, count(*) AS n FROM processors.processed "
            "WHERE delivery_id = ANY($1::bigint[]) GROUP BY 1",
            ids,
        )
        counts = {r["outcome"]: r["n"] for r in rows}
        assert sum(counts.values()) == len(ids)
        assert counts["duplicate"] == 30
        version = await conn.fetchval(
            "SELECT version FROM processors.subscriptions WHERE id = $1", sub
        )
        assert version.startswith(f"{1_760_000_029:012d}.")


async def test_batcher_gives_each_job_its_own_outcome_and_drains_the_rest(
    fresh_settings: Settings, fresh_pool: asyncpg.Pool
) -> None:
    s, pool = own_queue(fresh_settings), fresh_pool
    ds = await append(
        pool,
        [
            new_delivery("stripe", stripe_event("customer_updated.json", object_id=uid("cus_")))
            for _ in range(40)
        ],
    )
    ids = [d.id for d in ds]
    redis = await create_pool(
        RedisSettings.from_dsn(REDIS_URL),
        job_serializer=serialize,
        job_deserializer=deserialize,
        default_queue_name=s.processors.queue_name,
    )
    try:
        for i in ids:
            await redis.enqueue_job(PROCESS_DELIVERY, i, _job_id=job_id(s, i))
        b = Batcher(pool, max_batch=50, concurrency=1, drain=(redis, s))
        # Three jobs at once (one of them twice, as arq may run a job twice): each gets its
        # outcome; the batch topped itself up with the other pending deliveries.
        got = await asyncio.gather(b.process(ids[0]), b.process(ids[5]), b.process(ids[5]))
        assert list(got) == ["applied", "applied", "applied"]
        await b.close()
        async with pool.acquire() as conn:
            n = await conn.fetchval(
                "SELECT count(*) FROM processors.processed WHERE delivery_id = ANY($1::bigint[])",
                ids,
            )
        assert n == len(ids)
        # Drained deliveries' jobs are gone from the queue; the three running jobs' are arq's.
        queued = {m.decode() for m in await redis.zrange(s.processors.queue_name, 0, -1)}
        assert queued == {job_id(s, ids[0]), job_id(s, ids[5])}
        assert await redis.exists(f"arq:job:{job_id(s, ids[1])}") == 0
    finally:
        await redis.delete(s.processors.queue_name)
        await redis.aclose()


async def test_job_outcome_when_drained_by_another_process_first(pool: asyncpg.Pool) -> None:
    (d,) = await append(
        pool, [new_delivery("stripe", stripe_event("customer_updated.json", object_id=uid("cus_")))]
    )
    async with pool.acquire() as conn:
        assert await service.process_delivery(conn, d.id) == "applied"
    b = Batcher(pool)
    assert await b.process(d.id) == "applied"  # found processed: the first outcome, no new rows
    await b.close()


async def test_jobs_share_the_batcher_made_at_worker_start_up(settings: Settings) -> None:
    from ledgerhook.worker import worker_settings
    from processors.worker import batcher

    s = own_queue(settings)
    options = worker_settings(s)
    redis = await create_pool(RedisSettings.from_dsn(REDIS_URL))
    ctx: dict[str, Any] = {"redis": redis}
    await options["on_startup"](ctx)
    try:
        made = ctx["batcher"]
        # arq runs each job with {**worker_ctx, "job_id": ..., "job_try": ...}.
        assert batcher({**ctx, "job_try": 1}) is made
        assert batcher({**ctx, "job_try": 2}) is made
    finally:
        await options["on_shutdown"](ctx)
        await redis.aclose()


async def _customer_updates(pool: asyncpg.Pool, n: int) -> list[Appended]:
    """``n`` stored deliveries, each a customer update of its own customer."""
    return await append(
        pool,
        [
            new_delivery("stripe", stripe_event("customer_updated.json", object_id=uid("cus_")))
            for _ in range(n)
        ],
    )


async def _processed_count_reaches(pool: asyncpg.Pool, n: int, seconds: float = 5.0) -> int:
    """Rows in processors.processed once there are ``n`` (or what there is after ``seconds``)."""
    count = 0
    for _ in range(int(seconds / 0.05)):
        async with pool.acquire() as conn:
            count = await conn.fetchval("SELECT count(*) FROM processors.processed")
        if count >= n:
            break
        await asyncio.sleep(0.05)
    return count


async def test_a_job_for_an_unknown_id_does_not_hide_the_backlog(
    fresh_settings: Settings, fresh_pool: asyncpg.Pool
) -> None:
    # A queue can hold jobs for ids this database does not have (found in the e2e benchmark:
    # jobs left by a run on another database). The drain starts from PostgreSQL's watermark,
    # so the real backlog is applied anyway, and the unknown id never raises the floor.
    s, pool = own_queue(fresh_settings), fresh_pool
    ds = await _customer_updates(pool, 30)
    redis = await create_pool(RedisSettings.from_dsn(REDIS_URL), job_serializer=serialize)
    try:
        b = Batcher(pool, max_batch=10, concurrency=1, drain=(redis, s))
        with pytest.raises(DeliveryNotFound):
            await b.process(ds[-1].id + 1_000_000)
        # The drain goes on after the job's own answer.
        assert await _processed_count_reaches(pool, len(ds)) == len(ds)
        await b.close()
    finally:
        await redis.aclose()


async def test_a_backlog_deeper_than_the_drain_window_is_drained_from_one_job(
    fresh_settings: Settings, fresh_pool: asyncpg.Pool, monkeypatch: pytest.MonkeyPatch
) -> None:
    # A job for the newest delivery while older ones wait beyond one read's window: the drain
    # must go on window after window, not jump its floor to the job's id and leave the rest to
    # the sweeper (found in the 10-minute soak: the oldest delivery's age grew for minutes).
    monkeypatch.setattr(repo, "DRAIN_WINDOW", 10)
    s, pool = own_queue(fresh_settings), fresh_pool
    ds = await _customer_updates(pool, 45)
    redis = await create_pool(RedisSettings.from_dsn(REDIS_URL), job_serializer=serialize)
    try:
        b = Batcher(pool, max_batch=100, concurrency=1, drain=(redis, s))
        assert await b.process(ds[-1].id) == "applied"
        assert await _processed_count_reaches(pool, len(ds)) == len(ds)
        await b.close()
    finally:
        await redis.aclose()
