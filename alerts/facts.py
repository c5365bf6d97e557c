"""Gathering the facts the rules read, from PostgreSQL (the only I/O the rules depend on).

Tailing rules: ``processors.anomalies.id`` and ``audit.deliveries.id`` are plain sequences whose
values commit out of order, so unseen anomalies are found by anti-join against
``alerts.seen_anomalies`` (a tracking row per anomaly), never by "id > last id", and "delivered
later" means a later leaf. Leaf indexes (``audit.leaves``) are gap-free and commit in order (the
sequencer), so the processing-lag scan keeps a low-water mark in ``alerts.cursors``: every leaf
below it had a ``processors.processed`` row when it was last looked at.
"""

from __future__ import annotations

from collections.abc import Iterable
from datetime import datetime, timedelta

from alerts.model import (
    Anomaly,
    ApiFailure,
    DeadLetters,
    EndpointActivity,
    Facts,
    IntegrationBacklog,
    RejectionCount,
    Unprocessed,
    VerificationStatus,
)
from audit.dbtypes import Conn
from audit.sequencer import integration_backlog
from ledgerhook.settings import Settings

__all__ = ["api_failures", "gather", "mark_anomalies_seen"]

_ANOMALY_BATCH = 5000
_LOW_WATER = "processed_low_water"
_LATE_LEAVES = "merge_delay_leaves"
_SILENCE_LOOKBACK = 86_400
_COUNT_CAP = 100_000


async def unseen_anomalies(conn: Conn) -> tuple[Anomaly, ...]:
    """Anomalies not yet turned into findings; ``predecessor_arrived`` means an earlier event for
    the same object was delivered after the anomaly's delivery (the late predecessor came)."""
    rows = await conn.fetch(
        """
        SELECT a.id, a.kind, a.provider, a.account, a.object_type, a.object_id, a.delivery_id,
               a.event_type, a.event_created, a.created_at,
               (a.kind = 'missing_predecessor' AND EXISTS (
                    SELECT 1 FROM audit.deliveries d
                    JOIN audit.leaves l ON l.delivery_id = d.id
                    WHERE d.provider = a.provider AND d.object_id = a.object_id
                      AND d.account = a.account AND d.event_created <= a.event_created
                      AND d.duplicate_of IS NULL
                      AND l.leaf_index > (SELECT la.leaf_index FROM audit.leaves la
                                          WHERE la.delivery_id = a.delivery_id)
               )) AS predecessor_arrived
        FROM processors.anomalies a
        WHERE NOT EXISTS (SELECT 1 FROM alerts.seen_anomalies s WHERE s.anomaly_id = a.id)
        ORDER BY a.id
        LIMIT $1
        """,
        _ANOMALY_BATCH,
    )
    return tuple(
        Anomaly(
            id=r["id"],
            kind=r["kind"],
            provider=r["provider"],
            account=r["account"],
            object_type=r["object_type"] or "",
            object_id=r["object_id"] or "",
            delivery_id=r["delivery_id"],
            event_type=r["event_type"] or "",
            event_created=r["event_created"] or 0,
            created_at=r["created_at"],
            predecessor_arrived=bool(r["predecessor_arrived"]),
        )
        for r in rows
    )


async def mark_anomalies_seen(conn: Conn, ids: Iterable[int], now: datetime) -> set[int]:
    """Claim anomalies for this sweep; returns those claimed here. A concurrent sweep blocks on the
    primary key and then claims nothing, so no anomaly is ever counted twice."""
    rows = await conn.fetch(
        "INSERT INTO alerts.seen_anomalies (anomaly_id, seen_at) "
        "SELECT unnest($1::bigint[]), $2 ON CONFLICT DO NOTHING RETURNING anomaly_id",
        list(ids),
        now,
    )
    return {r["anomaly_id"] for r in rows}


async def _watching_since(conn: Conn, name: str, now: datetime) -> datetime:
    await conn.execute(
        "INSERT INTO alerts.cursors (name, created_at, updated_at) VALUES ($1, $2, $2) "
        "ON CONFLICT DO NOTHING",
        name,
        now,
    )
    since: datetime = await conn.fetchval(
        "SELECT created_at FROM alerts.cursors WHERE name = $1", name
    )
    return since


async def endpoint_activity(
    conn: Conn, settings: Settings, now: datetime
) -> tuple[EndpointActivity, ...]:
    out = []
    for e in settings.all_endpoints():
        if e.silence_after_seconds <= 0:
            continue
        since = await _watching_since(conn, f"watch:{e.provider}/{e.name}", now)
        last = await conn.fetchval(
            "SELECT max(received_at) FROM audit.deliveries WHERE provider = $1 AND endpoint = $2 "
            "AND origin = 'webhook' AND received_at >= $3",
            e.provider,
            e.name,
            # Bounded lookback: an index range scan, not a walk through months of deliveries.
            now - timedelta(seconds=max(2 * e.silence_after_seconds, _SILENCE_LOOKBACK)),
        )
        out.append(
            EndpointActivity(
                provider=e.provider,
                endpoint=e.name,
                silence_after_seconds=e.silence_after_seconds,
                last_verified_at=last,
                watching_since=since,
            )
        )
    return tuple(out)


async def rejection_counts(conn: Conn, since: datetime) -> tuple[RejectionCount, ...]:
    rows = await conn.fetch(
        "SELECT provider, endpoint, reason, count(*) AS n FROM audit.rejections "
        "WHERE received_at > $1 GROUP BY provider, endpoint, reason",
        since,
    )
    grouped: dict[tuple[str, str], dict[str, int]] = {}
    for r in rows:
        grouped.setdefault((r["provider"], r["endpoint"]), {})[r["reason"]] = r["n"]
    return tuple(
        RejectionCount(provider=p, endpoint=e, count=sum(reasons.values()), reasons=reasons)
        for (p, e), reasons in sorted(grouped.items())
    )


async def dead_letters(conn: Conn) -> tuple[DeadLetters, ...]:
    rows = await conn.fetch(
        "SELECT provider, count(*) AS n, (array_agg(delivery_id ORDER BY delivery_id DESC))[1:20] AS ids "
        "FROM processors.processed WHERE outcome = 'dead_letter' GROUP BY provider ORDER BY provider"
    )
    return tuple(
        DeadLetters(provider=r["provider"], count=r["n"], delivery_ids=tuple(sorted(r["ids"])))
        for r in rows
    )


async def oldest_unprocessed(conn: Conn, now: datetime) -> Unprocessed | None:
    await conn.execute(
        "INSERT INTO alerts.cursors (name, created_at, updated_at) VALUES ($1, $2, $2) "
        "ON CONFLICT DO NOTHING",
        _LOW_WATER,
        now,
    )
    low: int = await conn.fetchval(
        "SELECT position FROM alerts.cursors WHERE name = $1", _LOW_WATER
    )
    row = await conn.fetchrow(
        "SELECT l.leaf_index, l.delivery_id, d.provider, l.received_at FROM audit.leaves l "
        "JOIN audit.deliveries d ON d.id = l.delivery_id AND d.received_at = l.received_at "
        "WHERE l.leaf_index >= $1 "
        "AND NOT EXISTS (SELECT 1 FROM processors.processed p WHERE p.delivery_id = l.delivery_id) "
        "ORDER BY l.leaf_index LIMIT 1",
        low,
    )
    if row is None:
        size = await conn.fetchval(
            "SELECT coalesce(max(leaf_index) + 1, 0) FROM audit.leaves WHERE leaf_index >= $1", low
        )
        new_low = max(low, size or 0)
    else:
        new_low = row["leaf_index"]
    if new_low != low:
        await conn.execute(
            "UPDATE alerts.cursors SET position = $2, updated_at = $3 WHERE name = $1 AND position < $2",
            _LOW_WATER,
            new_low,
            now,
        )
    if row is None:
        return None
    count = await conn.fetchval(
        "SELECT count(*) FROM (SELECT 1 FROM audit.leaves l WHERE l.leaf_index >= $1 "
        "AND NOT EXISTS (SELECT 1 FROM processors.processed p WHERE p.delivery_id = l.delivery_id) "
        "LIMIT $2) capped",
        row["leaf_index"],
        _COUNT_CAP,
    )
    return Unprocessed(
        delivery_id=row["delivery_id"],
        provider=row["provider"],
        received_at=row["received_at"],
        count=count,
    )


async def latest_verification(conn: Conn) -> VerificationStatus | None:
    """The latest verification run of the log, whoever ran it (worker, CLI, checkpointing)."""
    r = await conn.fetchrow(
        "SELECT ok, tree_size, finished_at, source, first_bad, reason "
        "FROM audit.verification_runs ORDER BY id DESC LIMIT 1"
    )
    return None if r is None else VerificationStatus(**dict(r))


async def integration(conn: Conn, settings: Settings, now: datetime) -> IntegrationBacklog:
    """Deliveries waiting for the tree now, and leaves integrated late since the last look."""
    delay = settings.tlog.max_merge_delay_seconds
    pending, oldest = await integration_backlog(conn)
    await conn.execute(
        "INSERT INTO alerts.cursors (name, created_at, updated_at) VALUES ($1, $2, $2) "
        "ON CONFLICT DO NOTHING",
        _LATE_LEAVES,
        now,
    )
    start: int = await conn.fetchval(
        "SELECT position FROM alerts.cursors WHERE name = $1", _LATE_LEAVES
    )
    late = await conn.fetchrow(
        "SELECT count(*) FILTER (WHERE lag > $2) AS n, "
        "max(lag) FILTER (WHERE lag > $2) AS worst, "
        "min(delivery_id) FILTER (WHERE lag > $2) AS first, max(leaf_index) AS top "
        "FROM (SELECT leaf_index, delivery_id, "
        "extract(epoch FROM integrated_at - received_at)::float8 AS lag "
        "FROM audit.leaves WHERE leaf_index >= $1) x",
        start,
        delay,
    )
    assert late is not None
    if late["top"] is not None:
        await conn.execute(
            "UPDATE alerts.cursors SET position = $2, updated_at = $3 WHERE name = $1",
            _LATE_LEAVES,
            late["top"] + 1,
            now,
        )
    return IntegrationBacklog(
        max_merge_delay_seconds=delay,
        pending=pending,
        oldest_received_at=oldest,
        late_leaves=late["n"] or 0,
        max_late_seconds=late["worst"] or 0.0,
        first_late_delivery=late["first"],
    )


async def api_failures(conn: Conn) -> tuple[ApiFailure, ...]:
    """Sync lists and drift sweeps whose last runs failed on the provider's API."""
    rows = await conn.fetch(
        """
        SELECT provider, endpoint || '/' || object_type AS where_, 'sync' AS operation,
               consecutive_failures, last_error, updated_at
        FROM processors.sync_cursors WHERE consecutive_failures > 0
        UNION ALL
        SELECT provider, account, 'drift', consecutive_failures, last_error, updated_at
        FROM alerts.drift_positions WHERE consecutive_failures > 0
        ORDER BY 1, 3, 2
        """
    )
    return tuple(
        ApiFailure(
            provider=r["provider"],
            where=r["where_"],
            operation=r["operation"],
            consecutive=r["consecutive_failures"],
            last_error=r["last_error"],
            updated_at=r["updated_at"],
        )
        for r in rows
    )


async def gather(conn: Conn, settings: Settings, now: datetime) -> Facts:
    """Everything the sweep's rules read, as of ``now``."""
    cfg = settings.alerts
    return Facts(
        config=cfg,
        anomalies=await unseen_anomalies(conn),
        endpoints=await endpoint_activity(conn, settings, now),
        rejections=await rejection_counts(
            conn, now - timedelta(seconds=cfg.rejections_window_seconds)
        ),
        dead_letters=await dead_letters(conn),
        oldest_unprocessed=await oldest_unprocessed(conn, now),
        verification=await latest_verification(conn),
        integration=await integration(conn, settings, now),
        api_failures=await api_failures(conn),
    )
