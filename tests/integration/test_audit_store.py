"""The audit store on real PostgreSQL: migrations, privileges, append-only, appends, checkpoints."""

from __future__ import annotations

import asyncio
import os
import subprocess
import sys
import uuid
from pathlib import Path

import asyncpg
import pytest

from audit.append import append_deliveries
from audit.checkpoints import create_checkpoint, log_origin
from audit.note import generate_signer, parse_verifier_key
from audit.verify import VerifyResult, verify_tree
from ledgerhook.db import create_pool
from ledgerhook.migrations import Migration, MigrationError, discover, migrate
from ledgerhook.settings import Settings
from tests.conftest import CHECKPOINT_KEY, PG_BASE, PUBLIC_KEY, make_settings, superuser
from tests.integration.audit_helpers import delivery, integrate, log_signer

REPO = Path(__file__).resolve().parents[2]


async def _verify(conn: asyncpg.Connection, settings: Settings, **kw: object) -> VerifyResult:
    return await verify_tree(
        conn,
        verifiers=[parse_verifier_key(PUBLIC_KEY)],
        origin=log_origin(settings),
        **kw,  # type: ignore[arg-type]
    )


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
        "INSERT INTO audit.checkpoints (created_at, delivery_id, chain_hash, row_count, key_id, "
        "signature) VALUES (now(), 1, '\\x00', 1, 'k', '\\x00')",
        "INSERT INTO audit.deliveries SELECT * FROM audit.deliveries",
        "UPDATE audit.leaves SET leaf_index = leaf_index + 1",
        "DELETE FROM audit.tree_nodes",
        "TRUNCATE audit.tree_checkpoints",
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
        "TRUNCATE audit.checkpoints",
        "TRUNCATE audit.rejections",
        "UPDATE audit.leaves SET leaf_hash = sha256(leaf_hash)",
        "DELETE FROM audit.leaves",
        "TRUNCATE audit.tree_nodes",
        "UPDATE audit.tree_nodes SET hash = sha256(hash)",
        "DELETE FROM audit.tree_checkpoints",
        "DELETE FROM audit.verification_runs",
    ],
)
async def test_append_only_even_for_the_owner(
    fresh_settings: Settings, fresh_pool: asyncpg.Pool, statement: str
) -> None:
    async with fresh_pool.acquire() as conn:
        await append_deliveries(conn, [delivery(f"evt_owner_{i}") for i in range(20)])
        await integrate(conn)
        await create_checkpoint(conn, log_signer(), log_origin(fresh_settings))
    conn = await superuser(fresh_settings)
    try:
        await conn.execute("SET ROLE ledgerhook_owner")
        with pytest.raises(asyncpg.PostgresError, match="append-only"):
            await conn.execute(statement)
    finally:
        await conn.close()


async def test_append_assigns_ids_and_duplicates(
    fresh_settings: Settings, fresh_pool: asyncpg.Pool
) -> None:
    async with fresh_pool.acquire() as conn:
        first = await append_deliveries(
            conn, [delivery("evt_a"), delivery("evt_b"), delivery("evt_a")]
        )
        again = await append_deliveries(
            conn, [delivery("evt_b"), delivery("evt_a", account="other")]
        )
        ids = [r.id for r in first + again]
        assert len(set(ids)) == 5
        assert [r.duplicate_of for r in first + again] == [None, None, ids[0], ids[1], None]
        stored = await conn.fetchrow(
            "SELECT body, headers FROM audit.deliveries WHERE id = $1", ids[0]
        )
        assert bytes(stored["body"]) == delivery("evt_a").body
        assert stored["headers"] == delivery("evt_a").headers
        assert await integrate(conn) == 5
        result = await _verify(conn, fresh_settings)
        assert result.ok and result.leaves_checked == 5 and result.tree_size == 5


async def test_failed_append_leaves_nothing(fresh_pool: asyncpg.Pool) -> None:
    bad = delivery("evt_bad", provider="paypal")  # refused by the CHECK constraint
    async with fresh_pool.acquire() as conn:
        with pytest.raises(asyncpg.CheckViolationError):
            await append_deliveries(conn, [delivery("evt_ok"), bad])
        assert await conn.fetchval("SELECT count(*) FROM audit.deliveries") == 0
        assert await conn.fetchval("SELECT count(*) FROM audit.events") == 0
        ok = await append_deliveries(conn, [delivery("evt_ok")])
        assert ok[0].duplicate_of is None  # the failed batch left no event behind
        assert await integrate(conn) == 1


async def test_append_must_come_first_in_its_transaction(fresh_pool: asyncpg.Pool) -> None:
    """The sequencer's horizon relies on an appender's xid being assigned under its mark."""
    async with fresh_pool.acquire() as conn:
        async with conn.transaction():
            await append_deliveries(conn, [delivery("evt_first")])
            await append_deliveries(conn, [delivery("evt_second")])  # same transaction: fine
        tx = conn.transaction()
        await tx.start()
        await conn.execute(
            "INSERT INTO audit.verification_runs (started_at, finished_at, ok, tree_size, "
            "leaves_checked, from_size, checkpoints_checked, source) "
            "VALUES (now(), now(), true, 0, 0, 0, 0, 'test')"
        )
        with pytest.raises(asyncpg.ObjectNotInPrerequisiteStateError, match="before any other"):
            await append_deliveries(conn, [delivery("evt_late")])
        await tx.rollback()


async def test_concurrent_appenders_all_land_and_verify(fresh_settings: Settings) -> None:
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
        assert len(set(ids)) == len(ids)
        async with pools[0].acquire() as conn:
            assert await integrate(conn) == len(ids)
            result = await _verify(conn, fresh_settings)
            assert result.ok, result.describe()
            assert result.leaves_checked == len(ids)
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
from audit.append import append_deliveries
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


async def test_concurrent_processes_all_land_and_verify(
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
        assert await integrate(conn) == 3 * 60 * 2
        result = await _verify(conn, fresh_settings)
        assert result.ok, result.describe()
        assert result.leaves_checked == 3 * 60 * 2
        assert (
            await conn.fetchval("SELECT count(*) FROM audit.deliveries WHERE duplicate_of IS NULL")
            == 180
        )


async def test_checkpoints_are_signed_and_checked(
    fresh_settings: Settings, fresh_pool: asyncpg.Pool
) -> None:
    origin = log_origin(fresh_settings)
    async with fresh_pool.acquire() as conn:
        await append_deliveries(conn, [delivery(f"evt_c{i}") for i in range(5)])
        await integrate(conn)
        cp = await create_checkpoint(conn, log_signer(), origin)
        assert cp is not None and cp.tree_size == 5 and cp.key_name == "ledgerhook-test"
        await append_deliveries(conn, [delivery(f"evt_d{i}") for i in range(3)])
        await integrate(conn)
        from_cp = await _verify(conn, fresh_settings, from_checkpoint=cp.id)
        assert from_cp.ok and from_cp.leaves_checked == 3 and from_cp.from_size == 5
        other = generate_signer(origin).verifier
        wrong_key = await verify_tree(conn, verifiers=[other], origin=origin, from_checkpoint=cp.id)
        assert not wrong_key.ok and "does not verify" in (wrong_key.reason or "")
        # A checkpoint is written only for a log that verifies.
        admin = await superuser(fresh_settings)
        try:
            await admin.execute("SET session_replication_role = replica")
            await admin.execute(
                "UPDATE audit.deliveries SET account = 'x' WHERE id = "
                "(SELECT delivery_id FROM audit.leaves WHERE leaf_index = 6)"
            )
        finally:
            await admin.close()
        assert await create_checkpoint(conn, log_signer(), origin) is None
        failed = await conn.fetchrow(
            "SELECT ok, first_bad FROM audit.verification_runs ORDER BY id DESC LIMIT 1"
        )
        assert not failed["ok"] and failed["first_bad"].startswith("leaf 6")
        # A forged checkpoint (an attacker without the key) fails verification too.
        admin = await superuser(fresh_settings)
        try:
            await admin.execute(
                "INSERT INTO audit.tree_checkpoints (created_at, origin, tree_size, root_hash, "
                "key_name, key_id, note) SELECT now(), origin, tree_size, root_hash, key_name, "
                "key_id, replace(note, E'\n\n', E'\nforged\n\n') FROM audit.tree_checkpoints"
            )
        finally:
            await admin.close()
        forged = await _verify(conn, fresh_settings, from_latest=True)
        assert not forged.ok and "note does not verify" in (forged.reason or "")


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
        rows = await append_deliveries(conn, [delivery(f"evt_cli{i}") for i in range(4)])
        pending = _cli(fresh_settings, "verify")
        assert pending.returncode == 0 and "4 deliveries pending integration" in pending.stdout
        await integrate(conn)
    ok = _cli(fresh_settings, "verify")
    assert ok.returncode == 0 and "tree OK: 4 leaves checked" in ok.stdout
    cp = _cli(fresh_settings, "checkpoint")
    assert cp.returncode == 0 and "tree size 4" in cp.stdout
    assert f"{log_origin(fresh_settings)}\n4\n" in cp.stdout  # the signed note itself
    admin = await superuser(fresh_settings)
    try:
        await admin.execute("SET session_replication_role = replica")
        await admin.execute(
            "UPDATE audit.deliveries SET event_id = 'forged' WHERE id = $1", rows[1].id
        )
    finally:
        await admin.close()
    broken = _cli(fresh_settings, "verify")
    assert broken.returncode == 1
    assert f"BROKEN at leaf 1 (delivery {rows[1].id})" in broken.stdout
    assert CHECKPOINT_KEY not in broken.stdout + broken.stderr
