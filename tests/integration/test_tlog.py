"""The transparency log on real PostgreSQL: lock-free appends, the sequencer, the tree, checkpoints,
proofs, and verification that names every kind of tampering."""

from __future__ import annotations

import asyncio
import hashlib
import uuid

import asyncpg
import pytest

from audit.append import append_deliveries
from audit.canonical import encode_leaf, leaf_hash
from audit.checkpoint_format import open_checkpoint, verify_consistent
from audit.checkpoints import create_checkpoint, latest_checkpoint, log_origin
from audit.errors import InvalidRange
from audit.merkle import EMPTY_ROOT, verify_consistency
from audit.note import generate_signer, parse_verifier_key
from audit.proofs import ProofBundleError, build_bundle, verify_bundle
from audit.sequencer import integrate_once, integration_backlog, leaf_fields, load_state
from audit.tree import consistency_proof, root_at, tree_size
from audit.verify import verify_tree
from ledgerhook.db import create_pool
from ledgerhook.settings import Settings
from tests.conftest import PUBLIC_KEY, superuser
from tests.integration.audit_helpers import delivery, integrate, log_signer
from tests.unit.rfc6962_reference import mth

VERIFIER = parse_verifier_key(PUBLIC_KEY)


def _ids(n: int) -> list[str]:
    return [f"evt_{uuid.uuid4().hex}" for _ in range(n)]


async def _verify(conn: asyncpg.Connection, settings: Settings, **kw: object) -> object:
    return await verify_tree(
        conn,
        verifiers=[VERIFIER],
        origin=log_origin(settings),
        **kw,  # type: ignore[arg-type]
    )


async def test_concurrent_appends_from_many_pools_all_become_leaves_once(
    fresh_settings: Settings,
) -> None:
    """Several writers (pools standing for API processes) append at once with no lock; the
    sequencer integrates every committed row exactly once, gap-free, and the root is RFC 6962's."""
    pools = [await create_pool(fresh_settings, min_size=1, max_size=4) for _ in range(3)]
    try:

        async def writer(pool: asyncpg.Pool, n: int) -> list[int]:
            out: list[int] = []
            for _ in range(n):
                async with pool.acquire() as conn:
                    rows = await append_deliveries(conn, [delivery(e) for e in _ids(5)])
                out.extend(r.id for r in rows)
            return out

        async def sequencer(stop: asyncio.Event) -> None:
            async with pools[0].acquire() as conn:
                state = await load_state(conn)
                while not stop.is_set():
                    state, _ = await integrate_once(conn, state, 37)
                    await asyncio.sleep(0.005)

        stop = asyncio.Event()
        seq = asyncio.create_task(sequencer(stop))
        ids = await asyncio.gather(*(writer(p, 20) for p in pools for _ in range(2)))
        stop.set()
        await seq
        async with pools[0].acquire() as conn:
            await integrate(conn)
            leaves = await conn.fetch(
                "SELECT leaf_index, delivery_id, leaf_hash FROM audit.leaves ORDER BY leaf_index"
            )
            appended = sorted(i for batch in ids for i in batch)
            assert [r["leaf_index"] for r in leaves] == list(range(len(appended)))
            assert sorted(r["delivery_id"] for r in leaves) == appended
            size = await tree_size(conn)
            # The stored tree's root is RFC 6962's MTH over the leaves' LHleaf1 encodings,
            # recomputed from the deliveries by the RFC's own recursive definition.
            rows = await conn.fetch(
                "SELECT d.* FROM audit.leaves l JOIN audit.deliveries d ON d.id = l.delivery_id "
                "ORDER BY l.leaf_index"
            )
            inputs = [encode_leaf(leaf_fields(r)) for r in rows]
            assert await root_at(conn, size) == mth(inputs)
            assert [leaf_hash(leaf_fields(r)) for r in rows] == [
                bytes(r["leaf_hash"]) for r in leaves
            ]
            result = await _verify(conn, fresh_settings)
            assert result.ok, result.describe()  # type: ignore[attr-defined]
            assert result.tree_size == size and result.pending == 0  # type: ignore[attr-defined]
    finally:
        for p in pools:
            await p.close()


async def test_a_running_transaction_holds_integration_back_until_it_ends(
    fresh_pool: asyncpg.Pool,
) -> None:
    """Rows of a transaction still running are not integrated, and nothing committed after it
    (with a higher txid) overtakes its rows: the sequencer waits, then takes them in order."""
    async with (
        fresh_pool.acquire() as slow,
        fresh_pool.acquire() as fast,
        fresh_pool.acquire() as seq,
    ):
        tx = slow.transaction()
        await tx.start()
        early = await append_deliveries(slow, [delivery(_ids(1)[0])])
        late = await append_deliveries(fast, [delivery(_ids(1)[0])])
        assert await integrate(seq) == 0  # the slow transaction's xid is the horizon
        pending, oldest = await integration_backlog(seq)
        assert pending == 1 and oldest is not None  # only the committed row is visible
        await tx.commit()
        assert await integrate(seq) == 2
        order = [
            r["delivery_id"]
            for r in await seq.fetch("SELECT delivery_id FROM audit.leaves ORDER BY leaf_index")
        ]
        assert order == [early[0].id, late[0].id]
        # A transaction that rolls back leaves nothing behind and holds nothing up.
        tx = slow.transaction()
        await tx.start()
        await append_deliveries(slow, [delivery(_ids(1)[0])])
        await tx.rollback()
        assert await integrate(seq) == 0
        assert await integration_backlog(seq) == (0, None)


async def test_duplicates_are_settled_by_the_events_key_across_concurrent_writers(
    fresh_settings: Settings,
) -> None:
    pools = [await create_pool(fresh_settings, min_size=1, max_size=2) for _ in range(4)]
    shared = _ids(10)
    try:

        async def deliver(pool: asyncpg.Pool) -> list[tuple[int, int | None]]:
            async with pool.acquire() as conn:
                rows = await append_deliveries(conn, [delivery(e) for e in shared])
            return [(r.id, r.duplicate_of) for r in rows]

        results = await asyncio.gather(*(deliver(p) for p in pools))
        for i in range(len(shared)):
            firsts = [r[i][0] for r in results if r[i][1] is None]
            assert len(firsts) == 1  # exactly one first delivery per event
            assert all(r[i][1] in (None, firsts[0]) for r in results)
        async with pools[0].acquire() as conn:
            await integrate(conn)
            result = await _verify(conn, fresh_settings)
            assert result.ok, result.describe()  # type: ignore[attr-defined]
    finally:
        for p in pools:
            await p.close()


async def test_appends_never_read_the_whole_events_table(fresh_pool: asyncpg.Pool) -> None:
    """Once a session's plan for the first-delivery lookup is generic (after five calls), it
    must still probe audit.events by key: a join there read the whole table on every commit, so
    appends slowed down as the log grew (audit migration 0021)."""
    async with fresh_pool.acquire() as conn:
        for _ in range(5):
            await append_deliveries(conn, [delivery(e) for e in _ids(20)])
        redelivered = _ids(20)
        async with conn.transaction():
            for _ in range(8):
                rows = await append_deliveries(conn, [delivery(e) for e in redelivered + _ids(20)])
            scans = await conn.fetchrow(
                "SELECT seq_scan, idx_scan FROM pg_stat_xact_user_tables "
                "WHERE relid = 'audit.events'::regclass"
            )
        assert all(r.duplicate_of is not None for r in rows[:20])
        assert all(r.duplicate_of is None for r in rows[20:])
        assert scans is not None
        assert scans["seq_scan"] == 0 and scans["idx_scan"] >= 8 * 40, dict(scans)


async def test_checkpoints_proofs_and_consistency_verify_with_the_public_key(
    fresh_settings: Settings, fresh_pool: asyncpg.Pool
) -> None:
    origin = log_origin(fresh_settings)
    signer = log_signer()
    async with fresh_pool.acquire() as conn:
        first = await append_deliveries(conn, [delivery(e) for e in _ids(13)])
        await integrate(conn)
        cp1 = await create_checkpoint(conn, signer, origin)
        assert cp1 is not None and cp1.tree_size == 13
        assert await create_checkpoint(conn, signer, origin) == cp1  # no growth: no new one
        await append_deliveries(conn, [delivery(e) for e in _ids(20)])
        await integrate(conn)
        cp2 = await create_checkpoint(conn, signer, origin)
        assert cp2 is not None and cp2.tree_size == 33
        assert await latest_checkpoint(conn) == cp2

        # The note is a C2SP checkpoint, signed by the log's key.
        opened = open_checkpoint(cp2.note, [VERIFIER], origin=origin)
        assert opened.checkpoint.root == await root_at(conn, 33) == cp2.root_hash
        # Consistency 13 -> 33 from storage.
        proof = await consistency_proof(conn, 13, 33)
        verify_consistency(13, 33, proof, cp1.root_hash, cp2.root_hash)
        verify_consistent(
            open_checkpoint(cp1.note, [VERIFIER], origin=origin).checkpoint,
            opened.checkpoint,
            proof,
        )

        # A delivery's bundle, against the latest and against an earlier signed size.
        target = first[4].id
        bundle = await build_bundle(conn, target, origin=origin, public_key=PUBLIC_KEY)
        v = verify_bundle(bundle, VERIFIER)
        assert (v.delivery_id, v.tree_size) == (target, 33)
        old = await build_bundle(conn, target, origin=origin, public_key=PUBLIC_KEY, tree_size=13)
        assert verify_bundle(old, VERIFIER).tree_size == 13
        body = await conn.fetchval("SELECT body FROM audit.deliveries WHERE id = $1", target)
        assert verify_bundle(bundle, VERIFIER, bytes(body)).body_checked
        with pytest.raises(InvalidRange):  # nobody signed size 20
            await build_bundle(conn, target, origin=origin, public_key=PUBLIC_KEY, tree_size=20)

    # Adversarial bundles: each refused, saying which step failed.
    forged = dict(bundle, inclusion=[bundle["inclusion"][0][:-2] + "00", *bundle["inclusion"][1:]])
    swapped = dict(bundle, delivery=dict(bundle["delivery"], event_type="invoice.paid"))
    wrong_size = dict(bundle, leaf_index=bundle["leaf_index"] + 1)
    for bad, step in ((forged, "step 3"), (swapped, "step 1"), (wrong_size, "step 3")):
        with pytest.raises(ProofBundleError, match=step):
            verify_bundle(bad, VERIFIER)
    with pytest.raises(ProofBundleError, match="step 2"):
        verify_bundle(bundle, generate_signer(origin).verifier)  # another key of the same name
    with pytest.raises(ProofBundleError, match="step 4"):
        verify_bundle(bundle, VERIFIER, b'{"not": "the body"}')


async def test_empty_tree(fresh_pool: asyncpg.Pool, fresh_settings: Settings) -> None:
    async with fresh_pool.acquire() as conn:
        assert await tree_size(conn) == 0
        assert await root_at(conn, 0) == EMPTY_ROOT
        result = await _verify(conn, fresh_settings)
        assert result.ok and result.tree_size == 0  # type: ignore[attr-defined]


async def _tampered(settings: Settings, sql: str, *args: object) -> str:
    conn = await superuser(settings)
    try:
        await conn.execute("SET session_replication_role = replica")  # triggers off
        await conn.execute(sql, *args)
    finally:
        await conn.close()
    app = await asyncpg.connect(settings.database_url.reveal())
    try:
        result = await _verify(app, settings)
    finally:
        await app.close()
    assert not result.ok  # type: ignore[attr-defined]
    return f"{result.first_bad}: {result.reason}"  # type: ignore[attr-defined]


@pytest.fixture
async def signed_log(fresh_settings: Settings, fresh_pool: asyncpg.Pool) -> list[int]:
    async with fresh_pool.acquire() as conn:
        rows = await append_deliveries(conn, [delivery(e) for e in _ids(40)])
        await integrate(conn)
        assert await create_checkpoint(conn, log_signer(), log_origin(fresh_settings))
        result = await _verify(conn, fresh_settings)
        assert result.ok, result.describe()  # type: ignore[attr-defined]
    return [r.id for r in rows]


@pytest.mark.parametrize(
    ("sql", "expect"),
    [
        (
            "UPDATE audit.deliveries SET event_type = 'invoice.paid' WHERE id = $1",
            "does not match its leaf",
        ),
        ("UPDATE audit.deliveries SET body = '{}'::bytea WHERE id = $1", "body does not match"),
        ("UPDATE audit.deliveries SET headers = '[]' WHERE id = $1", "does not match its leaf"),
        (
            "UPDATE audit.deliveries SET received_at = received_at + interval '1 second' WHERE id = $1",
            "delivery is missing",
        ),
        ("DELETE FROM audit.deliveries WHERE id = $1", "delivery is missing"),
        (
            "UPDATE audit.leaves SET leaf_hash = sha256(leaf_hash) WHERE delivery_id = $1",
            "does not match its leaf",
        ),
        ("DELETE FROM audit.leaves WHERE delivery_id = $1", "missing"),
        ("UPDATE audit.deliveries SET duplicate_of = 1 WHERE id = $1", "duplicate_of"),
        ("DELETE FROM audit.events WHERE first_delivery_id = $1", "audit.events lacks"),
    ],
)
async def test_tampering_with_a_delivery_or_leaf_is_named(
    fresh_settings: Settings, signed_log: list[int], sql: str, expect: str
) -> None:
    target = signed_log[17]
    found = await _tampered(fresh_settings, sql, target)
    assert expect in found
    assert "leaf 17" in found or "leaves 17" in found


async def test_tampering_with_the_tree_or_checkpoints_is_named(
    fresh_settings: Settings, signed_log: list[int]
) -> None:
    found = await _tampered(
        fresh_settings,
        "UPDATE audit.tree_nodes SET hash = sha256(hash) WHERE level = 4 AND idx = 1",
    )
    assert "subtree (4, 1)" in found


async def test_a_checkpoint_by_another_key_or_altered_is_refused(
    fresh_settings: Settings, signed_log: list[int]
) -> None:
    other = generate_signer(log_origin(fresh_settings))
    from audit.checkpoint_format import Checkpoint, sign_checkpoint

    conn = await superuser(fresh_settings)
    try:
        root = await root_at(conn, 40)
        note = sign_checkpoint(
            Checkpoint(origin=log_origin(fresh_settings), size=40, root=root), other
        )
        await conn.execute(
            "INSERT INTO audit.tree_checkpoints (created_at, origin, tree_size, root_hash, "
            "key_name, key_id, note) VALUES (now(), $1, 40, $2, $3, $4, $5)",
            log_origin(fresh_settings),
            root,
            other.name,
            other.key_id,
            note,
        )
    finally:
        await conn.close()
    app = await asyncpg.connect(fresh_settings.database_url.reveal())
    try:
        result = await _verify(app, fresh_settings)
    finally:
        await app.close()
    assert not result.ok and "note does not verify" in result.reason  # type: ignore[attr-defined]


async def test_a_rolled_back_tree_is_refused(
    fresh_settings: Settings, signed_log: list[int]
) -> None:
    """Deleting the newest leaves (and their subtrees) leaves the signed checkpoint beyond the tree."""
    conn = await superuser(fresh_settings)
    try:
        await conn.execute("SET session_replication_role = replica")
        await conn.execute("DELETE FROM audit.leaves WHERE leaf_index >= 32")
        await conn.execute("DELETE FROM audit.tree_nodes WHERE (idx + 1) * (1 << level) > 32")
    finally:
        await conn.close()
    app = await asyncpg.connect(fresh_settings.database_url.reveal())
    try:
        result = await _verify(app, fresh_settings)
    finally:
        await app.close()
    assert not result.ok and "leaves deleted" in result.reason  # type: ignore[attr-defined]


async def test_a_committed_delivery_the_sequencer_skipped_is_named(
    fresh_settings: Settings, signed_log: list[int]
) -> None:
    """A row slipped in behind the sequencer's position (a forged old txid) is never a leaf:
    verify says so instead of calling it pending."""
    conn = await superuser(fresh_settings)
    try:
        await conn.execute("SET session_replication_role = replica")
        await conn.execute(
            "INSERT INTO audit.deliveries SELECT (SELECT max(id) + 1000 FROM audit.deliveries), "
            "received_at, provider, endpoint, account, 'evt_forged', event_type, event_created, "
            "object_id, origin, source_address, content_type, headers, verification, NULL, body, "
            "body_sha256, NULL, NULL, '3'::xid8, body_size "
            "FROM audit.deliveries WHERE id = $1",
            signed_log[0],
        )
    finally:
        await conn.close()
    app = await asyncpg.connect(fresh_settings.database_url.reveal())
    try:
        result = await _verify(app, fresh_settings)
    finally:
        await app.close()
    assert not result.ok and "skipped" in result.reason  # type: ignore[attr-defined]


async def test_the_app_role_cannot_append_around_the_function(fresh_settings: Settings) -> None:
    """Only audit.append_batch inserts deliveries: the app role cannot pick ids or txids."""
    conn = await asyncpg.connect(fresh_settings.database_url.reveal())
    try:
        await conn.execute("SET ROLE ledgerhook_app")
        with pytest.raises(asyncpg.InsufficientPrivilegeError):
            await conn.execute(
                "INSERT INTO audit.deliveries (id, received_at, provider, endpoint, account, "
                "event_id, event_type, event_created, origin, headers, verification, body, "
                "body_sha256, body_size, txid) VALUES (1, now(), 'stripe', 'default', 'a', 'e', "
                "'t', 1, 'webhook', '[]', 'v', '', $1, 0, '3')",
                hashlib.sha256(b"").digest(),
            )
        for table in ("leaves", "tree_nodes", "tree_checkpoints", "verification_runs"):
            for stmt in (
                f"UPDATE audit.{table} SET {'leaf_index' if table == 'leaves' else 'id' if table != 'tree_nodes' else 'idx'} = 0",
                f"DELETE FROM audit.{table}",
                f"TRUNCATE audit.{table}",
            ):
                with pytest.raises(asyncpg.PostgresError):
                    await conn.execute(stmt)
    finally:
        await conn.close()


async def test_a_paced_verification_pauses_as_it_works_and_verifies_the_same(
    fresh_settings: Settings, fresh_pool: asyncpg.Pool, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The worker's integrity job and scheduled checkpoints walk at half duty: they sleep after
    every 1 000 leaves for as long as they worked, so applying keeps its share of the worker (and
    the result is the same)."""
    import audit.verify

    pauses: list[float] = []
    real_sleep = asyncio.sleep

    async def sleep(seconds: float) -> None:
        pauses.append(seconds)
        await real_sleep(0)

    async with fresh_pool.acquire() as conn:
        await append_deliveries(conn, [delivery(e) for e in _ids(2_500)])
        await integrate(conn)
        origin = log_origin(fresh_settings)
        unpaced = await verify_tree(conn, verifiers=[log_signer().verifier], origin=origin)
        monkeypatch.setattr(audit.verify.asyncio, "sleep", sleep)
        paced = await verify_tree(conn, verifiers=[log_signer().verifier], origin=origin, duty=0.5)
        with pytest.raises(ValueError, match="duty"):
            await verify_tree(conn, verifiers=[log_signer().verifier], origin=origin, duty=0)
        # The scheduled checkpoint verifies its new leaves the same way.
        cp = await create_checkpoint(conn, log_signer(), origin, source="scheduled", duty=0.5)
    assert cp is not None and cp.tree_size == 2_500 and cp.root_hash == unpaced.root
    assert len(pauses) == 4
    assert paced.ok and unpaced.ok
    assert paced.tree_size == unpaced.tree_size == 2_500 and paced.root == unpaced.root
    assert all(p > 0 for p in pauses)
