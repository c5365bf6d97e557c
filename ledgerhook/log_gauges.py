"""Gauges of the log's state, read from PostgreSQL when ``/metrics`` is scraped.

Whether the log verified, how big the tree is, how old the last checkpoint is, whether a
sequencer leads and how long deliveries wait for the tree are facts of the database, not of a
process. Kept as per-process gauges they lie: under ``ledgerhook run`` the worker set the chain
gauge and the API, which Prometheus scrapes, kept its own 0, so the "log tampered" rule paged
for nothing. Read here from PostgreSQL, every process (and every API replica) answers the same
truth, and a gauge that has no truth yet (no verification ever ran) is simply absent, so a rule
on it cannot fire. The read is a few indexed lookups, cached for :data:`TTL` seconds so that
several scrapers cost one read.
"""

from __future__ import annotations

import time
from collections.abc import Iterator
from datetime import UTC, datetime

import asyncpg
import msgspec
from prometheus_client import CollectorRegistry, generate_latest
from prometheus_client.core import GaugeMetricFamily
from prometheus_client.registry import Collector

from audit.dbtypes import Conn
from audit.sequencer import SEQUENCER_LOCK, integration_backlog

__all__ = ["METRICS", "TTL", "UP", "LogState", "exposition", "read_state"]

TTL = 5.0


class LogState(msgspec.Struct, frozen=True, kw_only=True):
    up: bool
    tree_size: int = 0
    sequencer_leaders: int = 0
    pending: int = 0
    oldest_pending_seconds: float = 0.0
    checkpoint_size: int | None = None
    checkpoint_age_seconds: float | None = None
    verification_ok: bool | None = None
    verification_at: float | None = None


async def read_state(conn: Conn) -> LogState:
    now = datetime.now(UTC)
    size = await conn.fetchval("SELECT coalesce(max(leaf_index) + 1, 0) FROM audit.leaves")
    # The leader holds a session advisory lock; pg_locks shows it to everyone.
    leaders = await conn.fetchval(
        "SELECT count(*) FROM pg_locks WHERE locktype = 'advisory' AND granted "
        "AND database = (SELECT oid FROM pg_database WHERE datname = current_database()) "
        "AND classid = 0 AND objid = $1::oid AND objsubid = 1",
        SEQUENCER_LOCK,
    )
    pending, oldest = await integration_backlog(conn)
    cp = await conn.fetchrow(
        "SELECT tree_size, created_at FROM audit.tree_checkpoints "
        "ORDER BY tree_size DESC, id DESC LIMIT 1"
    )
    run = await conn.fetchrow(
        "SELECT ok, finished_at FROM audit.verification_runs ORDER BY id DESC LIMIT 1"
    )
    return LogState(
        up=True,
        tree_size=size,
        sequencer_leaders=leaders,
        pending=pending,
        oldest_pending_seconds=0.0 if oldest is None else max((now - oldest).total_seconds(), 0),
        checkpoint_size=None if cp is None else cp["tree_size"],
        checkpoint_age_seconds=None
        if cp is None
        else max((now - cp["created_at"]).total_seconds(), 0.0),
        verification_ok=None if run is None else run["ok"],
        verification_at=None if run is None else run["finished_at"].timestamp(),
    )


# (name, help, LogState field) of every gauge this module exports.
METRICS: tuple[tuple[str, str, str], ...] = (
    ("ledgerhook_tree_size", "Leaves in the Merkle tree.", "tree_size"),
    (
        "ledgerhook_sequencer_leaders",
        "Sequencers holding the leader lock (1 is healthy; 0 means nothing integrates).",
        "sequencer_leaders",
    ),
    (
        "ledgerhook_integration_pending",
        "Committed deliveries not in the tree yet (counted up to 100 000).",
        "pending",
    ),
    (
        "ledgerhook_oldest_unintegrated_seconds",
        "Age of the oldest committed delivery not in the tree yet (0 when none).",
        "oldest_pending_seconds",
    ),
    (
        "ledgerhook_checkpoint_tree_size",
        "Tree size of the latest signed checkpoint.",
        "checkpoint_size",
    ),
    (
        "ledgerhook_checkpoint_age_seconds",
        "Seconds since the latest signed checkpoint was made.",
        "checkpoint_age_seconds",
    ),
    (
        "ledgerhook_log_verification_ok",
        "1 when the latest verification of the log passed, 0 when it failed (absent until one ran).",
        "verification_ok",
    ),
    (
        "ledgerhook_log_verification_timestamp_seconds",
        "Unix time the latest verification of the log finished.",
        "verification_at",
    ),
)
UP = "ledgerhook_log_state_up"


class _Families(Collector):
    def __init__(self, state: LogState) -> None:
        self._state = state

    def collect(self) -> Iterator[GaugeMetricFamily]:
        yield GaugeMetricFamily(
            UP, "1 when the log state was read from PostgreSQL.", value=self._state.up
        )
        if not self._state.up:
            return
        for name, doc, field in METRICS:
            value = getattr(self._state, field)
            if value is not None:  # no truth yet: no gauge, so no rule can fire on it
                yield GaugeMetricFamily(name, doc, value=float(value))


# (monotonic time, text) of the last read: one entry for the whole process.
_cache: dict[str, tuple[float, bytes]] = {}


async def exposition(pool: asyncpg.Pool) -> bytes:
    """The log-state gauges in the Prometheus text format (cached for :data:`TTL` seconds)."""
    cached = _cache.get("text")
    if cached is not None and time.monotonic() - cached[0] < TTL:
        return cached[1]
    try:
        async with pool.acquire(timeout=2) as conn:
            state = await read_state(conn)
    except Exception:  # PostgreSQL away: say so, never fail the scrape
        state = LogState(up=False)
    registry = CollectorRegistry()
    registry.register(_Families(state))
    text = generate_latest(registry)
    _cache["text"] = (time.monotonic(), text)
    return text
