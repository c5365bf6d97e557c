"""Upgrading a log written by the hash-chain versions (before migration 0020).

The chained rows become the first leaves, in chain order, and ``verify`` keeps checking their
chain links and HMAC checkpoints as well as the tree: nothing provable before the upgrade stops
being provable, and tampering with an old row is still named, even when the attacker also
recomputes its leaf.
"""

from __future__ import annotations

import hashlib
import uuid
from collections.abc import AsyncIterator
from datetime import UTC, datetime

import asyncpg
import pytest

from audit.append import append_deliveries
from audit.canonical import GENESIS, ChainFields, leaf_hash, row_hash
from audit.checkpoints import create_checkpoint, log_origin
from audit.legacy import hmac_key_id, sign
from audit.note import parse_verifier_key
from audit.sequencer import leaf_fields
from audit.verify import verify_tree
from ledgerhook.db import create_pool
from ledgerhook.migrations import discover, migrate
from ledgerhook.settings import Settings
from tests.conftest import PG_BASE, PUBLIC_KEY, RUN_ID, make_settings, superuser
from tests.integration.audit_helpers import delivery, integrate, log_signer

LEGACY_KEY = b"legacy-hmac-key-0123456789"
VERIFIER = parse_verifier_key(PUBLIC_KEY)

_OLD_APPEND = (
    "SELECT ok FROM audit.append_deliveries($1, $2, $3::timestamptz[], $4::text[], $5::text[], "
    "$6::text[], $7::text[], $8::text[], $9::bigint[], $10::text[], $11::text[], $12::text[], "
    "$13::text[], $14::json[], $15::text[], $16::bigint[], $17::bytea[], $18::bytea[], "
    "$19::bytea[], $20::bytea[])"
)


async def _append_legacy(conn: asyncpg.Connection, count: int) -> list[int]:
    """Rows appended the way the chain versions did: LHv1 hashes, one at a time."""
    head = await conn.fetchrow("SELECT id, row_hash FROM audit.deliveries ORDER BY id DESC LIMIT 1")
    head_id, prev = (0, GENESIS) if head is None else (head["id"], bytes(head["row_hash"]))
    ids = []
    for _ in range(count):
        d = delivery(f"evt_{uuid.uuid4().hex}")
        digest = hashlib.sha256(d.body).digest()
        fields = ChainFields(
            id=head_id + 1,
            received_at=d.received_at,
            provider=d.provider,
            endpoint=d.endpoint,
            account=d.account,
            event_id=d.event_id,
            event_type=d.event_type,
            event_created=d.event_created,
            object_id=d.object_id,
            origin=d.origin,
            source_address=d.source_address,
            content_type=d.content_type,
            headers=d.headers,
            verification=d.verification,
            duplicate_of=None,
            body_sha256=digest,
        )
        h = row_hash(prev, fields)
        ok = await conn.fetchval(
            _OLD_APPEND,
            head_id,
            prev,
            [d.received_at],
            [d.provider],
            [d.endpoint],
            [d.account],
            [d.event_id],
            [d.event_type],
            [d.event_created],
            [d.object_id],
            [d.origin],
            [d.source_address],
            [d.content_type],
            [d.headers],
            [d.verification],
            [None],
            [d.body],
            [digest],
            [prev],
            [h],
        )
        assert ok
        head_id, prev = head_id + 1, h
        ids.append(head_id)
    return ids


async def _legacy_checkpoint(conn: asyncpg.Connection, delivery_id: int) -> None:
    chain_hash = bytes(
        await conn.fetchval("SELECT row_hash FROM audit.deliveries WHERE id = $1", delivery_id)
    )
    now = datetime.now(UTC)
    await conn.execute(
        "INSERT INTO audit.checkpoints (created_at, delivery_id, chain_hash, row_count, key_id, "
        "signature) VALUES ($1, $2, $3, $2, $4, $5)",
        now,
        delivery_id,
        chain_hash,
        hmac_key_id(LEGACY_KEY),
        sign(LEGACY_KEY, delivery_id, delivery_id, chain_hash, now),
    )


@pytest.fixture
async def upgraded() -> AsyncIterator[Settings]:
    """A database migrated by the chain versions, written to, then upgraded."""
    name = f"lht_{RUN_ID}_upgrade_{uuid.uuid4().hex[:6]}"
    settings = make_settings(name)
    old = [m for m in discover() if m.version < 20 or m.version >= 100]
    await migrate(settings, old)
    su = await superuser(settings)
    try:
        await su.execute("SET ROLE ledgerhook_app")
        ids = await _append_legacy(su, 25)
        await su.execute("RESET ROLE")
        await _legacy_checkpoint(su, ids[9])
        await _legacy_checkpoint(su, ids[-1])
        await su.execute("UPDATE processors.sweep_watermark SET upto = 25")
    finally:
        await su.close()
    await migrate(settings)  # 0020 and anything after it
    yield settings
    admin = await asyncpg.connect(f"{PG_BASE}/postgres")
    try:
        await admin.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
    finally:
        await admin.close()


async def _verify(conn: asyncpg.Connection, settings: Settings) -> object:
    return await verify_tree(
        conn,
        verifiers=[VERIFIER],
        origin=log_origin(settings),
        legacy_key=LEGACY_KEY,
    )


async def test_chained_rows_become_the_first_leaves_and_still_verify(upgraded: Settings) -> None:
    pool = await create_pool(upgraded)
    try:
        async with pool.acquire() as conn:
            new = await append_deliveries(
                conn, [delivery(f"evt_{uuid.uuid4().hex}") for _ in range(7)]
            )
            assert new[0].id > 25  # ids continue past the chain
            assert await integrate(conn) == 32
            order = [
                r[0]
                for r in await conn.fetch(
                    "SELECT delivery_id FROM audit.leaves ORDER BY leaf_index"
                )
            ]
            assert order[:25] == list(range(1, 26))  # chain order: leaf i is row i + 1
            assert sorted(order[25:]) == [r.id for r in new]
            cp = await create_checkpoint(conn, log_signer(), log_origin(upgraded))
            assert cp is not None and cp.tree_size == 32
            result = await _verify(conn, upgraded)
            assert result.ok, result.describe()  # type: ignore[attr-defined]
            assert result.legacy_rows_checked == 25  # type: ignore[attr-defined]
            # The processors' watermark kept its meaning: leaves below 25 are the rows <= 25.
            assert await conn.fetchval("SELECT upto FROM processors.sweep_watermark") == 25
    finally:
        await pool.close()


async def test_an_old_row_rewritten_with_its_leaf_is_caught_by_the_chain(
    upgraded: Settings,
) -> None:
    pool = await create_pool(upgraded)
    try:
        async with pool.acquire() as conn:
            await integrate(conn)
    finally:
        await pool.close()
    su = await superuser(upgraded)
    try:
        await su.execute("SET session_replication_role = replica")
        await su.execute("UPDATE audit.deliveries SET event_type = 'invoice.paid' WHERE id = 5")
        row = await su.fetchrow(
            "SELECT *, octet_length(body)::bigint AS body_size FROM audit.deliveries WHERE id = 5"
        )
        await su.execute(
            "UPDATE audit.leaves SET leaf_hash = $1 WHERE delivery_id = 5",
            leaf_hash(leaf_fields(row)),
        )
        result = await _verify(su, upgraded)
    finally:
        await su.close()
    assert not result.ok  # type: ignore[attr-defined]
    assert "legacy row_hash" in result.reason  # type: ignore[attr-defined]
    assert "delivery 5" in result.first_bad  # type: ignore[attr-defined]


async def test_a_forged_legacy_checkpoint_signature_is_refused(upgraded: Settings) -> None:
    su = await superuser(upgraded)
    try:
        await su.execute("SET session_replication_role = replica")
        await su.execute(
            "UPDATE audit.checkpoints SET signature = sha256(signature) WHERE delivery_id = 10"
        )
        await integrate(su)
        result = await _verify(su, upgraded)
    finally:
        await su.close()
    assert not result.ok and "HMAC checkpoint" in result.reason  # type: ignore[attr-defined]
