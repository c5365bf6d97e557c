"""Helpers for the replay tests: the CLI, states as rows say, the in-order fold, a killed batch."""

from __future__ import annotations

import asyncio
import os
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import asyncpg
import msgspec

from ledgerhook.db import connect
from ledgerhook.settings import Settings
from processors import repository as repo
from processors.model import Body
from processors.normalize import normalize
from processors.service import process_batch
from processors.transitions import apply
from tests.conftest import CHECKPOINT_KEY, REDIS_URL, superuser

# (provider, account, object type, object id) -> (version, deleted, body)
States = dict[tuple[str, str, str, str], tuple[str, bool, Body]]
Event = tuple[str, str, dict[str, Any]]  # (provider, account, provider event)

_body = msgspec.json.Decoder(Body)

LEDGERHOOK = Path(sys.executable).with_name("ledgerhook")


def cli(settings: Settings, *args: str) -> subprocess.CompletedProcess[str]:
    """Run ``ledgerhook`` against the settings' database, as an operator would."""
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


# Every table live processing writes; a rolled-back batch leaves each exactly as it was.
PROCESSING_TABLES = (
    *repo.TABLES.values(),
    "processed",
    "history",
    "subscription_changes",
    "anomalies",
)


def in_order(events: list[Event]) -> States:
    """The pure fold of each event once, in the order given (no database)."""
    state: dict[tuple[str, str, str, str], Any] = {}
    for n, (provider, account, ev) in enumerate(events, start=1):
        event = normalize(provider, msgspec.json.encode(ev), account=account)
        if event is None:
            continue
        for u in event.updates:
            key = (provider, account, u.object_type, u.object_id)
            state[key] = apply(
                state.get(key), u, provider=provider, account=account, delivery_id=n
            ).state
    return {k: (s.version, s.deleted, s.body) for k, s in state.items()}


async def states(conn: Any, schema: str, accounts: list[str]) -> States:
    """Current state rows of ``schema`` (processors or processors_replay) for some accounts."""
    out: States = {}
    for object_type, table in repo.TABLES.items():
        rows = await conn.fetch(
            f"SELECT provider, account, id, version, deleted, data::text AS data "
            f"FROM {schema}.{table} WHERE account = ANY($1::text[])",
            accounts,
        )
        for r in rows:
            key = (r["provider"], r["account"], object_type, r["id"])
            out[key] = (r["version"], r["deleted"], _body.decode(r["data"]))
    return out


async def digest(conn: asyncpg.Connection) -> dict[str, str]:
    """A fingerprint of every processing table (rows as JSON, sorted)."""
    out: dict[str, str] = {}
    for t in PROCESSING_TABLES:
        out[t] = await conn.fetchval(
            f"SELECT count(*) || ':' || md5(coalesce(string_agg(j, ',' ORDER BY j), '')) "
            f"FROM (SELECT to_jsonb(x)::text AS j FROM processors.{t} x) q"
        )
    return out


async def _wait_blocked(su: asyncpg.Connection, pid: int, task: asyncio.Task[Any]) -> None:
    """Until backend ``pid`` waits on another transaction's row (its own writes uncommitted)."""
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        assert not task.done(), f"the batch finished instead of blocking: {task.result()!r}"
        waiting = await su.fetchval(
            "SELECT wait_event_type = 'Lock' AND wait_event = 'transactionid' "
            "FROM pg_stat_activity WHERE pid = $1",
            pid,
        )
        if waiting:
            return
        await asyncio.sleep(0.01)
    raise AssertionError("the batch never reached its processed rows")


async def kill_mid_batch(settings: Settings, batch: list[int], victim: int) -> None:
    """Run ``process_batch(batch)`` and terminate its PostgreSQL backend while the batch's
    transaction is open, after it wrote state, history, changes, anomalies and the processed
    rows before ``victim``'s; then check that nothing of it is left (one transaction, rolled
    back as a whole).

    The batch is stopped there for real: another transaction inserts, without committing,
    ``victim``'s processed row, so the batch's own insert of it waits (unique key) until a
    superuser terminates the batch's backend with ``pg_terminate_backend``.
    """
    su = await superuser(settings)
    blocker = await superuser(settings)
    conn = await connect(settings.database_url)
    try:
        before = await digest(su)
        block = blocker.transaction()
        await block.start()
        await blocker.execute(
            """
            INSERT INTO processors.processed (delivery_id, provider, account, event_id, event_type, outcome)
            SELECT id, provider, account, event_id, event_type, 'duplicate'
            FROM audit.deliveries WHERE id = $1
            """,
            victim,
        )
        pid = conn.get_server_pid()
        task = asyncio.create_task(process_batch(conn, batch))
        await _wait_blocked(su, pid, task)
        assert await su.fetchval("SELECT pg_terminate_backend($1)", pid)
        results = await asyncio.wait_for(task, 30)
        await block.rollback()
        # Every delivery of the batch failed (its jobs would be retried) ...
        assert all(isinstance(r, BaseException) for r in results.values()), results
        # ... and none of its effects survived.
        assert await digest(su) == before
    finally:
        for c in (conn, blocker, su):
            await c.close()
