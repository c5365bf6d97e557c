"""Verifying the log: every leaf against its delivery, the tree against its checkpoints.

The walk reads, in one REPEATABLE READ snapshot and in leaf order, every leaf with its delivery
(and, with ``bodies``, the body) and checks:

- leaf indexes are gap-free from the start (a gap is a deleted leaf);
- the delivery of each leaf exists (a deleted row, or one whose ``received_at`` was changed);
- the body's SHA-256 is ``body_sha256`` and its length ``body_size`` (a modified body);
- the leaf hash recomputed from the delivery's metadata (``LHleaf1``) is the stored one (any
  modified column of the delivery, or a modified leaf);
- ``duplicate_of`` agrees with ``audit.events`` (the first delivery of the same event);
- the rows of the retired hash chain (the first leaves of an upgraded log) still chain: each
  ``prev_hash`` is the previous row's hash, each ``row_hash`` recomputes, ids are consecutive,
  and every HMAC checkpoint matches the chain at its row (and its signature, given the key);
- the complete subtrees recomputed from the leaves equal the stored ones (``audit.tree_nodes``:
  what proofs are built from), and no other subtree is stored;
- at each signed checkpoint's size, the recomputed root is the checkpoint's, its note is signed
  by one of ``verifiers`` for ``origin``, and it is consistent with the previous checkpoint (an
  RFC 9162 consistency proof built from storage, verified);
- no committed delivery was skipped: every row the sequencer has passed is a leaf. Rows it has
  not reached yet are reported as pending (normal within the maximum merge delay).

It stops at the first problem and names it. Starting from a checkpoint skips the leaves before
it, after checking the checkpoint's signature and that the stored subtrees give its root: an
unsigned starting point proves nothing.
"""

from __future__ import annotations

import asyncio
import hashlib
import time
from collections.abc import Callable, Sequence
from datetime import UTC, datetime
from typing import Any

import msgspec

from audit.canonical import GENESIS, ChainFields, leaf_hash, row_hash
from audit.checkpoint_format import Checkpoint, open_checkpoint, verify_consistent
from audit.checkpoints import TreeCheckpoint
from audit.dbtypes import Conn
from audit.errors import AuditError
from audit.legacy import LegacyCheckpoint, legacy_checkpoints, signature_ok
from audit.merkle import EMPTY_ROOT, Frontier, Node
from audit.note import Verifier
from audit.sequencer import leaf_fields
from audit.tree import STRIDE, consistency_proof, load_frontier, tree_size

__all__ = ["VerifyResult", "record_run", "verify_tree"]

_CHUNK = 10_000
# Leaves between two pauses of a paced walk (``duty`` < 1).
_PACE_EVERY = 1_000


class VerifyResult(msgspec.Struct, frozen=True, kw_only=True):
    ok: bool
    tree_size: int  # leaves verified: the tree up to here is proven
    root: bytes  # the root recomputed at ``tree_size``
    from_size: int = 0
    leaves_checked: int = 0
    checkpoints_checked: int = 0
    legacy_rows_checked: int = 0
    pending: int = 0  # committed deliveries the sequencer has not reached yet
    first_bad: str | None = None
    reason: str | None = None

    def describe(self) -> str:
        if self.ok:
            legacy = (
                f", {self.legacy_rows_checked} legacy chain rows"
                if self.legacy_rows_checked
                else ""
            )
            return (
                f"tree OK: {self.leaves_checked} leaves checked from size {self.from_size}{legacy}, "
                f"tree size {self.tree_size}, root {self.root.hex()}, "
                f"{self.checkpoints_checked} checkpoints verified, "
                f"{self.pending} deliveries pending integration"
            )
        return f"tree BROKEN at {self.first_bad}: {self.reason}"


class _Broken(Exception):
    def __init__(self, where: str, reason: str) -> None:
        super().__init__(reason)
        self.where = where
        self.reason = reason


def _expected_nodes(size: int) -> int:
    """How many subtrees are stored for a tree of ``size`` leaves."""
    total = 0
    level = STRIDE
    while (1 << level) <= size:
        total += size >> level
        level += STRIDE
    return total


_LEAVES = """
SELECT l.leaf_index, l.delivery_id, l.leaf_hash, d.id, d.received_at, d.provider,
       d.endpoint, d.account, d.event_id, d.event_type, d.event_created, d.object_id, d.origin,
       d.source_address, d.content_type, d.headers, d.verification, d.duplicate_of,
       d.body_sha256, coalesce(d.body_size, octet_length(d.body)) AS body_size,
       d.txid IS NULL AS legacy, d.prev_hash, d.row_hash, e.first_delivery_id{body}
FROM audit.leaves l
LEFT JOIN audit.deliveries d ON d.id = l.delivery_id AND d.received_at = l.received_at
LEFT JOIN audit.events e
       ON e.provider = d.provider AND e.account = d.account AND e.event_id = d.event_id
WHERE l.leaf_index >= $1
ORDER BY l.leaf_index
"""

_CHECKPOINTS = (
    "SELECT id, created_at, origin, tree_size, root_hash, key_name, key_id, note "
    "FROM audit.tree_checkpoints WHERE tree_size >= $1 ORDER BY tree_size, id"
)


def _tree_checkpoint(r: Any) -> TreeCheckpoint:
    return TreeCheckpoint(
        id=r["id"],
        created_at=r["created_at"],
        origin=r["origin"],
        tree_size=r["tree_size"],
        root_hash=bytes(r["root_hash"]),
        key_name=r["key_name"],
        key_id=bytes(r["key_id"]),
        note=r["note"],
    )


class _Walk:
    """The state of one verification walk (kept out of the function for readability)."""

    def __init__(
        self,
        conn: Conn,
        verifiers: Sequence[Verifier],
        origin: str,
        legacy_key: bytes | None,
        bodies: bool,
    ) -> None:
        self.conn = conn
        self.verifiers = list(verifiers)
        self.origin = origin
        self.legacy_key = legacy_key
        self.bodies = bodies
        self.frontier = Frontier()
        self.pending_hashes: list[bytes] = []
        self.nodes: list[Node] = []
        self.checked = 0
        self.legacy_checked = 0
        self.checkpoints_checked = 0
        self.legacy_prev = GENESIS
        self.legacy_last_id = 0
        self.seen_new = False
        self.previous: Checkpoint | None = None
        # (txid, id) of the starting leaf's delivery, when starting from a checkpoint: rows at
        # or below it were checked by the verification that reached that checkpoint.
        self.start_mark: tuple[int | None, int] | None = None
        self.legacy_cps: dict[int, list[LegacyCheckpoint]] = {}

    def open(self, cp: TreeCheckpoint) -> Checkpoint:
        where = f"checkpoint {cp.id} (tree size {cp.tree_size})"
        try:
            signed = open_checkpoint(cp.note, self.verifiers, origin=self.origin)
        except AuditError as exc:
            raise _Broken(where, f"its note does not verify: {exc}") from None
        body = signed.checkpoint
        if (body.size, body.root) != (cp.tree_size, cp.root_hash):
            raise _Broken(where, "its note and its columns disagree (row modified)")
        return body

    async def flush(self) -> None:
        """Fold the pending leaf hashes into the frontier; compare the stored subtrees."""
        if self.pending_hashes:
            self.frontier, completed = self.frontier.append(self.pending_hashes)
            self.pending_hashes = []
            self.nodes.extend(n for n in completed if n.level % STRIDE == 0)
        if not self.nodes:
            return
        rows = await self.conn.fetch(
            "SELECT n.level, n.idx, n.hash FROM audit.tree_nodes n "
            "JOIN unnest($1::smallint[], $2::bigint[]) AS w(level, idx) USING (level, idx)",
            [n.level for n in self.nodes],
            [n.index for n in self.nodes],
        )
        stored = {(r["level"], r["idx"]): bytes(r["hash"]) for r in rows}
        for n in self.nodes:
            if stored.get((n.level, n.index)) != n.hash:
                what = "missing" if (n.level, n.index) not in stored else "different"
                raise _Broken(
                    f"subtree ({n.level}, {n.index})",
                    f"the stored hash is {what} from the one recomputed from the leaves",
                )
        self.nodes = []

    async def at_checkpoint(self, cp: TreeCheckpoint) -> None:
        await self.flush()
        body = self.open(cp)
        where = f"checkpoint {cp.id} (tree size {cp.tree_size})"
        if self.frontier.root() != body.root:
            raise _Broken(where, "its root is not the root of the leaves (log rewritten)")
        if self.previous is not None:
            proof = await consistency_proof(self.conn, self.previous.size, body.size)
            try:
                verify_consistent(self.previous, body, proof)
            except AuditError as exc:
                raise _Broken(
                    where, f"not consistent with the previous checkpoint: {exc}"
                ) from None
        self.previous = body
        self.checkpoints_checked += 1

    def leaf(self, r: Any, expected: int) -> None:
        index = r["leaf_index"]
        if index != expected:
            raise _Broken(f"leaf {expected}", f"leaves {expected}..{index - 1} are missing")
        where = f"leaf {index} (delivery {r['delivery_id']})"
        if r["id"] is None:
            raise _Broken(where, "its delivery is missing (deleted, or its received_at changed)")
        body_sha256 = bytes(r["body_sha256"])
        if self.bodies:
            body = bytes(r["body"])
            if hashlib.sha256(body).digest() != body_sha256 or len(body) != r["body_size"]:
                raise _Broken(where, "the body does not match body_sha256/body_size (modified)")
        if leaf_hash(leaf_fields(r)) != bytes(r["leaf_hash"]):
            raise _Broken(where, "the delivery does not match its leaf (row or leaf modified)")
        first = r["first_delivery_id"]
        if first is None:
            raise _Broken(where, "audit.events lacks its event (row deleted)")
        if r["duplicate_of"] != (None if first == r["id"] else first):
            raise _Broken(where, "duplicate_of disagrees with audit.events (modified)")
        if r["legacy"]:
            self.legacy(r, where, body_sha256)
        else:
            self.seen_new = True
        self.pending_hashes.append(bytes(r["leaf_hash"]))

    def legacy(self, r: Any, where: str, body_sha256: bytes) -> None:
        if self.seen_new:
            raise _Broken(where, "a row of the retired chain after newer leaves (reordered)")
        row_id = r["id"]
        if row_id != self.legacy_last_id + 1:
            raise _Broken(
                where, f"legacy chain rows {self.legacy_last_id + 1}..{row_id - 1} are missing"
            )
        if bytes(r["prev_hash"]) != self.legacy_prev:
            raise _Broken(where, "legacy prev_hash does not match the previous row (reordered)")
        fields = ChainFields(
            id=row_id,
            received_at=r["received_at"],
            provider=r["provider"],
            endpoint=r["endpoint"],
            account=r["account"],
            event_id=r["event_id"],
            event_type=r["event_type"],
            event_created=r["event_created"],
            object_id=r["object_id"],
            origin=r["origin"],
            source_address=r["source_address"],
            content_type=r["content_type"],
            headers=r["headers"],
            verification=r["verification"],
            duplicate_of=r["duplicate_of"],
            body_sha256=body_sha256,
        )
        computed = row_hash(self.legacy_prev, fields)
        if computed != bytes(r["row_hash"]):
            raise _Broken(where, "legacy row_hash does not match the row (modified)")
        for cp in self.legacy_cps.get(row_id, ()):
            if cp.chain_hash != computed or cp.row_count != row_id:
                raise _Broken(where, f"legacy HMAC checkpoint {cp.id} does not match the chain")
            if self.legacy_key is not None and not signature_ok(self.legacy_key, cp):
                raise _Broken(where, f"legacy HMAC checkpoint {cp.id} signature does not verify")
        self.legacy_prev = computed
        self.legacy_last_id = row_id
        self.legacy_checked += 1


async def _start(walk: _Walk, conn: Conn, start: TreeCheckpoint | None) -> int:
    """Position the walk at ``start`` (after checking it); the first leaf index to read."""
    if start is None:
        return 0
    body = walk.open(start)
    where = f"checkpoint {start.id} (tree size {start.tree_size})"
    try:
        walk.frontier = await load_frontier(conn, start.tree_size)
    except AuditError as exc:
        raise _Broken(where, f"its subtrees cannot be read: {exc}") from None
    if walk.frontier.root() != body.root:
        raise _Broken(where, "the stored subtrees do not give its root (tree rewritten)")
    walk.previous = body
    if start.tree_size > 0:
        last = await conn.fetchrow(
            "SELECT d.id, d.row_hash, d.txid IS NULL AS legacy, d.txid::text::bigint AS txid "
            "FROM audit.leaves l "
            "JOIN audit.deliveries d ON d.id = l.delivery_id AND d.received_at = l.received_at "
            "WHERE l.leaf_index = $1",
            start.tree_size - 1,
        )
        if last is None:
            raise _Broken(where, f"the delivery of leaf {start.tree_size - 1} is missing")
        if last["legacy"]:
            walk.legacy_prev = bytes(last["row_hash"])
            walk.legacy_last_id = last["id"]
        else:
            walk.seen_new = True
        walk.start_mark = (last["txid"], last["id"])
    return start.tree_size


async def _skipped_and_pending(
    conn: Conn, size: int, start_mark: tuple[int | None, int] | None
) -> int:
    """Raise if a committed delivery the sequencer has passed is not a leaf; count the others.

    The sequencer integrates the retired chain's rows first, by id, then the rest by
    ``(txid, id)`` (:mod:`audit.sequencer`); the last leaf's delivery is where it stands."""
    wm = None
    if size > 0:
        wm = await conn.fetchrow(
            "SELECT d.id, d.txid::text::bigint AS txid FROM audit.leaves l "
            "JOIN audit.deliveries d ON d.id = l.delivery_id AND d.received_at = l.received_at "
            "WHERE l.leaf_index = $1",
            size - 1,
        )
    legacy_done = wm is not None and wm["txid"] is not None
    from_new = start_mark is not None and start_mark[0] is not None
    skipped = (
        None
        if from_new
        else await conn.fetchval(
            "SELECT d.id FROM audit.deliveries d WHERE d.txid IS NULL AND d.id <= $1 "
            "AND NOT EXISTS (SELECT 1 FROM audit.leaves l WHERE l.delivery_id = d.id) "
            "ORDER BY d.id LIMIT 1",
            2**63 - 1 if legacy_done else (0 if wm is None else wm["id"]),
        )
    )
    if skipped is not None:
        raise _Broken(f"delivery {skipped}", "a row of the retired chain the tree skipped")
    if not legacy_done:
        pending: int = await conn.fetchval(
            "SELECT count(*) FROM audit.deliveries d "
            "WHERE NOT EXISTS (SELECT 1 FROM audit.leaves l WHERE l.delivery_id = d.id)"
        )
        return pending
    assert wm is not None
    low = start_mark if start_mark is not None and start_mark[0] is not None else (0, 0)
    skipped = await conn.fetchval(
        "SELECT d.id FROM audit.deliveries d "
        "WHERE (d.txid, d.id) < ($1::bigint::text::xid8, $2::bigint) "
        "AND (d.txid, d.id) > ($3::bigint::text::xid8, $4::bigint) "
        "AND NOT EXISTS (SELECT 1 FROM audit.leaves l WHERE l.delivery_id = d.id) LIMIT 1",
        wm["txid"],
        wm["id"],
        low[0],
        low[1],
    )
    if skipped is not None:
        raise _Broken(
            f"delivery {skipped}",
            "committed before the last leaf's delivery, yet not in the tree (skipped)",
        )
    pending = await conn.fetchval(
        "SELECT count(*) FROM audit.deliveries d "
        "WHERE (d.txid, d.id) > ($1::bigint::text::xid8, $2::bigint)",
        wm["txid"],
        wm["id"],
    )
    return pending


async def verify_tree(
    conn: Conn,
    *,
    verifiers: Sequence[Verifier],
    origin: str,
    from_checkpoint: int | None = None,
    from_latest: bool = False,
    bodies: bool = True,
    legacy_key: bytes | None = None,
    progress: Callable[[int], None] | None = None,
    record: str | None = None,
    duty: float = 1.0,
) -> VerifyResult:
    """Verify the tree (from a checkpoint, or the whole of it); ``record`` names the run's
    source in ``audit.verification_runs`` (None: not recorded).

    ``duty`` below 1 paces the walk: after every ``_PACE_EVERY`` leaves it sleeps so that it works
    at most that fraction of the time, leaving the rest of its process's event loop and CPU to
    others (the worker's integrity job shares both with applying deliveries).
    """
    if not 0 < duty <= 1:
        raise ValueError("duty must be in (0, 1]")
    started = datetime.now(UTC)
    walk = _Walk(conn, verifiers, origin, legacy_key, bodies)
    from_size = 0
    expected = 0
    try:
        async with conn.transaction(isolation="repeatable_read", readonly=True):
            start: TreeCheckpoint | None = None
            if from_checkpoint is not None:
                r = await conn.fetchrow(
                    "SELECT id, created_at, origin, tree_size, root_hash, key_name, key_id, note "
                    "FROM audit.tree_checkpoints WHERE id = $1",
                    from_checkpoint,
                )
                if r is None:
                    raise _Broken(f"checkpoint {from_checkpoint}", "it does not exist")
                start = _tree_checkpoint(r)
            elif from_latest:
                r = await conn.fetchrow(
                    "SELECT id, created_at, origin, tree_size, root_hash, key_name, key_id, note "
                    "FROM audit.tree_checkpoints WHERE origin = $1 "
                    "ORDER BY tree_size DESC, id DESC LIMIT 1",
                    origin,
                )
                start = None if r is None else _tree_checkpoint(r)
            from_size = expected = await _start(walk, conn, start)
            size = await tree_size(conn)
            cps = [_tree_checkpoint(r) for r in await conn.fetch(_CHECKPOINTS, from_size + 1)]
            beyond = [cp for cp in cps if cp.tree_size > size]
            if beyond:
                raise _Broken(
                    f"checkpoint {beyond[0].id}",
                    f"it covers {beyond[0].tree_size} leaves but the tree has {size} "
                    "(leaves deleted)",
                )
            for lcp in await legacy_checkpoints(conn):
                walk.legacy_cps.setdefault(lcp.delivery_id, []).append(lcp)
            due = iter(cps)
            next_cp = next(due, None)
            query = _LEAVES.format(body=", d.body" if bodies else "")
            busy_since = time.monotonic()
            async for r in conn.cursor(query, from_size, prefetch=1000):
                walk.leaf(r, expected)
                expected += 1
                walk.checked += 1
                if duty < 1 and walk.checked % _PACE_EVERY == 0:
                    busy = time.monotonic() - busy_since
                    await asyncio.sleep(busy * (1 / duty - 1))
                    busy_since = time.monotonic()
                while next_cp is not None and next_cp.tree_size == expected:
                    await walk.at_checkpoint(next_cp)
                    next_cp = next(due, None)
                if len(walk.pending_hashes) >= _CHUNK:
                    await walk.flush()
                if progress is not None and walk.checked % _CHUNK == 0:
                    progress(walk.checked)
            await walk.flush()
            if expected != size:
                raise _Broken(f"leaf {expected}", f"the tree has {size} leaves, read {expected}")
            if from_size == 0:
                stored = await conn.fetchval("SELECT count(*) FROM audit.tree_nodes")
                if stored != _expected_nodes(size):
                    raise _Broken(
                        "audit.tree_nodes",
                        f"{stored} subtrees stored where a tree of {size} leaves has "
                        f"{_expected_nodes(size)} (rows inserted or deleted)",
                    )
            pending = await _skipped_and_pending(conn, size, walk.start_mark)
        result = VerifyResult(
            ok=True,
            tree_size=expected,
            root=walk.frontier.root() if expected else EMPTY_ROOT,
            from_size=from_size,
            leaves_checked=walk.checked,
            checkpoints_checked=walk.checkpoints_checked,
            legacy_rows_checked=walk.legacy_checked,
            pending=pending,
        )
    except _Broken as broken:
        result = VerifyResult(
            ok=False,
            tree_size=expected,
            root=walk.frontier.root() if walk.frontier.size else EMPTY_ROOT,
            from_size=from_size,
            leaves_checked=walk.checked,
            checkpoints_checked=walk.checkpoints_checked,
            legacy_rows_checked=walk.legacy_checked,
            first_bad=broken.where,
            reason=broken.reason,
        )
    if record is not None:
        await record_run(conn, result, started, record)
    return result


async def record_run(conn: Conn, result: VerifyResult, started: datetime, source: str) -> None:
    """Append the run to ``audit.verification_runs`` (what the integrity gauge and alert read)."""
    await conn.execute(
        "INSERT INTO audit.verification_runs (started_at, finished_at, ok, tree_size, "
        "leaves_checked, from_size, checkpoints_checked, first_bad, reason, source) "
        "VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10)",
        started,
        datetime.now(UTC),
        result.ok,
        result.tree_size,
        result.leaves_checked,
        result.from_size,
        result.checkpoints_checked,
        result.first_bad,
        result.reason,
        source,
    )
