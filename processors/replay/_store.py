"""Write a rebuild into ``processors_replay``, in the caller's transaction (binary COPY).

The columns are those live processing writes (``processors.repository``); the ones it leaves
to their defaults (``recorded_at``, ``processed_at``, ``attempts``, ``updated_at``) are left to
them here too. Rows are numbered in fold order (the ``id`` of history, subscription changes and
anomalies), which is the only thing their ids mean.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import msgspec

from audit.dbtypes import Conn
from processors import repository as repo
from processors.model import ObjectType, StoredObject
from processors.replay._fold import Rows

__all__ = ["RECORD_TABLES", "ReplayWriter"]

SCHEMA = "processors_replay"
RECORD_TABLES = ("processed", "history", "subscription_changes", "anomalies")

_encoder = msgspec.json.Encoder()


def _json(value: Any) -> str:
    return _encoder.encode(value).decode()


class ReplayWriter:
    def __init__(self, conn: Conn) -> None:
        self._conn = conn
        self._ids = dict.fromkeys(("history", "subscription_changes", "anomalies"), 0)
        self.written = dict.fromkeys(RECORD_TABLES, 0)

    async def empty(self) -> None:
        tables = [*repo.TABLES.values(), *RECORD_TABLES]
        await self._conn.execute(f"TRUNCATE {', '.join(f'{SCHEMA}.{t}' for t in tables)}")

    def _number(self, table: str, n: int) -> range:
        first = self._ids[table] + 1
        self._ids[table] += n
        return range(first, first + n)

    async def _copy(
        self, table: str, columns: Sequence[str], records: list[tuple[Any, ...]]
    ) -> None:
        if records:
            await self._conn.copy_records_to_table(
                table, schema_name=SCHEMA, columns=list(columns), records=records
            )
            if table in self.written:
                self.written[table] += len(records)

    async def rows(self, rows: Rows) -> None:
        await self._copy(
            "processed",
            (
                "delivery_id",
                "provider",
                "account",
                "event_id",
                "event_type",
                "outcome",
                "object_type",
                "object_id",
                "change",
                "error",
            ),
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
                    None if o.change is None else _json(o.change),
                    o.error,
                )
                for o in rows.outcomes
            ],
        )
        await self._copy(
            "history",
            (
                "id",
                "provider",
                "account",
                "object_type",
                "object_id",
                "delivery_id",
                "event_type",
                "version",
                "outcome",
                "change",
            ),
            [
                (
                    i,
                    h.provider,
                    h.account,
                    h.object_type,
                    h.object_id,
                    h.delivery_id,
                    h.event_type,
                    h.version,
                    h.outcome,
                    _json(h.change),
                )
                for i, h in zip(
                    self._number("history", len(rows.history)), rows.history, strict=True
                )
            ],
        )
        await self._copy(
            "subscription_changes",
            (
                "id",
                "provider",
                "account",
                "subscription_id",
                "delivery_id",
                "event_type",
                "kind",
                "mrr_before",
                "mrr_after",
                "mrr_delta",
                "currency",
                "version",
            ),
            [
                (
                    i,
                    c.provider,
                    c.account,
                    c.subscription_id,
                    c.delivery_id,
                    c.event_type,
                    c.change.kind,
                    c.change.mrr_before,
                    c.change.mrr_after,
                    c.change.mrr_delta,
                    c.change.currency,
                    c.version,
                )
                for i, c in zip(
                    self._number("subscription_changes", len(rows.changes)),
                    rows.changes,
                    strict=True,
                )
            ],
        )
        await self._copy(
            "anomalies",
            (
                "id",
                "kind",
                "provider",
                "account",
                "object_type",
                "object_id",
                "delivery_id",
                "event_type",
                "event_created",
                "detail",
            ),
            [
                (
                    i,
                    a.anomaly.kind,
                    a.provider,
                    a.account,
                    a.anomaly.object_type,
                    a.anomaly.object_id,
                    a.delivery_id,
                    a.event_type,
                    a.event_created,
                    _json(a.anomaly.detail),
                )
                for i, a in zip(
                    self._number("anomalies", len(rows.anomalies)), rows.anomalies, strict=True
                )
            ],
        )

    async def states(self, states: Sequence[StoredObject]) -> None:
        """Current state rows, with the same columns as live (:func:`repo.row_columns`)."""
        groups: dict[ObjectType, list[dict[str, Any]]] = {}
        for obj in states:
            groups.setdefault(obj.object_type, []).append(repo.row_columns(obj))
        for object_type, rows in groups.items():
            columns = list(rows[0])
            await self._copy(
                repo.TABLES[object_type], columns, [tuple(r[c] for c in columns) for r in rows]
            )
