"""The sequencer: integrates committed deliveries into the Merkle tree, in batches, one leader at a time.

Appends (:mod:`audit.append`) never wait for each other, so ids are neither gap-free nor
commit-ordered and nobody but the sequencer decides the log's order. Which rows may it take?
Each new row records the id of the transaction that inserted it (``txid``), assigned while that
transaction holds the appenders' mark (a SHARED advisory lock, :data:`APPEND_MARK`: appenders
never wait on it). ``audit.integration_horizon()`` (migration 0020) returns a txid below which
every appender has ended: its rows are final, committed and visible to a read that starts
afterwards, or never there. The sequencer therefore reads, in ``(txid, id)`` order from its
watermark, only rows below that horizon: no row can later appear behind it, and none is skipped
or taken twice. Only a long-running APPENDING transaction holds the horizon back (nothing else
in the database or the cluster does); integration then waits, which the ``merge_delay`` alert
and the ``ledgerhook_oldest_unintegrated_seconds`` metric make visible.

Rows appended before the tree existed (the legacy hash chain, ``txid IS NULL``) are integrated
first, in chain order, so they become the first leaves.

Each batch is one transaction on the leader's connection: leaf hashes (``LHleaf1``,
:mod:`audit.canonical`) computed from the rows' metadata, the new leaves with gap-free indexes,
and the complete subtrees the batch finished (:func:`audit.tree.storable`). The unique keys on
``leaf_index`` and ``delivery_id`` make a second writer's batch fail rather than fork the tree.

Leadership: a session advisory lock (:data:`SEQUENCER_LOCK`) held on the leader's own connection,
so that the lock and the writes live and die together. When the leader dies (kill -9 included)
PostgreSQL ends its session and drops the lock; a standby retrying every
``tlog.leader_retry_seconds`` takes over and resumes from what is committed. TCP keepalives on
the connection bound how long a vanished machine can hold the lock.
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import logging
import time
from collections.abc import Callable, Sequence
from datetime import datetime
from typing import Any

import asyncpg
import msgspec

from audit.canonical import LeafFields, leaf_hash
from audit.dbtypes import Conn
from audit.merkle import Frontier
from audit.tree import load_frontier, storable, tree_size
from ledgerhook import metrics
from ledgerhook.db import connect
from ledgerhook.settings import Settings

__all__ = [
    "APPEND_MARK",
    "SEQUENCER_LOCK",
    "Integrated",
    "Sequencer",
    "SequencerState",
    "integrate_once",
    "integration_backlog",
    "leaf_fields",
    "load_state",
]

log = logging.getLogger(__name__)

SEQUENCER_LOCK = 0x4C48_0002  # advisory lock key "LH" 2: the one active sequencer
APPEND_MARK = 0x4C48_0003  # "LH" 3: held SHARED by every appending transaction (in 0020's SQL)

_COLUMNS = (
    "d.id, d.received_at, d.provider, d.endpoint, d.account, d.event_id, d.event_type, "
    "d.event_created, d.object_id, d.origin, d.source_address, d.content_type, d.headers, "
    "d.verification, d.body_sha256"
)
_LEGACY = (
    f"SELECT {_COLUMNS}, NULL::bigint AS txid, octet_length(d.body)::bigint AS body_size "
    "FROM audit.deliveries d WHERE d.txid IS NULL AND d.id > $1 ORDER BY d.id LIMIT $2"
)
# Rows below the horizon computed by the statement BEFORE this one (its snapshot is later).
_PENDING = (
    f"SELECT {_COLUMNS}, d.txid::text::bigint AS txid, d.body_size FROM audit.deliveries d "
    "WHERE (d.txid, d.id) > ($1::bigint::text::xid8, $2::bigint) "
    "AND d.txid < $4::bigint::text::xid8 "
    "ORDER BY d.txid, d.id LIMIT $3"
)
_INSERT_LEAVES = (
    "INSERT INTO audit.leaves (leaf_index, delivery_id, received_at, leaf_hash, integrated_at) "
    "SELECT $1::bigint + i - 1, d, r, h, clock_timestamp() "
    "FROM unnest($2::bigint[], $3::timestamptz[], $4::bytea[]) WITH ORDINALITY AS u(d, r, h, i)"
)
_INSERT_NODES = (
    "INSERT INTO audit.tree_nodes (level, idx, hash) "
    "SELECT * FROM unnest($1::smallint[], $2::bigint[], $3::bytea[])"
)


class SequencerState(msgspec.Struct, frozen=True, kw_only=True):
    """What the leader knows between batches: the frontier and the read watermark.

    ``txid`` None means the legacy chain is still being integrated (by id)."""

    frontier: Frontier
    txid: int | None
    last_id: int


class Integrated(msgspec.Struct, frozen=True, kw_only=True):
    first_leaf: int
    delivery_ids: list[int]
    received_at: list[datetime]
    tree_size: int


def leaf_fields(r: Any) -> LeafFields:
    return LeafFields(
        id=r["id"],
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
        headers_sha256=hashlib.sha256(r["headers"].encode()).digest(),
        verification=r["verification"],
        body_sha256=bytes(r["body_sha256"]),
        body_size=r["body_size"],
    )


async def load_state(conn: Conn) -> SequencerState:
    """The state a (new) leader resumes from: everything committed says where the tree ends."""
    size = await tree_size(conn)
    frontier = await load_frontier(conn, size)
    if size == 0:
        return SequencerState(frontier=frontier, txid=None, last_id=0)
    row = await conn.fetchrow(
        "SELECT d.id, d.txid::text::bigint AS txid FROM audit.leaves l "
        "JOIN audit.deliveries d ON d.id = l.delivery_id AND d.received_at = l.received_at "
        "WHERE l.leaf_index = $1",
        size - 1,
    )
    if row is None:
        raise RuntimeError(f"leaf {size - 1}'s delivery is missing: run `ledgerhook verify`")
    return SequencerState(frontier=frontier, txid=row["txid"], last_id=row["id"])


async def integrate_once(
    conn: Conn, state: SequencerState, limit: int
) -> tuple[SequencerState, Integrated | None]:
    """Integrate up to ``limit`` rows in one transaction; the state to continue from."""
    async with conn.transaction():
        if state.txid is None:
            rows = await conn.fetch(_LEGACY, state.last_id, limit)
            if not rows:  # the legacy chain is in: from now on, by transaction id
                state = SequencerState(frontier=state.frontier, txid=0, last_id=0)
        if state.txid is not None:
            horizon = await conn.fetchval("SELECT audit.integration_horizon()")
            rows = await conn.fetch(_PENDING, state.txid, state.last_id, limit, horizon)
        if not rows:
            return state, None
        hashes = [leaf_hash(leaf_fields(r)) for r in rows]
        frontier, completed = state.frontier.append(hashes)
        ids = [r["id"] for r in rows]
        received = [r["received_at"] for r in rows]
        await conn.execute(_INSERT_LEAVES, state.frontier.size, ids, received, hashes)
        nodes = storable(completed)
        if nodes:
            await conn.execute(
                _INSERT_NODES,
                [n.level for n in nodes],
                [n.index for n in nodes],
                [n.hash for n in nodes],
            )
    last = rows[-1]
    new_state = SequencerState(
        frontier=frontier,
        txid=state.txid if last["txid"] is None else last["txid"],
        last_id=last["id"],
    )
    return new_state, Integrated(
        first_leaf=state.frontier.size,
        delivery_ids=ids,
        received_at=received,
        tree_size=frontier.size,
    )


class Sequencer:
    """Run as leader when the lock is free, as standby otherwise, until :meth:`stop`.

    ``on_integrated`` is called after each committed batch with its delivery ids in leaf order
    (the workers' wake-up); it must not block.
    """

    def __init__(
        self,
        settings: Settings,
        *,
        on_integrated: Callable[[Sequence[int]], None] | None = None,
    ) -> None:
        self._settings = settings
        self._on_integrated = on_integrated
        self._stopping = asyncio.Event()
        self.leading = False

    def stop(self) -> None:
        self._stopping.set()

    async def _sleep(self, seconds: float) -> None:
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(self._stopping.wait(), seconds)

    async def run(self) -> None:
        retry = self._settings.tlog.leader_retry_seconds
        while not self._stopping.is_set():
            conn: asyncpg.Connection | None = None
            try:
                conn = await connect(
                    self._settings.database_url,
                    server_settings={
                        "application_name": "ledgerhook-sequencer",
                        "tcp_keepalives_idle": "5",
                        "tcp_keepalives_interval": "2",
                        "tcp_keepalives_count": "3",
                    },
                    timeout=10,
                )
                if await conn.fetchval("SELECT pg_try_advisory_lock($1)", SEQUENCER_LOCK):
                    await self._lead(conn)
            except asyncio.CancelledError:
                raise
            except Exception as exc:  # PostgreSQL away, a failed batch: start over from storage
                log.warning(
                    "sequencer lost its connection or a batch failed; retrying",
                    extra={"error": type(exc).__name__, "detail": str(exc)[:200]},
                )
            finally:
                if self.leading:
                    log.info("sequencer stepped down")
                self.leading = False
                metrics.sequencer_leader.set(0)
                if conn is not None:
                    conn.terminate()  # ends the session: the lock goes with it
            await self._sleep(retry)

    async def _lead(self, conn: asyncpg.Connection) -> None:
        cfg = self._settings.tlog
        state = await load_state(conn)
        self.leading = True
        metrics.sequencer_leader.set(1)
        log.info("sequencer leading", extra={"tree_size": state.frontier.size})
        while not self._stopping.is_set():
            state, batch = await integrate_once(conn, state, cfg.integrate_batch)
            if batch is None:
                await self._sleep(cfg.integrate_interval_seconds)
                continue
            self._observe(batch)
            if self._on_integrated is not None:
                try:
                    self._on_integrated(batch.delivery_ids)
                except Exception:
                    log.exception("post-integration hook failed")

    def _observe(self, batch: Integrated) -> None:
        now = time.time()
        late = 0
        delay = self._settings.tlog.max_merge_delay_seconds
        for received in batch.received_at:
            lag = max(now - received.timestamp(), 0.0)
            metrics.integration_lag_seconds.observe(lag)
            late += lag > delay
        if late:
            metrics.merge_delay_exceeded.inc(late)
        metrics.leaves_integrated.inc(len(batch.delivery_ids))


async def integration_backlog(conn: Conn, cap: int = 100_000) -> tuple[int, datetime | None]:
    """Committed deliveries not in the tree yet (counted up to ``cap``) and the oldest receipt.

    Read from PostgreSQL, so every process (API, worker, CLI) reports the same truth: the rows
    after the last leaf's delivery in the sequencer's order (all rows without a leaf while the
    retired chain is still being integrated).
    """
    wm = await conn.fetchrow(
        "SELECT d.id, d.txid::text::bigint AS txid FROM audit.leaves l "
        "JOIN audit.deliveries d ON d.id = l.delivery_id AND d.received_at = l.received_at "
        "WHERE l.leaf_index = (SELECT max(leaf_index) FROM audit.leaves)"
    )
    if wm is None or wm["txid"] is None:
        row = await conn.fetchrow(
            "SELECT count(*) AS n, min(received_at) AS oldest FROM (SELECT d.received_at "
            "FROM audit.deliveries d WHERE NOT EXISTS "
            "(SELECT 1 FROM audit.leaves l WHERE l.delivery_id = d.id) LIMIT $1) x",
            cap,
        )
    else:
        row = await conn.fetchrow(
            "SELECT count(*) AS n, min(received_at) AS oldest FROM (SELECT d.received_at "
            "FROM audit.deliveries d WHERE (d.txid, d.id) > ($1::bigint::text::xid8, $2::bigint) "
            "ORDER BY d.txid, d.id LIMIT $3) x",
            wm["txid"],
            wm["id"],
            cap,
        )
    assert row is not None
    return row["n"], row["oldest"]
