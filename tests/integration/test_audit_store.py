"""The audit store on real PostgreSQL: migrations, privileges, append-only, chain, tampering."""

from __future__ import annotations

import asyncio
import os
import subprocess
import sys
import uuid
from collections.abc import Awaitable, Callable
from pathlib import Path

import asyncpg
import pytest

from audit.chain import append_deliveries
from audit.checkpoints import create_checkpoint, key_id
from audit.verify import verify_chain
from ledgerhook.db import create_pool
from ledgerhook.migrations import Migration, MigrationError, discover, migrate
from ledgerhook.settings import Settings
from tests.conftest import CHECKPOINT_KEY, PG_BASE, make_settings, superuser
from tests.integration.audit_helpers import delivery

KEY = CHECKPOINT_KEY.encode()
REPO = Path(__file__).resolve().parents[2]


async def _drop(name: str) -> None:
    conn = await asyncpg.connect(f"{PG_BASE}/postgres")
    try:
        await conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
    finally:
        await conn.close()


async def test_migrate_creates_database_and_is_idempotent() -> None:
    name = f"lht_mig_{uuid.uuid4().hex[:8]}"
    s = make_settings(name)
    try:
        first = await migrate(s)
        assert [m.version for m in first] == [m.version for m in discover()]
        assert await migrate(s) == []
        conn = await superuser(s)
        try:
            rows = await conn.fetch(
                "SELECT version FROM ledgerhook.schema_migrations ORDER BY version"
            )
            assert [r["version"] for r in rows] == [m.version for m in discover()]
            owner = await conn.fetchval(
                "SELECT tableowner FROM pg_tables WHERE schemaname='audit' AND tablename='events'"
            )
            assert owner == "ledgerhook_owner"
        finally:
            await conn.close()
    finally:
        await _drop(name)


async def test_concurrent_migrations_serialise() -> None:
    name = f"lht_mig_{uuid.uuid4().hex[:8]}"
    s = make_settings(name)
    try:
        results = await asyncio.gather(*(migrate(s) for _ in range(3)))
        # Exactly one of them applied each migration; the others found it done.
        applied = sorted(m.version for r in results for m in r)
        assert applied == [m.version for m in discover()]
    finally:
        await _drop(name)


async def test_concurrent_migrate_processes() -> None:
    name = f"lht_mig_{uuid.uuid4().hex[:8]}"
    env = {
        **os.environ,
        "LEDGERHOOK_DATABASE_URL": f"{PG_BASE}/{name}",
        "LEDGERHOOK_LOG_FORMAT": "text",
    }
    try:
        procs = [
            subprocess.Popen(
                [sys.executable, "-m", "ledgerhook.cli", "migrate"],
                env=env,
                cwd=REPO,
                stdout=subprocess.PIPE,
                stderr=subprocess.PIPE,
            )
            for _ in range(3)
        ]
        outputs = [p.communicate(timeout=120) for p in procs]
        assert [p.returncode for p in procs] == [0, 0, 0], outputs
        assert sum(o[0].count(b"applied 0001_audit_log") for o in outputs) == 1
    finally:
        await _drop(name)


async def test_changed_migration_is_refused() -> None:
    name = f"lht_mig_{uuid.uuid4().hex[:8]}"
    s = make_settings(name)
    try:
        await migrate(s)
        tampered = [
            Migration(m.version, m.name, m.package, m.sql + "\n-- edited") if m.version == 1 else m
            for m in discover()
        ]
        with pytest.raises(MigrationError, match="changed after it was applied"):
            await migrate(s, tampered)
    finally:
        await _drop(name)


async def test_services_act_as_application_role(pool: asyncpg.Pool) -> None:
    for _ in range(3):
        async with pool.acquire() as conn:
            assert await conn.fetchval("SELECT current_user") == "ledgerhook_app"


async def _as_app(settings: Settings) -> asyncpg.Connection:
    """Log in as the application role itself (as production does)."""
    url = settings.database_url.reveal().replace("postgres@", "ledgerhook_app@")
    return await asyncpg.connect(url)


@pytest.mark.parametrize(
    "statement",
    [
        "UPDATE audit.deliveries SET event_type = 'x'",
        "DELETE FROM audit.deliveries",
        "TRUNCATE audit.deliveries",
        "UPDATE audit.events SET first_delivery_id = 0",
        "DELETE FROM audit.rejections",
        "TRUNCATE audit.checkpoints",
        "ALTER TABLE audit.deliveries DISABLE TRIGGER append_only",
        "ALTER TABLE audit.deliveries ADD COLUMN x int",
        "DROP TABLE audit.deliveries",
        "SET session_replication_role = replica",
        "TRUNCATE audit.deliveries_default",
        "UPDATE audit.deliveries_default SET event_type = 'x'",
        "CREATE TABLE audit.sneaky (x int)",
    ],
)
async def test_application_role_cannot_change_the_log(settings: Settings, statement: str) -> None:
    conn = await _as_app(settings)
    try:
        assert await conn.fetchval("SELECT current_user") == "ledgerhook_app"
        with pytest.raises(asyncpg.PostgresError) as info:
            await conn.execute(statement)
        assert isinstance(
            info.value,
            asyncpg.InsufficientPrivilegeError | asyncpg.exceptions.InsufficientPrivilegeError,
        ), info.value
    finally:
        await conn.close()


@pytest.mark.parametrize(
    "statement",
    [
        "UPDATE audit.deliveries SET event_type = 'x'",
        "DELETE FROM audit.deliveries",
        "TRUNCATE audit.deliveries",
        "TRUNCATE audit.deliveries_default",
        "UPDATE audit.events SET first_delivery_id = 0",
        "DELETE FROM audit.events",
        "DELETE FROM audit.checkpoints",
        "TRUNCATE audit.rejections",
    ],
)
async def test_append_only_even_for_the_owner(
    fresh_settings: Settings, fresh_pool: asyncpg.Pool, statement: str
) -> None:
    async with fresh_pool.acquire() as conn:
        await append_deliveries(conn, [delivery("evt_owner_1")])
        await create_checkpoint(conn, KEY)
    conn = await superuser(fresh_settings)
    try:
        await conn.execute("SET ROLE ledgerhook_owner")
        with pytest.raises(asyncpg.PostgresError, match="append-only"):
            await conn.execute(statement)
    finally:
        await conn.close()


async def test_append_assigns_chain_positions_and_duplicates(fresh_pool: asyncpg.Pool) -> None:
    async with fresh_pool.acquire() as conn:
        first = await append_deliveries(
            conn, [delivery("evt_a"), delivery("evt_b"), delivery("evt_a")]
        )
        again = await append_deliveries(
            conn, [delivery("evt_b"), delivery("evt_a", account="other")]
        )
        assert [r.id for r in first + again] == [1, 2, 3, 4, 5]
        assert [r.duplicate_of for r in first + again] == [None, None, 1, 2, None]
        stored = await conn.fetchrow("SELECT body, headers FROM audit.deliveries WHERE id = 1")
        assert bytes(stored["body"]) == delivery("evt_a").body
        assert stored["headers"] == delivery("evt_a").headers
        result = await verify_chain(conn, key=KEY)
        assert result.ok and result.checked == 5 and result.head_id == 5


async def test_failed_append_leaves_nothing(fresh_pool: asyncpg.Pool) -> None:
    bad = delivery("evt_bad", provider="paypal")  # refused by the CHECK constraint
    async with fresh_pool.acquire() as conn:
        with pytest.raises(asyncpg.CheckViolationError):
            await append_deliveries(conn, [delivery("evt_ok"), bad])
        assert await conn.fetchval("SELECT count(*) FROM audit.deliveries") == 0
        assert await conn.fetchval("SELECT count(*) FROM audit.events") == 0
        ok = await append_deliveries(conn, [delivery("evt_ok")])
        assert ok[0].id == 1 and ok[0].duplicate_of is None


async def test_concurrent_appenders_keep_one_chain(fresh_settings: Settings) -> None:
    # Several pools stand in for several API processes; many tasks each append small batches.
    pools = [await create_pool(fresh_settings, min_size=1, max_size=4) for _ in range(3)]
    try:

        async def writer(p: asyncpg.Pool, w: int) -> list[int]:
            ids: list[int] = []
            for i in range(10):
                async with p.acquire() as conn:
                    batch = [delivery(f"evt_{w}_{i}_{j}") for j in range(1 + (w + i) % 4)]
                    batch.append(delivery(f"evt_{w}_0_0"))  # a redelivery
                    ids += [r.id for r in await append_deliveries(conn, batch)]
            return ids

        results = await asyncio.gather(*(writer(pools[w % 3], w) for w in range(12)))
        ids = sorted(i for r in results for i in r)
        assert ids == list(range(1, len(ids) + 1))
        async with pools[0].acquire() as conn:
            result = await verify_chain(conn, key=KEY)
            assert result.ok, result.describe()
            assert result.checked == len(ids)
            dupes = await conn.fetchval(
                "SELECT count(*) FROM audit.deliveries WHERE duplicate_of IS NOT NULL"
            )
            firsts = await conn.fetchval("SELECT count(*) FROM audit.events")
            assert dupes + firsts == len(ids)
    finally:
        for p in pools:
            await p.close()


APPENDER = """
import asyncio, sys
from audit.chain import append_deliveries
from ledgerhook.db import create_pool
from tests.conftest import make_settings
from tests.integration.audit_helpers import delivery

async def main(db, n, tag):
    pool = await create_pool(make_settings(db), min_size=4, max_size=4)
    async def one(i):
        async with pool.acquire() as conn:
            await append_deliveries(conn, [delivery(f"evt_{tag}_{i}"), delivery(f"evt_{tag}_{i}")])
    await asyncio.gather(*(one(i) for i in range(n)))
    await pool.close()

asyncio.run(main(sys.argv[1], int(sys.argv[2]), sys.argv[3]))
"""


async def test_concurrent_processes_keep_one_chain(
    fresh_settings: Settings, fresh_pool: asyncpg.Pool
) -> None:
    db = fresh_settings.database_url.reveal().rsplit("/", 1)[1]
    procs = [
        await asyncio.create_subprocess_exec(
            sys.executable, "-c", APPENDER, db, "60", f"p{i}", cwd=REPO
        )
        for i in range(3)
    ]
    assert [await p.wait() for p in procs] == [0, 0, 0]
    async with fresh_pool.acquire() as conn:
        result = await verify_chain(conn, key=KEY)
        assert result.ok, result.describe()
        assert result.checked == 3 * 60 * 2
        assert (
            await conn.fetchval("SELECT count(*) FROM audit.deliveries WHERE duplicate_of IS NULL")
            == 180
        )


Tamper = Callable[[asyncpg.Connection], Awaitable[object]]

TAMPERING: list[tuple[str, str, int, str]] = [
    (
        "modify body",
        "UPDATE audit.deliveries SET body = body || ' '::bytea WHERE id = 5",
        5,
        "body modified",
    ),
    (
        "modify body and its hash",
        "UPDATE audit.deliveries SET body = '{}'::bytea, body_sha256 = sha256('{}'::bytea) WHERE id = 5",
        5,
        "row modified",
    ),
    (
        "modify a column",
        "UPDATE audit.deliveries SET event_type = 'invoice.paid' WHERE id = 5",
        5,
        "row modified",
    ),
    (
        "modify headers",
        "UPDATE audit.deliveries SET headers = '[]' WHERE id = 5",
        5,
        "row modified",
    ),
    ("delete a row", "DELETE FROM audit.deliveries WHERE id = 5", 5, "missing"),
    ("delete the tail", "DELETE FROM audit.deliveries WHERE id >= 9", 9, "log ends"),
    (
        "insert a row",
        "INSERT INTO audit.deliveries SELECT id, received_at + interval '1 microsecond', provider, endpoint, account, event_id, event_type, event_created, object_id, origin, source_address, content_type, headers, verification, duplicate_of, body, body_sha256, prev_hash, row_hash FROM audit.deliveries WHERE id = 5",
        5,
        "more than once",
    ),
    (
        "reorder two rows",
        "UPDATE audit.deliveries SET id = CASE id WHEN 4 THEN 5 ELSE 4 END WHERE id IN (4, 5)",
        4,
        "reordered",
    ),
]


@pytest.mark.parametrize(
    ("what", "sql", "bad_id", "reason"), TAMPERING, ids=[t[0] for t in TAMPERING]
)
async def test_tampering_is_detected(
    fresh_settings: Settings,
    fresh_pool: asyncpg.Pool,
    what: str,
    sql: str,
    bad_id: int,
    reason: str,
) -> None:
    async with fresh_pool.acquire() as conn:
        await append_deliveries(conn, [delivery(f"evt_t{i}") for i in range(10)])
        cp = await create_checkpoint(conn, KEY)
        assert cp is not None and cp.delivery_id == 10
        assert (await verify_chain(conn, key=KEY)).ok
    admin = await superuser(fresh_settings)
    try:
        await admin.execute("SET session_replication_role = replica")  # disables the triggers
        await admin.execute(sql)
    finally:
        await admin.close()
    async with fresh_pool.acquire() as conn:
        result = await verify_chain(conn, key=KEY)
    assert not result.ok
    assert result.first_bad_id == bad_id, result.describe()
    assert reason in (result.reason or ""), result.describe()


async def test_checkpoints_are_signed_and_checked(
    fresh_settings: Settings, fresh_pool: asyncpg.Pool
) -> None:
    async with fresh_pool.acquire() as conn:
        await append_deliveries(conn, [delivery(f"evt_c{i}") for i in range(5)])
        cp = await create_checkpoint(conn, KEY)
        assert cp is not None and cp.key_id == key_id(KEY) and cp.row_count == 5
        await append_deliveries(conn, [delivery(f"evt_d{i}") for i in range(3)])
        from_cp = await verify_chain(conn, key=KEY, from_checkpoint=cp.id)
        assert from_cp.ok and from_cp.checked == 3 and from_cp.started_after == 5
        wrong_key = await verify_chain(conn, key=b"not-the-key", from_checkpoint=cp.id)
        assert not wrong_key.ok and "signature" in (wrong_key.reason or "")
        # A checkpoint is written only for a chain that verifies.
        admin = await superuser(fresh_settings)
        try:
            await admin.execute("SET session_replication_role = replica")
            await admin.execute("UPDATE audit.deliveries SET account = 'x' WHERE id = 7")
            # A forged checkpoint (an attacker without the key) fails verification too.
            await admin.execute(
                "INSERT INTO audit.checkpoints (created_at, delivery_id, chain_hash, row_count, key_id, signature) "
                "SELECT now(), delivery_id, chain_hash, row_count, key_id, '\\x00'::bytea FROM audit.checkpoints"
            )
        finally:
            await admin.close()
        assert await create_checkpoint(conn, KEY) is None
        forged = await verify_chain(conn, key=KEY, from_latest_checkpoint=True)
        assert not forged.ok and "signature" in (forged.reason or "")


async def test_partitions_are_created_ahead(
    fresh_settings: Settings, fresh_pool: asyncpg.Pool
) -> None:
    async with fresh_pool.acquire() as conn:
        assert (
            await conn.fetchval("SELECT audit.ensure_partitions(6)") == 6
        )  # 3 more months, 2 tables
        parts = await conn.fetch(
            "SELECT c.relname FROM pg_inherits i JOIN pg_class c ON c.oid = i.inhrelid "
            "WHERE i.inhparent = 'audit.deliveries'::regclass ORDER BY 1"
        )
        assert len(parts) == 1 + 8  # default + last month .. 6 ahead
        await append_deliveries(conn, [delivery("evt_part")])
        where = await conn.fetchval(
            "SELECT tableoid::regclass::text FROM audit.deliveries WHERE event_id = 'evt_part'"
        )
        assert where.startswith("audit.deliveries_y")


def _cli(settings: Settings, *args: str) -> subprocess.CompletedProcess[str]:
    env = {
        **os.environ,
        "LEDGERHOOK_DATABASE_URL": settings.database_url.reveal(),
        "LEDGERHOOK_CHECKPOINT_KEY": CHECKPOINT_KEY,
        "LEDGERHOOK_LOG_FORMAT": "text",
    }
    return subprocess.run(
        [sys.executable, "-m", "ledgerhook.cli", *args],
        env=env,
        cwd=REPO,
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )


async def test_cli_migrate_verify_checkpoint(
    fresh_settings: Settings, fresh_pool: asyncpg.Pool
) -> None:
    assert "up to date" in _cli(fresh_settings, "migrate").stdout
    async with fresh_pool.acquire() as conn:
        await append_deliveries(conn, [delivery(f"evt_cli{i}") for i in range(4)])
    ok = _cli(fresh_settings, "verify")
    assert ok.returncode == 0 and "chain OK: 4 rows" in ok.stdout
    cp = _cli(fresh_settings, "checkpoint")
    assert cp.returncode == 0 and "delivery 4" in cp.stdout
    admin = await superuser(fresh_settings)
    try:
        await admin.execute("SET session_replication_role = replica")
        await admin.execute("UPDATE audit.deliveries SET event_id = 'forged' WHERE id = 2")
    finally:
        await admin.close()
    broken = _cli(fresh_settings, "verify")
    assert broken.returncode == 1
    assert "BROKEN at delivery id 2" in broken.stdout
    assert CHECKPOINT_KEY not in broken.stdout + broken.stderr
