"""Alert rows: open → acknowledged → resolved, one active row per (rule, subject).

Invariants the database holds: while an alert is not resolved, the partial unique index on
``(rule, subject)`` makes a repeat firing update it (``INSERT ... ON CONFLICT DO UPDATE``) rather
than open another; every status change writes a row to the append-only ``alerts.alert_events``
in the same transaction; every change on-call should hear about writes notification outbox rows
in that transaction too, so a notifier being down never loses or blocks an alert.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from datetime import datetime
from typing import Any, Literal

import asyncpg
import msgspec

from alerts.errors import AlertNotFound, IllegalTransition
from alerts.model import RULES, Finding
from audit.dbtypes import Conn
from ledgerhook import metrics

__all__ = [
    "Alert",
    "AlertEvent",
    "Fired",
    "acknowledge",
    "apply_findings",
    "auto_resolve",
    "get_alert",
    "history",
    "refresh_gauges",
    "resolve",
    "resolve_subjects",
]

Status = Literal["open", "acknowledged", "resolved"]
SYSTEM = "system"
_SEVERITIES = ("info", "warning", "critical")
_json = msgspec.json.Encoder()


class Alert(msgspec.Struct, frozen=True, kw_only=True):
    id: int
    rule: str
    severity: str
    provider: str | None
    subject: str
    summary: str
    status: Status
    first_seen: datetime
    last_seen: datetime
    count: int
    delivery_ids: list[int]
    evidence: dict[str, Any]
    acknowledged_at: datetime | None
    acknowledged_by: str | None
    resolved_at: datetime | None
    resolved_by: str | None
    resolution: str | None


class AlertEvent(msgspec.Struct, frozen=True, kw_only=True):
    id: int
    at: datetime
    actor: str
    from_status: str | None
    to_status: str
    note: str | None


class Fired(msgspec.Struct, frozen=True, kw_only=True):
    alert_id: int
    opened: bool
    finding: Finding


ALERT_COLUMNS = (
    "id, rule, severity, provider, subject, summary, status, first_seen, last_seen, count, "
    "delivery_ids, evidence, acknowledged_at, acknowledged_by, resolved_at, resolved_by, resolution"
)


def alert_from_row(r: asyncpg.Record) -> Alert:
    return Alert(
        id=r["id"],
        rule=r["rule"],
        severity=r["severity"],
        provider=r["provider"],
        subject=r["subject"],
        summary=r["summary"],
        status=r["status"],
        first_seen=r["first_seen"],
        last_seen=r["last_seen"],
        count=r["count"],
        delivery_ids=list(r["delivery_ids"]),
        evidence=msgspec.json.decode(r["evidence"]),
        acknowledged_at=r["acknowledged_at"],
        acknowledged_by=r["acknowledged_by"],
        resolved_at=r["resolved_at"],
        resolved_by=r["resolved_by"],
        resolution=r["resolution"],
    )


async def _record(
    conn: Conn,
    alert_id: int,
    *,
    now: datetime,
    actor: str,
    from_status: str | None,
    to_status: str,
    note: str | None,
) -> None:
    await conn.execute(
        "INSERT INTO alerts.alert_events (alert_id, at, actor, from_status, to_status, note) "
        "VALUES ($1, $2, $3, $4, $5, $6)",
        alert_id,
        now,
        actor,
        from_status,
        to_status,
        note,
    )


async def _notify(
    conn: Conn,
    alert_id: int,
    action: str,
    channels: Iterable[str],
    now: datetime,
) -> None:
    for channel in channels:
        if channel == "sentry" and action != "trigger":
            continue  # Sentry is told about new problems only
        await conn.execute(
            "INSERT INTO alerts.notifications (alert_id, channel, action, created_at, next_attempt_at) "
            "VALUES ($1, $2, $3, $4, $4) ON CONFLICT DO NOTHING",
            alert_id,
            channel,
            action,
            now,
        )


_UPSERT = """
INSERT INTO alerts.alerts AS a
    (rule, severity, provider, subject, summary, first_seen, last_seen, count, delivery_ids, evidence)
VALUES ($1, $2, $3, $4, $5, $6, $6, $7, $8::bigint[], $9::jsonb)
ON CONFLICT (rule, subject) WHERE status <> 'resolved' DO UPDATE SET
    severity = EXCLUDED.severity,
    provider = EXCLUDED.provider,
    summary = EXCLUDED.summary,
    last_seen = EXCLUDED.last_seen,
    count = CASE WHEN $10 THEN a.count + EXCLUDED.count ELSE EXCLUDED.count END,
    delivery_ids = ARRAY(
        SELECT x FROM (
            SELECT DISTINCT x FROM unnest(a.delivery_ids || EXCLUDED.delivery_ids) AS u(x)
            ORDER BY x DESC LIMIT 100
        ) s ORDER BY x
    ),
    evidence = a.evidence || EXCLUDED.evidence
RETURNING id, (xmax = 0) AS inserted
"""


async def apply_findings(
    conn: Conn,
    findings: Sequence[Finding],
    now: datetime,
    channels: Sequence[str] = (),
) -> list[Fired]:
    """Open or update one alert per finding, in one transaction; new alerts are notified."""
    fired: list[Fired] = []
    if not findings:
        return fired
    async with conn.transaction():
        for f in findings:
            row = await conn.fetchrow(
                _UPSERT,
                f.rule,
                f.severity,
                f.provider,
                f.subject,
                f.summary,
                now,
                max(f.count, 1),
                list(f.delivery_ids),
                _json.encode(f.evidence).decode(),
                f.accumulate,
            )
            assert row is not None
            opened = bool(row["inserted"])
            if opened:
                await _record(
                    conn,
                    row["id"],
                    now=now,
                    actor=SYSTEM,
                    from_status=None,
                    to_status="open",
                    note=f.summary,
                )
                await _notify(conn, row["id"], "trigger", channels, now)
            fired.append(Fired(alert_id=row["id"], opened=opened, finding=f))
    for x in fired:
        if x.opened:
            metrics.alerts_fired.labels(rule=x.finding.rule, severity=x.finding.severity).inc()
    return fired


async def _locked(conn: Conn, alert_id: int) -> asyncpg.Record:
    row: asyncpg.Record | None = await conn.fetchrow(
        "SELECT id, status FROM alerts.alerts WHERE id = $1 FOR UPDATE", alert_id
    )
    if row is None:
        raise AlertNotFound(f"alert {alert_id} does not exist")
    return row


async def acknowledge(
    conn: Conn,
    alert_id: int,
    *,
    actor: str,
    now: datetime,
    note: str | None = None,
    channels: Sequence[str] = (),
) -> Alert:
    async with conn.transaction():
        row = await _locked(conn, alert_id)
        if row["status"] != "open":
            raise IllegalTransition(
                f"alert {alert_id} is {row['status']}; only an open alert can be acknowledged"
            )
        await conn.execute(
            "UPDATE alerts.alerts SET status = 'acknowledged', acknowledged_at = $2, acknowledged_by = $3 "
            "WHERE id = $1",
            alert_id,
            now,
            actor,
        )
        await _record(
            conn,
            alert_id,
            now=now,
            actor=actor,
            from_status="open",
            to_status="acknowledged",
            note=note,
        )
        await _notify(conn, alert_id, "acknowledge", channels, now)
        alert = await get_alert(conn, alert_id)
    return alert


async def _resolve(
    conn: Conn,
    alert_id: int,
    *,
    from_status: str,
    actor: str,
    resolution: str,
    now: datetime,
    note: str | None,
    channels: Sequence[str],
) -> None:
    await conn.execute(
        "UPDATE alerts.alerts SET status = 'resolved', resolved_at = $2, resolved_by = $3, "
        "resolution = $4 WHERE id = $1",
        alert_id,
        now,
        actor,
        resolution,
    )
    await _record(
        conn,
        alert_id,
        now=now,
        actor=actor,
        from_status=from_status,
        to_status="resolved",
        note=note,
    )
    await _notify(conn, alert_id, "resolve", channels, now)


async def resolve(
    conn: Conn,
    alert_id: int,
    *,
    actor: str,
    now: datetime,
    note: str | None = None,
    channels: Sequence[str] = (),
) -> Alert:
    async with conn.transaction():
        row = await _locked(conn, alert_id)
        if row["status"] == "resolved":
            raise IllegalTransition(f"alert {alert_id} is already resolved")
        await _resolve(
            conn,
            alert_id,
            from_status=row["status"],
            actor=actor,
            resolution="manual",
            now=now,
            note=note,
            channels=channels,
        )
        alert = await get_alert(conn, alert_id)
    return alert


async def auto_resolve(
    conn: Conn,
    *,
    rules: Iterable[str],
    firing: Iterable[tuple[str, str]],
    now: datetime,
    quiet_seconds: int,
    channels: Sequence[str] = (),
    subjects: Iterable[str] | None = None,
    note: str | None = None,
) -> list[int]:
    """Resolve active alerts of ``rules`` (and of ``subjects``, when given) that are not firing
    now and have been quiet long enough."""
    keep = set(firing)
    only = None if subjects is None else set(subjects)
    resolved: list[int] = []
    async with conn.transaction():
        rows = await conn.fetch(
            "SELECT id, rule, subject, status FROM alerts.alerts "
            "WHERE status <> 'resolved' AND rule = ANY($1::text[]) "
            "AND last_seen <= $2::timestamptz - make_interval(secs => $3::float8) FOR UPDATE SKIP LOCKED",
            list(rules),
            now,
            float(quiet_seconds),
        )
        for r in rows:
            if (r["rule"], r["subject"]) in keep or (only is not None and r["subject"] not in only):
                continue
            await _resolve(
                conn,
                r["id"],
                from_status=r["status"],
                actor=SYSTEM,
                resolution="auto",
                now=now,
                note=note or f"not firing for {quiet_seconds}s",
                channels=channels,
            )
            resolved.append(r["id"])
    return resolved


async def resolve_subjects(
    conn: Conn,
    *,
    rule: str,
    subjects: Iterable[str],
    now: datetime,
    note: str,
    channels: Sequence[str] = (),
) -> list[int]:
    """Resolve the active alerts of ``rule`` for ``subjects`` at once: what they said was
    checked again and is no longer true (a drifted object that matches the provider again)."""
    wanted = sorted(set(subjects))
    if not wanted:
        return []
    resolved: list[int] = []
    async with conn.transaction():
        rows = await conn.fetch(
            "SELECT id, status FROM alerts.alerts WHERE status <> 'resolved' AND rule = $1 "
            "AND subject = ANY($2::text[]) FOR UPDATE",
            rule,
            wanted,
        )
        for r in rows:
            await _resolve(
                conn,
                r["id"],
                from_status=r["status"],
                actor=SYSTEM,
                resolution="auto",
                now=now,
                note=note,
                channels=channels,
            )
            resolved.append(r["id"])
    return resolved


async def get_alert(conn: Conn, alert_id: int) -> Alert:
    row = await conn.fetchrow(f"SELECT {ALERT_COLUMNS} FROM alerts.alerts WHERE id = $1", alert_id)
    if row is None:
        raise AlertNotFound(f"alert {alert_id} does not exist")
    return alert_from_row(row)


async def history(conn: Conn, alert_id: int) -> list[AlertEvent]:
    rows = await conn.fetch(
        "SELECT id, at, actor, from_status, to_status, note FROM alerts.alert_events "
        "WHERE alert_id = $1 ORDER BY id",
        alert_id,
    )
    return [
        AlertEvent(
            id=r["id"],
            at=r["at"],
            actor=r["actor"],
            from_status=r["from_status"],
            to_status=r["to_status"],
            note=r["note"],
        )
        for r in rows
    ]


async def refresh_gauges(conn: Conn) -> None:
    """Set ``ledgerhook_alerts_open`` for every rule and severity (zero where none are open)."""
    rows = await conn.fetch(
        "SELECT rule, severity, count(*) AS n FROM alerts.alerts WHERE status <> 'resolved' "
        "GROUP BY rule, severity"
    )
    counts = {(r["rule"], r["severity"]): r["n"] for r in rows}
    for rule in RULES:
        for severity in _SEVERITIES:
            metrics.alerts_open.labels(rule=rule, severity=severity).set(
                counts.get((rule, severity), 0)
            )
