"""A whole Ledgerhook (API + worker) on a database of its own, and what to measure from its tables.

Lag is measured from database timestamps only: ``audit.deliveries.received_at`` (set by the API
when the request arrived) against ``processors.processed.processed_at`` (the worker's apply
transaction), both from this machine's clock.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

import asyncpg

from bench import common, servers


@dataclass
class Backlog:
    oldest_age_s: float
    unprocessed: int
    low_id: int


async def backlog(conn: asyncpg.Connection, low_id: int) -> Backlog:
    """Age of the oldest stored-but-unprocessed delivery, from ``low_id`` on (kept as a watermark)."""
    row = await conn.fetchrow(
        """
        SELECT min(d.id) AS low, count(*) AS n,
               coalesce(extract(epoch FROM clock_timestamp() - min(d.received_at)), 0)::float8 AS age
        FROM audit.deliveries d
        WHERE d.id >= $1
          AND NOT EXISTS (SELECT 1 FROM processors.processed p WHERE p.delivery_id = d.id)
        """,
        low_id,
    )
    assert row is not None
    if row["low"] is None:
        head = await conn.fetchval("SELECT coalesce(max(id), 0) FROM audit.deliveries")
        return Backlog(0.0, 0, int(head) + 1)
    return Backlog(float(row["age"]), int(row["n"]), int(row["low"]))


async def head_id(conn: asyncpg.Connection) -> int:
    return int(await conn.fetchval("SELECT coalesce(max(id), 0) FROM audit.deliveries"))


async def lags(conn: asyncpg.Connection, first: int, last: int) -> tuple[list[float], int]:
    """Receipt-to-applied seconds of deliveries ``first..last``, and how many are unprocessed."""
    rows = await conn.fetch(
        """
        SELECT extract(epoch FROM p.processed_at - d.received_at)::float8 AS lag
        FROM audit.deliveries d
        LEFT JOIN processors.processed p ON p.delivery_id = d.id
        WHERE d.id BETWEEN $1 AND $2
        """,
        first,
        last,
    )
    done = [float(r["lag"]) for r in rows if r["lag"] is not None]
    return done, len(rows) - len(done)


async def lag_by_minute(conn: asyncpg.Connection) -> list[dict[str, Any]]:
    """Per minute of receipt (from the first delivery): deliveries, applied, lag p50/p99/max (s)."""
    rows = await conn.fetch(
        """
        WITH l AS (
            SELECT d.received_at, extract(epoch FROM p.processed_at - d.received_at) AS lag
            FROM audit.deliveries d LEFT JOIN processors.processed p ON p.delivery_id = d.id
        )
        SELECT floor(extract(epoch FROM received_at - (SELECT min(received_at) FROM l)) / 60)::int
                   AS minute,
               count(*) AS deliveries, count(lag) AS applied,
               percentile_cont(0.5) WITHIN GROUP (ORDER BY lag) AS p50,
               percentile_cont(0.99) WITHIN GROUP (ORDER BY lag) AS p99,
               max(lag) AS max
        FROM l GROUP BY 1 ORDER BY 1
        """
    )
    return [
        {
            "minute": r["minute"],
            "deliveries": r["deliveries"],
            "applied": r["applied"],
            **{k: None if r[k] is None else round(float(r[k]), 3) for k in ("p50", "p99", "max")},
        }
        for r in rows
    ]


async def outcomes(conn: asyncpg.Connection) -> dict[str, int]:
    rows = await conn.fetch("SELECT outcome, count(*) AS n FROM processors.processed GROUP BY 1")
    return {r["outcome"]: int(r["n"]) for r in rows}


async def table_counts(conn: asyncpg.Connection) -> dict[str, int]:
    out = {}
    for table in (
        "customers",
        "subscriptions",
        "subscription_changes",
        "invoices",
        "payments",
        "refunds",
        "credit_notes",
        "anomalies",
    ):
        try:
            out[table] = int(await conn.fetchval(f"SELECT count(*) FROM processors.{table}"))
        except asyncpg.UndefinedTableError:
            continue
    return out


class Stack:
    """``ledgerhook serve`` and ``worker`` processes on ``url``; stop() stops both."""

    def __init__(
        self, url: str, wd: Path, queue: str, *, api_workers: int = 1, worker_processes: int = 1
    ) -> None:
        self.env = common.server_env(url, wd, queue)
        self.port = common.free_port()
        self.base = f"http://127.0.0.1:{self.port}"
        self.api = servers.serve(self.port, api_workers, self.env, wd)
        self.workers: list[common.Process] = []
        self._wd = wd
        self._n = worker_processes

    def start_workers(self) -> None:
        for i in range(self._n):
            self.workers.append(servers.worker(self.env, self._wd, name=f"worker{i}"))

    def wait(self) -> None:
        self.api.wait_http(f"{self.base}/health/live")

    def rss(self) -> dict[str, int]:
        out = {"api": common.rss_kib(self.api.pid)}
        for w in self.workers:
            out[w.name] = common.rss_kib(w.pid)
        return out

    def check_alive(self) -> None:
        for p in (self.api, *self.workers):
            if not p.alive():
                raise RuntimeError(f"{p.name} exited ({p.proc.returncode}):\n{p.tail()}")

    def stop(self) -> dict[str, Any]:
        codes: dict[str, Any] = {}
        for p in (*self.workers, self.api):
            codes[p.name] = p.stop()
        return codes
