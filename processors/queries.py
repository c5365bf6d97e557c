"""Reads of billing state for the HTTP API: one object, its history, and keyset-paged lists.

Lists are ordered by the primary key (provider, account, id); the cursor is that key of the last
row, base64url-encoded JSON, so a page boundary stays stable while rows change. The cursor is
opaque to clients and strictly validated (a bad one is a 400, never a 500).
"""

from __future__ import annotations

import base64
import binascii
from datetime import datetime, timedelta
from typing import Any

import msgspec

from audit.dbtypes import Conn
from processors.errors import InvalidStateQuery, StateNotFound
from processors.repository import TABLES

__all__ = [
    "KINDS",
    "ChangeRow",
    "HistoryRow",
    "Pending",
    "StateFilter",
    "StatePage",
    "StateRow",
    "apply_lag_per_minute",
    "decode_cursor",
    "encode_cursor",
    "get_object",
    "history",
    "list_objects",
    "pending",
    "subscription_changes",
]

# URL segment -> object type
KINDS: dict[str, str] = {table: object_type for object_type, table in TABLES.items()}
_json = msgspec.json.Decoder(dict[str, Any])
_cursor = msgspec.json.Decoder(tuple[str, str, str])
_enc = msgspec.json.Encoder()


class StateRow(msgspec.Struct, frozen=True, kw_only=True):
    object_type: str
    provider: str
    account: str
    id: str
    status: str | None
    customer_id: str | None
    currency: str | None
    # The neutral snapshot (processors.model); amounts are integer minor units.
    data: dict[str, Any]
    version: str
    deleted: bool
    # The delivery that produced this state: GET /audit/deliveries/{id} shows the raw webhook.
    last_delivery_id: int
    updated_at: datetime


class StatePage(msgspec.Struct, frozen=True, kw_only=True):
    items: list[StateRow]
    next_cursor: str | None


class ChangeRow(msgspec.Struct, frozen=True, kw_only=True):
    kind: str
    mrr_before: int
    mrr_after: int
    mrr_delta: int
    currency: str | None
    delivery_id: int
    event_type: str
    version: str
    recorded_at: datetime


class HistoryRow(msgspec.Struct, frozen=True, kw_only=True):
    delivery_id: int
    event_type: str
    version: str
    outcome: str
    change: dict[str, Any]
    recorded_at: datetime


class StateFilter(msgspec.Struct, frozen=True, kw_only=True):
    provider: str | None = None
    account: str | None = None
    status: str | None = None
    customer: str | None = None


def encode_cursor(key: tuple[str, str, str]) -> str:
    return base64.urlsafe_b64encode(_enc.encode(list(key))).decode().rstrip("=")


def decode_cursor(cursor: str) -> tuple[str, str, str]:
    try:
        raw = base64.urlsafe_b64decode(cursor + "=" * (-len(cursor) % 4))
        return _cursor.decode(raw)
    except (binascii.Error, ValueError, msgspec.DecodeError):
        raise InvalidStateQuery(
            "cursor: malformed (use the next_cursor of a previous page)"
        ) from None


_COLUMNS = (
    "provider, account, id, status, customer_id, currency, data::text AS data, version, deleted, "
    "last_delivery_id, updated_at"
)


def _row(object_type: str, r: Any) -> StateRow:
    return StateRow(
        object_type=object_type,
        provider=r["provider"],
        account=r["account"],
        id=r["id"],
        status=r["status"],
        customer_id=r["customer_id"],
        currency=r["currency"],
        data=_json.decode(r["data"]),
        version=r["version"],
        deleted=r["deleted"],
        last_delivery_id=r["last_delivery_id"],
        updated_at=r["updated_at"],
    )


def _table(kind: str) -> tuple[str, str]:
    object_type = KINDS.get(kind)
    if object_type is None:
        raise StateNotFound(f"no such state collection {kind!r}; use one of {', '.join(KINDS)}")
    return kind, object_type


async def get_object(
    conn: Conn, kind: str, provider: str, object_id: str, account: str | None = None
) -> StateRow:
    """One object. Without ``account``, an id found in several accounts is ambiguous (400)."""
    table, object_type = _table(kind)
    rows = await conn.fetch(
        f"SELECT {_COLUMNS} FROM processors.{table} "
        "WHERE provider = $1 AND id = $2 AND ($3::text IS NULL OR account = $3) "
        "ORDER BY account LIMIT 10",
        provider,
        object_id,
        account,
    )
    if not rows:
        raise StateNotFound(f"{object_type} {provider}/{object_id} not found")
    if len(rows) > 1:
        accounts = ", ".join(r["account"] for r in rows)
        raise InvalidStateQuery(
            f"{object_type} {object_id} exists in several accounts ({accounts}); pass ?account="
        )
    return _row(object_type, rows[0])


async def list_objects(
    conn: Conn, kind: str, f: StateFilter, *, cursor: str | None, limit: int
) -> StatePage:
    table, object_type = _table(kind)
    where = ["TRUE"]
    args: list[Any] = []
    for column, value in (
        ("provider", f.provider),
        ("account", f.account),
        ("status", f.status),
        ("customer_id", f.customer),
    ):
        if value is not None:
            args.append(value)
            where.append(f"{column} = ${len(args)}")
    if cursor is not None:
        args.extend(decode_cursor(cursor))
        n = len(args)
        where.append(f"(provider, account, id) > (${n - 2}, ${n - 1}, ${n})")
    args.append(limit + 1)
    rows = await conn.fetch(
        f"SELECT {_COLUMNS} FROM processors.{table} WHERE {' AND '.join(where)} "
        f"ORDER BY provider, account, id LIMIT ${len(args)}",
        *args,
    )
    items = [_row(object_type, r) for r in rows[:limit]]
    more = len(rows) > limit
    last = items[-1] if items else None
    return StatePage(
        items=items,
        next_cursor=encode_cursor((last.provider, last.account, last.id))
        if more and last
        else None,
    )


async def subscription_changes(
    conn: Conn, provider: str, account: str, subscription_id: str
) -> list[ChangeRow]:
    rows = await conn.fetch(
        """
        SELECT kind, mrr_before, mrr_after, mrr_delta, currency, delivery_id, event_type, version,
               recorded_at
        FROM processors.subscription_changes
        WHERE provider = $1 AND account = $2 AND subscription_id = $3 ORDER BY id
        """,
        provider,
        account,
        subscription_id,
    )
    return [ChangeRow(**dict(r)) for r in rows]


async def history(
    conn: Conn, object_type: str, provider: str, account: str, object_id: str
) -> list[HistoryRow]:
    rows = await conn.fetch(
        """
        SELECT delivery_id, event_type, version, outcome, change::text AS change, recorded_at
        FROM processors.history
        WHERE provider = $1 AND account = $2 AND object_type = $3 AND object_id = $4 ORDER BY id
        """,
        provider,
        account,
        object_type,
        object_id,
    )
    return [
        HistoryRow(
            delivery_id=r["delivery_id"],
            event_type=r["event_type"],
            version=r["version"],
            outcome=r["outcome"],
            change=_json.decode(r["change"]),
            recorded_at=r["recorded_at"],
        )
        for r in rows
    ]


class Pending(msgspec.Struct, frozen=True, kw_only=True):
    """Committed deliveries the processors have not settled yet (the backlog)."""

    count: int
    # True when there are at least ``count`` (the count stopped at its cap).
    capped: bool
    oldest_received_at: datetime | None


async def pending(conn: Conn, cap: int = 10_000) -> Pending:
    """The backlog, read like the sweeper reads it: only the tree's tail after the sweeper's
    watermark (every leaf below it is settled), so it costs the tail, not the log. Deliveries
    not integrated yet are the sequencer's backlog (``integration_backlog``), not this one.
    """
    # The watermark is read first and bound as a value (as the sweeper does), so the planner
    # sees how short the tail is and probes the processed rows by key instead of hashing them all.
    mark: int = await conn.fetchval("SELECT upto FROM processors.sweep_watermark")
    row = await conn.fetchrow(
        """
        SELECT count(*) AS n, min(x.received_at) AS oldest FROM (
            SELECT l.received_at FROM audit.leaves l
            WHERE l.leaf_index >= $1
              AND NOT EXISTS (
                  SELECT 1 FROM processors.processed p WHERE p.delivery_id = l.delivery_id
              )
            LIMIT $2
        ) x
        """,
        mark,
        cap,
    )
    assert row is not None
    return Pending(count=row["n"], capped=row["n"] >= cap, oldest_received_at=row["oldest"])


async def apply_lag_per_minute(conn: Conn, end: datetime, minutes: int = 60) -> list[float | None]:
    """For each of the ``minutes`` minutes before ``end``: receipt-to-settled seconds of the first
    delivery the processors settled in that minute (None: nothing settled then). A sample per
    minute, found with one probe of ``processed_at``'s index, never a scan of the minute."""
    start = end - timedelta(minutes=minutes)
    rows = await conn.fetch(
        """
        SELECT k.t, s.lag FROM generate_series($1::timestamptz, $2::timestamptz - interval '1 minute',
                                              interval '1 minute') AS k(t)
        LEFT JOIN LATERAL (
            SELECT extract(epoch FROM p.processed_at - d.received_at)::float8 AS lag
            FROM (SELECT delivery_id, processed_at FROM processors.processed
                  WHERE processed_at >= k.t AND processed_at < k.t + interval '1 minute'
                  ORDER BY processed_at LIMIT 1) p
            JOIN audit.deliveries d ON d.id = p.delivery_id
        ) s ON true
        ORDER BY k.t
        """,
        start,
        end,
    )
    return [None if r["lag"] is None else max(float(r["lag"]), 0.0) for r in rows]
