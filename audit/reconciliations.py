"""The record of reconciliations: one append-only row per finished run (``audit.reconciliation_runs``).

Written by :func:`alerts.reconcile.reconcile` when a run finishes; read by the console's health
page ("last reconciliation") and available to auditors as evidence that the log was checked
against the provider's own Events API, over which window, and what was found missing.
"""

from __future__ import annotations

from collections.abc import Iterable
from datetime import datetime

import msgspec

from audit.dbtypes import Conn

__all__ = ["ReconciliationRun", "latest_runs", "record_run"]


class ReconciliationRun(msgspec.Struct, frozen=True, kw_only=True):
    finished_at: datetime
    provider: str
    endpoint: str
    account: str
    window_start: datetime
    window_end: datetime
    clamped: bool
    listed: int
    missing: int
    backfilled: int


_COLUMNS = (
    "finished_at, provider, endpoint, account, window_start, window_end, clamped, listed, "
    "missing, backfilled"
)


async def record_run(conn: Conn, run: ReconciliationRun) -> None:
    await conn.execute(
        f"INSERT INTO audit.reconciliation_runs ({_COLUMNS}) "
        "VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10)",
        run.finished_at,
        run.provider,
        run.endpoint,
        run.account,
        run.window_start,
        run.window_end,
        run.clamped,
        run.listed,
        run.missing,
        run.backfilled,
    )


async def latest_runs(conn: Conn, endpoints: Iterable[tuple[str, str]]) -> list[ReconciliationRun]:
    """The latest run of each (provider, endpoint) that has one: one index probe each."""
    pairs = sorted(set(endpoints))
    if not pairs:
        return []
    rows = await conn.fetch(
        f"""
        SELECT r.* FROM unnest($1::text[], $2::text[]) AS k(provider, endpoint)
        CROSS JOIN LATERAL (
            SELECT {_COLUMNS} FROM audit.reconciliation_runs x
            WHERE x.provider = k.provider AND x.endpoint = k.endpoint
            ORDER BY x.finished_at DESC LIMIT 1
        ) r
        ORDER BY r.provider, r.endpoint
        """,
        [p for p, _ in pairs],
        [e for _, e in pairs],
    )
    return [ReconciliationRun(**dict(r)) for r in rows]
