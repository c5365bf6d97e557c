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
    "DRAIN_WINDOW",
    "TABLES",
    "AnomalyRow",
    "ChangeRow",
    "Delivery",
    "DrainRead",
    "HistoryRow",
    "Outcome",
    "StateKey",
    "analyze_stale",
    "drain_read",
    "event_settled",
    "fetch_deliveries",
    "fetch_delivery",
    "insert_anomalies",
    "insert_anomaly_rows",
    "insert_change_rows",
    "insert_history",
    "insert_history_rows",
    "insert_subscription_change",
    "load_state",
    "load_states",
    "lock",
    "lock_all",
    "processed_outcome",
    "record_outcome",
    "record_outcomes",
    "row_columns",
    "save_state",
    "save_states",
    "settlement",
    "sweep_watermark",
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
    origin: str = "webhook"


async def fetch_delivery(conn: Conn, delivery_id: int) -> Delivery | None:
    row = await conn.fetchrow(
        """
        SELECT id, received_at, provider, account, event_id, event_type, event_created,
               duplicate_of, body, origin
        FROM audit.deliveries WHERE id = $1
        """,
        delivery_id,
    )
    if row is None:
        return None
    return Delivery(**{k: row[k] for k in row.keys()})  # noqa: SIM118


async def fetch_deliveries(conn: Conn, delivery_ids: Sequence[int]) -> dict[int, Delivery]:
    """The deliveries among ``delivery_ids`` that exist, by id (one query for a whole batch)."""
    rows = await conn.fetch(
        """
        SELECT id, received_at, provider, account, event_id, event_type, event_created,
               duplicate_of, body, origin
        FROM audit.deliveries WHERE id = ANY($1::bigint[])
        """,
        list(delivery_ids),
    )
    return {r["id"]: Delivery(**{k: r[k] for k in r.keys()}) for r in rows}  # noqa: SIM118


async def sweep_watermark(conn: Conn) -> int:
    """The sweeper's watermark: every leaf below it had been processed when the sweeper ran."""
    value: int = await conn.fetchval("SELECT upto FROM processors.sweep_watermark")
    return value


# How far above its floor one drain read looks (see :func:`drain_read`).
DRAIN_WINDOW = 100_000


class DrainRead(msgspec.Struct, frozen=True, kw_only=True):
    floor: int  # the floor the read started from (lowered below any job's leaf)
    delivery_ids: list[int]  # unprocessed, in leaf order
    last_leaf: int | None  # leaf index of the last one returned
    jobs_top: int | None  # highest leaf index among the jobs' deliveries (None: none integrated)


async def drain_read(
    conn: Conn, floor: int, limit: int, exclude: Sequence[int], jobs: Sequence[int]
) -> DrainRead:
    """Up to ``limit`` unprocessed deliveries in leaf order above ``floor``, in ONE statement.

    The floor first moves down below the leaf of any job in ``jobs`` (a retry, the sweeper
    re-enqueuing an old backlog), so the backlog behind it drains at batch speed. The read is
    bounded by a window above the floor: a prepared statement soon runs on a generic plan, and an
    open-ended range was estimated a third of the table (a sequential scan per call). The
    processed check is a per-row index probe (``OFFSET 0`` keeps PostgreSQL from turning it into
    an anti-join that reads ``processors.processed`` whole). The floor is a scalar subquery, not
    a join with ``f``: only then is the window an index condition (joined, it was a filter over
    every leaf from the first: 67 ms a read at 20 000 leaves against 3 ms, measured by
    ``bench.apply``). ``jobs_top`` comes from the same snapshot as the read: leaves commit in
    index order, so every leaf up to it was visible.
    """
    row = await conn.fetchrow(
        """
        WITH j AS (
            SELECT min(leaf_index) AS lo, max(leaf_index) AS hi FROM audit.leaves
            WHERE delivery_id = ANY($5::bigint[])
        ), f AS (
            SELECT least($1::bigint, coalesce((SELECT lo FROM j) - 1, $1::bigint)) AS floor
        ), r AS (
            SELECT l.leaf_index, l.delivery_id FROM audit.leaves l
            WHERE l.leaf_index > (SELECT floor FROM f)
              AND l.leaf_index <= (SELECT floor FROM f) + $4::bigint
              AND l.delivery_id <> ALL($3::bigint[])
              AND NOT EXISTS (
                  SELECT 1 FROM processors.processed p WHERE p.delivery_id = l.delivery_id OFFSET 0
              )
            ORDER BY l.leaf_index
            LIMIT $2
        )
        SELECT (SELECT floor FROM f) AS floor, (SELECT hi FROM j) AS jobs_top,
               array(SELECT delivery_id FROM r ORDER BY leaf_index) AS ids,
               (SELECT max(leaf_index) FROM r) AS last_leaf
        """,
        floor,
        limit,
        list(exclude),
        DRAIN_WINDOW,
        list(jobs),
    )
    assert row is not None
    return DrainRead(
        floor=row["floor"],
        delivery_ids=list(row["ids"]),
        last_leaf=row["last_leaf"],
        jobs_top=row["jobs_top"],
    )


async def lock_all(conn: Conn, keys: Sequence[str]) -> None:
    """Advisory locks on many keys in ONE statement, taken in ascending order of their 64-bit hash.

    Every caller takes its keys in this same order (events first, then objects, each class by
    hash), so two transactions never wait on each other in a cycle. The sort happens in the
    subquery; the outer projection takes the locks row by row in that order.
    """
    await conn.execute(
        """
        SELECT count(pg_advisory_xact_lock(h)) FROM (
            SELECT DISTINCT hashtextextended(k, 0) AS h FROM unnest($1::text[]) AS k ORDER BY h
        ) AS s
        """,
        list(keys),
    )


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


# Named so that tests can EXPLAIN the plan a connection caches for it.
SETTLEMENT_SQL = """
SELECT delivery_id, outcome, provider, account, event_id, true AS own
FROM processors.processed WHERE delivery_id = ANY($1::bigint[])
UNION ALL
SELECT p.delivery_id, p.outcome, p.provider, p.account, p.event_id, false
FROM processors.processed p
JOIN unnest($2::text[], $3::text[], $4::text[]) AS e(provider, account, event_id)
  ON p.provider = e.provider AND p.account = e.account AND p.event_id = e.event_id
WHERE p.outcome IN ('applied', 'stale', 'ignored')
"""


async def settlement(
    conn: Conn, delivery_ids: Sequence[int], events: Sequence[tuple[str, str, str]]
) -> tuple[dict[int, str], set[tuple[str, str, str]]]:
    """(outcome by delivery id already processed, events already settled) in one query.

    Settled means applied, stale or ignored by some delivery (see ``event_settled``).
    """
    rows = await conn.fetch(
        SETTLEMENT_SQL,
        list(delivery_ids),
        [e[0] for e in events],
        [e[1] for e in events],
        [e[2] for e in events],
    )
    own = {r["delivery_id"]: r["outcome"] for r in rows if r["own"]}
    settled = {(r["provider"], r["account"], r["event_id"]) for r in rows if not r["own"]}
    return own, settled


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


# One branch per table. Keys are matched with ``= ANY`` on all three primary-key columns, so the
# primary key is the only index that fits; a join on ``unnest`` let the planner probe an index
# on (provider, account, customer_id) instead and read the whole account per key (measured on a
# fresh database, where plans are made while the tables are still nearly empty). The cross
# product of the three lists can match a few rows that are not asked for: the caller's key set
# filters them out.
_LOAD_STATES = " UNION ALL ".join(
    f"""SELECT '{t}' AS object_type, s.provider, s.account, s.id, s.data::text AS data, s.version,
           s.deleted, s.last_delivery_id
    FROM processors.{table} s
    WHERE s.provider = ANY(${i * 3 + 1}::text[]) AND s.account = ANY(${i * 3 + 2}::text[])
      AND s.id = ANY(${i * 3 + 3}::text[])"""
    for i, (t, table) in enumerate(TABLES.items())
)

StateKey = tuple[str, str, str, str]  # (object_type, provider, account, id)


async def load_states(conn: Conn, keys: Sequence[StateKey]) -> dict[StateKey, StoredObject]:
    """The stored state of many objects of any types, in one query (absent keys are left out)."""
    args: list[list[str]] = []
    for object_type in TABLES:
        of_type = [k for k in keys if k[0] == object_type]
        args += [
            sorted({k[1] for k in of_type}),
            sorted({k[2] for k in of_type}),
            sorted({k[3] for k in of_type}),
        ]
    wanted = set(keys)
    rows = await conn.fetch(_LOAD_STATES, *args)
    return {
        (r["object_type"], r["provider"], r["account"], r["id"]): StoredObject(
            object_type=r["object_type"],
            provider=r["provider"],
            account=r["account"],
            id=r["id"],
            version=r["version"],
            deleted=r["deleted"],
            body=_body_decoder.decode(r["data"]),
            last_delivery_id=r["last_delivery_id"],
        )
        for r in rows
        if (r["object_type"], r["provider"], r["account"], r["id"]) in wanted
    }


def _upsert_sql(schema: str, object_type: ObjectType, names: Sequence[str]) -> str:
    params = ", ".join(
        f"${i}::jsonb" if n == "data" else f"${i}" for i, n in enumerate(names, start=1)
    )
    updates = ", ".join(
        f"{n} = EXCLUDED.{n}" for n in names if n not in ("provider", "account", "id")
    )
    return (
        f"INSERT INTO {schema}.{TABLES[object_type]} ({', '.join(names)}) "
        f"VALUES ({params}) ON CONFLICT (provider, account, id) DO UPDATE SET "
        f"{updates}, updated_at = now()"
    )


async def save_states(
    conn: Conn, objs: Sequence[StoredObject], *, schema: str = "processors"
) -> None:
    """Insert or replace many state rows: one pipelined ``executemany`` per object type.

    The statement text depends only on the type (its columns), so asyncpg prepares it once.
    """
    assert schema in SCHEMAS
    groups: dict[tuple[ObjectType, tuple[str, ...]], list[tuple[Any, ...]]] = {}
    for obj in objs:
        cols = row_columns(obj)
        groups.setdefault((obj.object_type, tuple(cols)), []).append(tuple(cols.values()))
    for (object_type, names), rows in groups.items():
        await conn.executemany(_upsert_sql(schema, object_type, names), rows)


class HistoryRow(msgspec.Struct, frozen=True, kw_only=True):
    provider: str
    account: str
    object_type: str
    object_id: str
    delivery_id: int
    event_type: str
    version: str
    outcome: str
    change: dict[str, list[Any]]


async def insert_history_rows(conn: Conn, rows: Sequence[HistoryRow]) -> None:
    if not rows:
        return
    await conn.execute(
        """
        INSERT INTO processors.history
            (provider, account, object_type, object_id, delivery_id, event_type, version, outcome, change)
        SELECT * FROM unnest($1::text[], $2::text[], $3::text[], $4::text[], $5::bigint[],
                             $6::text[], $7::text[], $8::text[], $9::jsonb[])
        """,
        [r.provider for r in rows],
        [r.account for r in rows],
        [r.object_type for r in rows],
        [r.object_id for r in rows],
        [r.delivery_id for r in rows],
        [r.event_type for r in rows],
        [r.version for r in rows],
        [r.outcome for r in rows],
        [_encoder.encode(r.change).decode() for r in rows],
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


_INSERT_ANOMALY = """
            INSERT INTO processors.anomalies
                (kind, provider, account, object_type, object_id, delivery_id, event_type,
                 event_created, detail)
            VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9::jsonb)
            """
_INSERT_SUBSCRIPTION_CHANGE = """
        INSERT INTO processors.subscription_changes
            (provider, account, subscription_id, delivery_id, event_type, kind, mrr_before,
             mrr_after, mrr_delta, currency, version)
        VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11)
        """


class AnomalyRow(msgspec.Struct, frozen=True, kw_only=True):
    anomaly: Anomaly
    provider: str
    account: str
    delivery_id: int
    event_type: str
    event_created: int


async def insert_anomaly_rows(conn: Conn, rows: Sequence[AnomalyRow]) -> None:
    if rows:
        await conn.executemany(
            _INSERT_ANOMALY,
            [
                (
                    r.anomaly.kind,
                    r.provider,
                    r.account,
                    r.anomaly.object_type,
                    r.anomaly.object_id,
                    r.delivery_id,
                    r.event_type,
                    r.event_created,
                    _encoder.encode(r.anomaly.detail).decode(),
                )
                for r in rows
            ],
        )


class ChangeRow(msgspec.Struct, frozen=True, kw_only=True):
    change: SubscriptionChange
    provider: str
    account: str
    subscription_id: str
    delivery_id: int
    event_type: str
    version: str


async def insert_change_rows(conn: Conn, rows: Sequence[ChangeRow]) -> None:
    if rows:
        await conn.executemany(
            _INSERT_SUBSCRIPTION_CHANGE,
            [
                (
                    r.provider,
                    r.account,
                    r.subscription_id,
                    r.delivery_id,
                    r.event_type,
                    r.change.kind,
                    r.change.mrr_before,
                    r.change.mrr_after,
                    r.change.mrr_delta,
                    r.change.currency,
                    r.version,
                )
                for r in rows
            ],
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
            _INSERT_ANOMALY,
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
        _INSERT_SUBSCRIPTION_CHANGE,
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


_RECORD_OUTCOME = """
        INSERT INTO processors.processed
            (delivery_id, provider, account, event_id, event_type, outcome, object_type, object_id,
             change, error)
        VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9::jsonb, $10)
        ON CONFLICT (delivery_id) DO UPDATE SET
            outcome = EXCLUDED.outcome, object_type = EXCLUDED.object_type,
            object_id = EXCLUDED.object_id, change = EXCLUDED.change, error = EXCLUDED.error,
            attempts = processors.processed.attempts + 1, processed_at = now()
        WHERE processors.processed.outcome = 'dead_letter'
        """


class Outcome(msgspec.Struct, frozen=True, kw_only=True):
    delivery: Delivery
    outcome: str
    object_type: str | None = None
    object_id: str | None = None
    change: dict[str, list[Any]] | None = None
    error: str | None = None


async def record_outcomes(conn: Conn, outcomes: Sequence[Outcome]) -> None:
    """Processed rows for a batch, one pipelined ``executemany`` (same rule as ``record_outcome``)."""
    if not outcomes:
        return
    await conn.executemany(
        _RECORD_OUTCOME,
        [
            (
                o.delivery.id,
                o.delivery.provider,
                o.delivery.account,
                o.delivery.event_id,
                o.delivery.event_type,
                o.outcome,
                o.object_type,
                o.object_id,
                None if o.change is None else _encoder.encode(o.change).decode(),
                o.error,
            )
            for o in outcomes
        ],
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
        _RECORD_OUTCOME,
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


async def analyze_stale(conn: Conn) -> list[str]:
    """ANALYZE Ledgerhook's tables whose statistics are stale (``processors.analyze_stale()``,
    migration 0102); returns the tables analyzed. The worker runs it on a schedule and a sync
    between pages: on a server with autovacuum off nothing else does."""
    tables: list[str] = await conn.fetchval("SELECT processors.analyze_stale()")
    return tables
