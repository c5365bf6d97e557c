"""Rebuild into ``processors_replay`` from one snapshot; optionally compare in that same snapshot.

Everything happens in ONE ``REPEATABLE READ`` transaction: the fold reads the log, the
settlements and the order (:mod:`._order`) as of its first statement, and the comparison reads
live state as of that same moment. Each batch of live processing commits its processed rows
together with all their effects, so that snapshot holds exactly the effects of the deliveries it
shows settled, however many workers are busy: the comparison needs no quiet system. Deliveries
still in the backlog at the snapshot are not folded, and are counted in the report.

The transaction only writes ``processors_replay`` (which no worker touches), so it cannot fail on
a serialisation conflict; it holds back vacuum on the live tables for as long as it runs.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Protocol

import msgspec

from audit.dbtypes import Conn
from processors import repository as repo
from processors.replay._compare import Difference, compare
from processors.replay._fold import Fold
from processors.replay._order import replay_count, replay_order
from processors.replay._store import ReplayWriter

__all__ = ["RebuildStats", "Report", "rebuild", "rebuild_and_compare"]


class Progress(Protocol):
    """What the rebuild reports to (``ledgerhook.cli.progress.Progress`` is one): the number of
    deliveries to fold, each chunk folded, the end of the fold."""

    total: int | None

    def advance(self, n: int = 1) -> None: ...

    def finish(self, outcome: str = "done") -> str: ...


class RebuildStats(msgspec.Struct, frozen=True, kw_only=True):
    # Deliveries folded, and among them: those live had settled their event with (the others
    # are deliveries of events not settled yet, folded by --rebuild alone), later deliveries
    # of an event already folded, events that change nothing, payloads that cannot be
    # normalised.
    deliveries: int
    settled: int
    duplicates: int
    ignored: int
    failed: int
    # Rows rebuilt.
    objects: int
    settlements: int
    history: int
    subscription_changes: int
    anomalies: int
    # In the snapshot: deliveries no worker had processed yet, and dead-lettered ones.
    backlog: int
    dead_letters: int

    def describe(self) -> str:
        pending = self.deliveries - self.settled
        source = f"{self.settled} deliveries that settled their events" + (
            f" and {pending} of events not settled yet" if pending else ""
        )
        return (
            f"rebuilt from {source} ({self.ignored} ignored, {self.duplicates} duplicates, "
            f"{self.failed} not normalisable): {self.objects} objects, "
            f"{self.settlements} settlements, {self.history} history rows, "
            f"{self.subscription_changes} subscription changes, {self.anomalies} anomalies"
        )


class Report(msgspec.Struct, frozen=True, kw_only=True):
    stats: RebuildStats
    differences: list[Difference]


async def _snapshot_counts(conn: Conn) -> tuple[int, int]:
    row = await conn.fetchrow(
        """
        SELECT (SELECT count(*) FROM audit.deliveries d
                WHERE NOT EXISTS (SELECT 1 FROM processors.processed p WHERE p.delivery_id = d.id))
                   AS backlog,
               (SELECT count(*) FROM processors.processed WHERE outcome = 'dead_letter')
                   AS dead_letters
        """
    )
    assert row is not None
    return row["backlog"], row["dead_letters"]


async def _rebuild(conn: Conn, *, unsettled: bool, progress: Progress | None) -> RebuildStats:
    """The rebuild, in the caller's (repeatable read) transaction."""
    backlog, dead_letters = await _snapshot_counts(conn)
    if progress is not None:
        progress.total = await replay_count(conn, unsettled=unsettled)
    writer = ReplayWriter(conn)
    await writer.empty()
    fold = Fold()
    async for chunk in replay_order(conn, unsettled=unsettled):
        found = await repo.fetch_deliveries(conn, [i for i, _ in chunk])
        for delivery_id, settled in chunk:
            fold.add(found[delivery_id], settled=settled)
        await writer.rows(fold.take())
        if progress is not None:
            progress.advance(len(chunk))
    states = fold.states
    await writer.states(states)
    if progress is not None:
        progress.finish("rebuilt")
    return RebuildStats(
        deliveries=fold.deliveries,
        settled=fold.settled,
        duplicates=fold.duplicates,
        ignored=fold.ignored,
        failed=fold.failed,
        objects=len(states),
        settlements=writer.written["processed"],
        history=writer.written["history"],
        subscription_changes=writer.written["subscription_changes"],
        anomalies=writer.written["anomalies"],
        backlog=backlog,
        dead_letters=dead_letters,
    )


async def rebuild(conn: Conn, progress: Progress | None = None) -> RebuildStats:
    """Rebuild everything the log says, backlog included, into ``processors_replay``; commit."""
    async with conn.transaction(isolation="repeatable_read"):
        return await _rebuild(conn, unsettled=True, progress=progress)


async def rebuild_and_compare(
    conn: Conn, progress: Progress | None = None, compared: Callable[[str], None] | None = None
) -> Report:
    """Rebuild what live had settled, and compare, in one snapshot; the rebuild is kept.

    ``progress`` is told of deliveries folded, ``compared`` of each table it starts comparing.
    """
    async with conn.transaction(isolation="repeatable_read"):
        stats = await _rebuild(conn, unsettled=False, progress=progress)
        differences = await compare(conn, compared)
    return Report(stats=stats, differences=differences)
