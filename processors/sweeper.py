"""Find integrated deliveries that have no processed row, so the worker can re-enqueue them.

Redis is only a wake-up: a job can be lost (Redis down at enqueue, a worker killed and its job
expired). The log is the queue of record, in its own order: deliveries are applied once the
sequencer has made them leaves. The anti-join is kept cheap by a low watermark
(``processors.sweep_watermark``): every leaf below it has a processed row. Leaf indexes are
gap-free and commit in order (:mod:`audit.sequencer`), and processed rows are never deleted, so
once true of a leaf it stays true and the scan only reads the tail of the tree. The scan runs in
one REPEATABLE READ snapshot, so the watermark never passes a leaf it did not see.
"""

from __future__ import annotations

from datetime import UTC, datetime

import msgspec

from audit.dbtypes import Conn

__all__ = ["SweepResult", "scan"]


class SweepResult(msgspec.Struct, frozen=True, kw_only=True):
    # Unprocessed deliveries old enough to re-enqueue (at most ``limit``), oldest first.
    due: list[int]
    backlog: int
    oldest_age_seconds: float
    dead_letters: int
    watermark: int


async def scan(conn: Conn, *, older_than_seconds: float, limit: int) -> SweepResult:
    now = datetime.now(UTC)
    async with conn.transaction(isolation="repeatable_read"):
        mark: int = await conn.fetchval("SELECT upto FROM processors.sweep_watermark")
        rows = await conn.fetch(
            """
            SELECT l.leaf_index, l.delivery_id, l.received_at FROM audit.leaves l
            WHERE l.leaf_index >= $1
              AND NOT EXISTS (
                  SELECT 1 FROM processors.processed p WHERE p.delivery_id = l.delivery_id
              )
            ORDER BY l.leaf_index
            LIMIT $2
            """,
            mark,
            limit,
        )
        if rows:
            new_mark = rows[0]["leaf_index"]
        else:
            new_mark = await conn.fetchval(
                "SELECT coalesce(max(leaf_index) + 1, $1) FROM audit.leaves WHERE leaf_index >= $1",
                mark,
            )
        backlog = await conn.fetchrow(
            """
            SELECT count(*) AS n, min(l.received_at) AS oldest FROM audit.leaves l
            WHERE l.leaf_index >= $1
              AND NOT EXISTS (
                  SELECT 1 FROM processors.processed p WHERE p.delivery_id = l.delivery_id
              )
            """,
            new_mark,
        )
        dead: int = await conn.fetchval(
            "SELECT count(*) FROM processors.processed WHERE outcome = 'dead_letter'"
        )
    if new_mark > mark:
        await conn.execute(
            "UPDATE processors.sweep_watermark SET upto = greatest(upto, $1)", new_mark
        )
    cutoff = older_than_seconds
    due = [r["delivery_id"] for r in rows if (now - r["received_at"]).total_seconds() >= cutoff]
    assert backlog is not None
    oldest = backlog["oldest"]
    return SweepResult(
        due=due,
        backlog=backlog["n"],
        oldest_age_seconds=0.0 if oldest is None else max((now - oldest).total_seconds(), 0.0),
        dead_letters=dead,
        watermark=max(new_mark, mark),
    )
