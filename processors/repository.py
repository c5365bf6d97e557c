"""State tables I/O. Every function takes a connection: the caller owns the transaction.

Identifiers in SQL come from the fixed tables below only; values are always bound parameters.
"""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime
from typing import Any

import msgspec

from audit.dbtypes import Conn
from processors.model import (
    Anomaly,
    Body,
    CreditNote,
    Customer,
    Invoice,
    ObjectType,
    Payment,
    Refund,
    StoredObject,
    Subscription,
)
from processors.transitions import SubscriptionChange

__all__ = [
    "TABLES",
    "Delivery",
    "event_settled",
    "fetch_delivery",
    "insert_anomalies",
    "insert_history",
    "insert_subscription_change",
    "load_state",
    "lock",
    "processed_outcome",
    "record_outcome",
    "row_columns",
    "save_state",
]

TABLES: dict[ObjectType, str] = {
    "customer": "customers",
    "subscription": "subscriptions",
    "invoice": "invoices",
    "payment": "payments",
    "refund": "refunds",
    "credit_note": "credit_notes",
}
SCHEMAS = ("processors", "processors_replay")

_body_decoder: msgspec.json.Decoder[Body] = msgspec.json.Decoder(Body)
_encoder = msgspec.json.Encoder()


class Delivery(msgspec.Struct, frozen=True, kw_only=True):
    id: int
    received_at: datetime
    provider: str
    account: str
    event_id: str
    event_type: str
    event_created: int
    duplicate_of: int | None
    body: bytes


async def fetch_delivery(conn: Conn, delivery_id: int) -> Delivery | None:
    row = await conn.fetchrow(
        """
        SELECT id, received_at, provider, account, event_id, event_type, event_created,
               duplicate_of, body
        FROM audit.deliveries WHERE id = $1
        """,
        delivery_id,
    )
    if row is None:
        return None
    return Delivery(**{k: row[k] for k in row.keys()})  # noqa: SIM118


async def lock(conn: Conn, key: str) -> None:
    """Transaction-scoped advisory lock on a 64-bit hash of ``key``; released at commit/rollback."""
    await conn.execute("SELECT pg_advisory_xact_lock(hashtextextended($1, 0))", key)


async def processed_outcome(conn: Conn, delivery_id: int) -> str | None:
    value: str | None = await conn.fetchval(
        "SELECT outcome FROM processors.processed WHERE delivery_id = $1", delivery_id
    )
    return value


async def event_settled(conn: Conn, provider: str, account: str, event_id: str) -> int | None:
    """The delivery that already settled this event (applied, stale or ignored), if any."""
    value: int | None = await conn.fetchval(
        """
        SELECT delivery_id FROM processors.processed
        WHERE provider = $1 AND account = $2 AND event_id = $3
          AND outcome IN ('applied', 'stale', 'ignored')
        """,
        provider,
        account,
        event_id,
    )
    return value


def row_columns(obj: StoredObject) -> dict[str, Any]:
    """The columns of ``obj``'s state row, ``data`` included (as JSON text)."""
    b = obj.body
    cols: dict[str, Any] = {
        "provider": obj.provider,
        "account": obj.account,
        "id": obj.id,
        "status": getattr(b, "status", None),
        "customer_id": getattr(b, "customer_id", None),
        "currency": getattr(b, "currency", None),
    }
    if isinstance(b, Customer):
        cols.update(email=b.email, name=b.name)
    elif isinstance(b, Subscription):
        cols.update(
            mrr=b.mrr,
            current_period_start=b.current_period_start,
            current_period_end=b.current_period_end,
            trial_end=b.trial_end,
            cancel_at_period_end=b.cancel_at_period_end,
            canceled_at=b.canceled_at,
            ended_at=b.ended_at,
        )
    elif isinstance(b, Invoice):
        cols.update(
            subscription_id=b.subscription_id,
            total=b.total,
            amount_paid=b.amount_paid,
            amount_due=b.amount_due,
        )
    elif isinstance(b, Payment):
        cols.update(
            kind=b.kind, invoice_id=b.invoice_id, amount=b.amount, amount_refunded=b.amount_refunded
        )
    elif isinstance(b, Refund):
        cols.update(payment_id=b.payment_id, amount=b.amount)
    elif isinstance(b, CreditNote):
        cols.update(invoice_id=b.invoice_id, total=b.total)
    cols.update(
        data=_encoder.encode(b).decode(),
        version=obj.version,
        deleted=obj.deleted,
        last_delivery_id=obj.last_delivery_id,
    )
    return cols


async def load_state(
    conn: Conn,
    object_type: ObjectType,
    provider: str,
    account: str,
    object_id: str,
    *,
    schema: str = "processors",
) -> StoredObject | None:
    assert schema in SCHEMAS
    row = await conn.fetchrow(
        f"SELECT data::text AS data, version, deleted, last_delivery_id "
        f"FROM {schema}.{TABLES[object_type]} WHERE provider = $1 AND account = $2 AND id = $3",
        provider,
        account,
        object_id,
    )
    if row is None:
        return None
    return StoredObject(
        object_type=object_type,
        provider=provider,
        account=account,
        id=object_id,
        version=row["version"],
        deleted=row["deleted"],
        body=_body_decoder.decode(row["data"]),
        last_delivery_id=row["last_delivery_id"],
    )


async def save_state(
    conn: Conn, objs: Sequence[StoredObject], *, schema: str = "processors"
) -> None:
    """Insert or replace state rows (all of one object type per call is not required)."""
    assert schema in SCHEMAS
    for obj in objs:
        cols = row_columns(obj)
        names = list(cols)
        params = ", ".join(
            f"${i}::jsonb" if n == "data" else f"${i}" for i, n in enumerate(names, start=1)
        )
        updates = ", ".join(
            f"{n} = EXCLUDED.{n}" for n in names if n not in ("provider", "account", "id")
        )
        await conn.execute(
            f"INSERT INTO {schema}.{TABLES[obj.object_type]} ({', '.join(names)}) "
            f"VALUES ({params}) ON CONFLICT (provider, account, id) DO UPDATE SET "
            f"{updates}, updated_at = now()",
            *cols.values(),
        )


async def insert_history(
    conn: Conn,
    *,
    provider: str,
    account: str,
    object_type: str,
    object_id: str,
    delivery_id: int,
    event_type: str,
    version: str,
    outcome: str,
    change: dict[str, list[Any]],
) -> None:
    await conn.execute(
        """
        INSERT INTO processors.history
            (provider, account, object_type, object_id, delivery_id, event_type, version, outcome, change)
        VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9::jsonb)
        """,
        provider,
        account,
        object_type,
        object_id,
        delivery_id,
        event_type,
        version,
        outcome,
        _encoder.encode(change).decode(),
    )


async def insert_anomalies(
    conn: Conn,
    anomalies: Sequence[Anomaly],
    *,
    provider: str,
    account: str,
    delivery_id: int,
    event_type: str,
    event_created: int,
) -> None:
    for a in anomalies:
        await conn.execute(
            """
            INSERT INTO processors.anomalies
                (kind, provider, account, object_type, object_id, delivery_id, event_type,
                 event_created, detail)
            VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9::jsonb)
            """,
            a.kind,
            provider,
            account,
            a.object_type,
            a.object_id,
            delivery_id,
            event_type,
            event_created,
            _encoder.encode(a.detail).decode(),
        )


async def insert_subscription_change(
    conn: Conn,
    change: SubscriptionChange,
    *,
    provider: str,
    account: str,
    subscription_id: str,
    delivery_id: int,
    event_type: str,
    version: str,
) -> None:
    await conn.execute(
        """
        INSERT INTO processors.subscription_changes
            (provider, account, subscription_id, delivery_id, event_type, kind, mrr_before,
             mrr_after, mrr_delta, currency, version)
        VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11)
        """,
        provider,
        account,
        subscription_id,
        delivery_id,
        event_type,
        change.kind,
        change.mrr_before,
        change.mrr_after,
        change.mrr_delta,
        change.currency,
        version,
    )


async def record_outcome(
    conn: Conn,
    delivery: Delivery,
    *,
    outcome: str,
    object_type: str | None = None,
    object_id: str | None = None,
    change: dict[str, list[Any]] | None = None,
    error: str | None = None,
) -> bool:
    """Write the delivery's processed row; a dead-lettered row is overwritten (replay).

    Returns False when a row with a final outcome already exists (the delivery was processed).
    """
    status: str = await conn.execute(
        """
        INSERT INTO processors.processed
            (delivery_id, provider, account, event_id, event_type, outcome, object_type, object_id,
             change, error)
        VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9::jsonb, $10)
        ON CONFLICT (delivery_id) DO UPDATE SET
            outcome = EXCLUDED.outcome, object_type = EXCLUDED.object_type,
            object_id = EXCLUDED.object_id, change = EXCLUDED.change, error = EXCLUDED.error,
            attempts = processors.processed.attempts + 1, processed_at = now()
        WHERE processors.processed.outcome = 'dead_letter'
        """,
        delivery.id,
        delivery.provider,
        delivery.account,
        delivery.event_id,
        delivery.event_type,
        outcome,
        object_type,
        object_id,
        None if change is None else _encoder.encode(change).decode(),
        error,
    )
    return status.endswith(" 1")
