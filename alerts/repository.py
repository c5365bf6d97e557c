"""Reading alerts for the API: filtered keyset pages, newest first."""

from __future__ import annotations

import base64
import binascii
import re

import msgspec

from alerts.errors import InvalidAlertQuery
from alerts.lifecycle import ALERT_COLUMNS, Alert, alert_from_row
from audit.dbtypes import Conn

__all__ = [
    "AlertFilter",
    "AlertPage",
    "decode_cursor",
    "encode_cursor",
    "list_alerts",
    "open_counts",
]

_CURSOR = re.compile(r"^[A-Za-z0-9_-]{1,40}$")


class AlertFilter(msgspec.Struct, frozen=True, kw_only=True):
    status: str | None = None
    rule: str | None = None
    severity: str | None = None
    provider: str | None = None


class AlertPage(msgspec.Struct, frozen=True, kw_only=True):
    items: list[Alert]
    next_cursor: str | None


def encode_cursor(last_id: int) -> str:
    return base64.urlsafe_b64encode(f"alert:{last_id}".encode()).decode().rstrip("=")


def decode_cursor(cursor: str) -> int:
    bad = InvalidAlertQuery("cursor: malformed (use the next_cursor of a previous page)")
    if not _CURSOR.match(cursor):
        raise bad
    try:
        raw = base64.urlsafe_b64decode(cursor + "=" * (-len(cursor) % 4)).decode("ascii")
    except (binascii.Error, UnicodeDecodeError):
        raise bad from None
    prefix, _, value = raw.partition(":")
    if prefix != "alert" or not value.isdigit():
        raise bad
    return int(value)


async def list_alerts(conn: Conn, f: AlertFilter, *, cursor: str | None, limit: int) -> AlertPage:
    where: list[str] = []
    args: list[object] = []
    for column in ("status", "rule", "severity", "provider"):
        value = getattr(f, column)
        if value is not None:
            args.append(value)
            where.append(f"{column} = ${len(args)}")
    if cursor is not None:
        args.append(decode_cursor(cursor))
        where.append(f"id < ${len(args)}")
    args.append(limit + 1)
    sql = (
        f"SELECT {ALERT_COLUMNS} FROM alerts.alerts"
        + (" WHERE " + " AND ".join(where) if where else "")
        + f" ORDER BY id DESC LIMIT ${len(args)}"
    )
    rows = await conn.fetch(sql, *args)
    items = [alert_from_row(r) for r in rows[:limit]]
    more = len(rows) > limit
    return AlertPage(items=items, next_cursor=encode_cursor(items[-1].id) if more else None)


async def open_counts(conn: Conn) -> dict[tuple[str, str], int]:
    """Unresolved alerts by (status, severity): the few active rows, through ``(status, id)``."""
    rows = await conn.fetch(
        "SELECT status, severity, count(*) AS n FROM alerts.alerts "
        "WHERE status IN ('open', 'acknowledged') GROUP BY status, severity"
    )
    return {(r["status"], r["severity"]): r["n"] for r in rows}
