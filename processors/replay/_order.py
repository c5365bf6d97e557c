"""Which deliveries a rebuild folds, and in which order. The ONE place that decides it.

1. **Settled deliveries, in the order live applied them.** Those whose processed row settled
   their event (``applied``, ``stale``, ``ignored``) in the caller's snapshot. Current state does
   not depend on their order (a higher version wins, see :mod:`processors.transitions`), but the
   rows that record *how* state got there do: which update was ``stale``, which raised
   ``out_of_order``, the subscription change (and MRR delta) between two applied versions. Live
   applies deliveries in whatever order jobs, batches, retries and killed workers produce, so the
   rebuild follows that order, read from ``processors.history``: ``history.id`` is drawn from a
   sequence while the transaction holds the advisory lock of every object the delivery touches
   (all locks are taken before the first history row is written, and held until commit; within
   one batch, rows are inserted in the order its deliveries were decided), so for any two
   deliveries that touch a common object, the one applied first has all its history ids below
   the other's. Ordering by each delivery's smallest history id therefore replays every
   object's updates in exactly the order live applied them; deliveries that touch no common
   object may come in any order, and that changes nothing. Every ``applied`` or ``stale``
   delivery has a history row (its main update always gets one); ``ignored`` ones have none and
   touch nothing, so their place does not matter. Delivery ids are only a tie-break here, never
   a claim about commit order. (This needs ``history.id``'s sequence to hand out numbers in
   call order: ``bigserial``'s default ``CACHE 1``. A per-session cache would break it.)
2. **With ``unsettled``:** then every delivery of an event nobody settled yet (backlog,
   dead letters), in log order: what live will get to once it catches up. ``--rebuild`` alone
   includes them; the comparison does not (live has not applied them, so they are no difference).

The log position is the delivery's leaf index (``audit.leaves``: the log's own order); deliveries
the sequencer has not integrated yet come after every leaf, by id.
"""

from __future__ import annotations

from collections.abc import AsyncIterator

from audit.dbtypes import Conn

__all__ = ["SETTLED", "replay_count", "replay_order"]

# Outcomes that settle an event (the partial unique index processors.processed_event_once).
SETTLED = ("applied", "stale", "ignored")

_LOG_POSITION = "l.leaf_index"
_LEAF = "LEFT JOIN audit.leaves l ON l.delivery_id = d.id"

_SETTLED_IN_APPLICATION_ORDER = f"""
SELECT d.id, true AS settled, h.first AS applied_rank, {_LOG_POSITION} AS log_position
FROM processors.processed p
JOIN audit.deliveries d ON d.id = p.delivery_id
{_LEAF}
LEFT JOIN (
    SELECT delivery_id, min(id) AS first FROM processors.history GROUP BY delivery_id
) h ON h.delivery_id = p.delivery_id
WHERE p.outcome IN ('applied', 'stale', 'ignored')
"""

_UNSETTLED_IN_LOG_ORDER = f"""
SELECT d.id, false, NULL::bigint, {_LOG_POSITION}
FROM audit.deliveries d
{_LEAF}
WHERE NOT EXISTS (
    SELECT 1 FROM processors.processed p
    WHERE p.provider = d.provider AND p.account = d.account AND p.event_id = d.event_id
      AND p.outcome IN ('applied', 'stale', 'ignored')
)
"""


def _select(*, unsettled: bool) -> str:
    parts = [_SETTLED_IN_APPLICATION_ORDER]
    if unsettled:
        parts.append(_UNSETTLED_IN_LOG_ORDER)
    return " UNION ALL ".join(parts)


async def replay_count(conn: Conn, *, unsettled: bool) -> int:
    """How many deliveries :func:`replay_order` yields (for progress), in the same snapshot."""
    n: int = await conn.fetchval(f"SELECT count(*) FROM ({_select(unsettled=unsettled)}) q")
    return n


async def replay_order(
    conn: Conn, *, unsettled: bool, chunk: int = 500
) -> AsyncIterator[list[tuple[int, bool]]]:
    """``(delivery id, settled)`` in fold order, ``chunk`` at a time.

    Runs in the caller's transaction (its snapshot) through a server-side cursor, so memory stays
    flat however long the log is; the cursor closes with the transaction.
    """
    await conn.execute(
        f"DECLARE replay_order NO SCROLL CURSOR FOR {_select(unsettled=unsettled)} "
        "ORDER BY settled DESC, applied_rank NULLS LAST, log_position NULLS LAST, id"
    )
    while rows := await conn.fetch(f"FETCH {int(chunk)} FROM replay_order"):
        yield [(r["id"], r["settled"]) for r in rows]
