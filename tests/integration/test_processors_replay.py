"""Replay: the state rebuilt from the audit log equals live state after a shuffled, duplicated run."""

from __future__ import annotations

import os
import random
import subprocess
import sys
from pathlib import Path

import asyncpg
from arq.connections import RedisSettings, create_pool

from ledgerhook.jobs import deserialize, serialize
from ledgerhook.settings import Settings
from processors.replay import compare, rebuild
from processors.worker import enqueue
from tests.conftest import CHECKPOINT_KEY, REDIS_URL, superuser
from tests.integration.processors_helpers import (
    append,
    chargebee_sequence,
    new_delivery,
    own_queue,
    run_burst,
    stripe_event,
    stripe_sequence,
    uid,
)

LEDGERHOOK = Path(sys.executable).with_name("ledgerhook")


def _cli(settings: Settings, *args: str) -> subprocess.CompletedProcess[str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("LEDGERHOOK_")}
    env.update(
        LEDGERHOOK_ENV_FILE="",  # never a developer's .env
        LEDGERHOOK_DATABASE_URL=settings.database_url.reveal(),
        LEDGERHOOK_REDIS_URL=REDIS_URL,
        LEDGERHOOK_CHECKPOINT_KEY=CHECKPOINT_KEY,
        LEDGERHOOK_LOG_LEVEL="WARNING",
    )
    return subprocess.run(
        [str(LEDGERHOOK), *args], env=env, capture_output=True, text=True, timeout=60, check=False
    )


async def test_replay_equals_live_after_shuffled_duplicated_run(
    fresh_settings: Settings, fresh_pool: asyncpg.Pool
) -> None:
    s = own_queue(fresh_settings)
    rng = random.Random(4)
    deliveries = []
    for n in range(3):
        for ev in stripe_sequence(f"r{n}"):
            deliveries.append(new_delivery("stripe", ev))
        for ev in chargebee_sequence(f"r{n}"):
            deliveries.append(new_delivery("chargebee", ev, account=f"site-{n}"))
    deliveries += rng.sample(deliveries, len(deliveries) // 3)  # redeliveries
    rng.shuffle(deliveries)
    appended = await append(fresh_pool, deliveries)

    # Applied by real workers, concurrently, in the shuffled order.
    redis = await create_pool(
        RedisSettings.from_dsn(REDIS_URL), job_serializer=serialize, job_deserializer=deserialize
    )
    try:
        await enqueue(redis, s, [a.id for a in appended])
    finally:
        await redis.aclose()
    await run_burst(s)

    async with fresh_pool.acquire() as conn:
        outcomes = dict(
            await conn.fetch("SELECT outcome, count(*) FROM processors.processed GROUP BY 1")
        )
        assert sum(outcomes.values()) == len(appended)
        assert outcomes["duplicate"] == len(deliveries) - len(deliveries) * 3 // 4
        assert "dead_letter" not in outcomes
        assert outcomes.get("stale", 0) > 0  # the shuffle really delivered out of order
        stats = await rebuild(conn)
        assert stats.objects > 0
        assert await compare(conn) == []

    result = _cli(fresh_settings, "replay", "--compare")
    assert result.returncode == 0, result.stdout + result.stderr
    assert "matches" in result.stdout

    # A live row that drifted from the log is reported, field by field, and the exit code says so.
    su = await superuser(fresh_settings)
    try:
        await su.execute(
            """
            UPDATE processors.subscriptions
            SET data = jsonb_set(data, '{mrr}', '1'), mrr = 1
            WHERE provider = 'stripe' AND id = 'sub_r1'
            """
        )
        await su.execute(
            "INSERT INTO processors.invoices (provider, account, id, data, version, last_delivery_id) "
            "VALUES ('stripe', 'acct_test', 'in_ghost', '{\"type\":\"invoice\",\"status\":\"paid\"}', 'x', 1)"
        )
    finally:
        await su.close()
    async with fresh_pool.acquire() as conn:
        diffs = await compare(conn)
    assert {(d.table, d.id, d.kind) for d in diffs} == {
        ("subscriptions", "sub_r1", "differs"),
        ("invoices", "in_ghost", "missing_replay"),
    }
    (sub_diff,) = [d for d in diffs if d.kind == "differs"]
    assert sub_diff.fields == {"mrr": [1, 0]}
    result = _cli(fresh_settings, "replay", "--compare")
    assert result.returncode == 1
    assert "sub_r1" in result.stdout
    assert "in_ghost" in result.stdout


async def test_replay_delivery_cli_reruns_a_dead_letter(
    settings: Settings, pool: asyncpg.Pool
) -> None:
    def break_items(obj: dict[str, object]) -> None:
        obj["items"] = 5

    ev = stripe_event("subscription_updated.json", object_id=uid("sub_"), change=break_items)
    (d,) = await append(pool, [new_delivery("stripe", ev)])
    result = _cli(settings, "replay", "--delivery", str(d.id))
    assert result.returncode == 1  # still failing: the payload is what it is
    assert f"delivery {d.id}: dead_letter" in result.stdout
    async with pool.acquire() as conn:
        row = await conn.fetchrow(
            "SELECT outcome, attempts FROM processors.processed WHERE delivery_id = $1", d.id
        )
    assert row is not None
    assert (row["outcome"], row["attempts"]) == ("dead_letter", 1)
    result = _cli(settings, "replay", "--delivery", str(d.id))
    async with pool.acquire() as conn:
        attempts = await conn.fetchval(
            "SELECT attempts FROM processors.processed WHERE delivery_id = $1", d.id
        )
    assert attempts == 2

    ok = stripe_event("customer_updated.json", object_id=uid("cus_"))
    (good,) = await append(pool, [new_delivery("stripe", ok)])
    result = _cli(settings, "replay", "--delivery", str(good.id))
    assert result.returncode == 0
    assert f"delivery {good.id}: applied" in result.stdout
    async with pool.acquire() as conn:
        assert (
            await conn.fetchval(
                "SELECT outcome FROM processors.processed WHERE delivery_id = $1", good.id
            )
            == "applied"
        )
