"""Health at a glance: ingest rate, backlog, apply lag, last checkpoint, last reconciliation.

Every figure comes from a query that costs index probes, not scans, whatever the log's size:
arrivals per minute from id ranges at minute boundaries (:func:`audit.stats.arrivals_per_minute`),
apply lag sampled once per minute (:func:`processors.queries.apply_lag_per_minute`), the backlog
from the log's unsettled tail (:func:`processors.queries.pending`), the newest checkpoint and
reconciliation runs by their indexes. The charts are SVG drawn on the server
(:mod:`ledgerhook.console.charts`); the page refreshes its panel every 30 s with htmx when
scripts run, and is complete without them.
"""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

import asyncpg
from litestar import Request, get
from litestar.di import NamedDependency
from litestar.response import Template

from alerts.repository import open_counts
from audit.reconciliations import latest_runs
from audit.stats import arrivals_per_minute
from ledgerhook.console import seams
from ledgerhook.console.charts import sparkline
from ledgerhook.console.render import page
from ledgerhook.settings import Settings
from processors.queries import apply_lag_per_minute, pending

__all__ = ["handlers"]

MINUTES = 60


@get("/health", name="console_health")
async def health(
    request: Request[Any, Any, Any],
    settings: NamedDependency[Settings],
    pool: NamedDependency[asyncpg.Pool],
) -> Template:
    now = datetime.now(UTC)
    endpoints = {(e.provider, e.name) for e in settings.all_endpoints()}
    endpoints |= {("stripe", "default"), ("chargebee", "default")}
    async with pool.acquire() as conn:
        arrivals = await arrivals_per_minute(conn, now, MINUTES)
        lag = await apply_lag_per_minute(conn, now, MINUTES)
        backlog = await pending(conn)
        checkpoint = await seams.last_checkpoint(conn)
        tree = await seams.tree_status(conn)
        runs = await latest_runs(conn, endpoints)
        open_alerts = await open_counts(conn)
    oldest = backlog.oldest_received_at
    return page(
        request,
        "health.html",
        title="Health",
        nav="health",
        now=now,
        minutes=MINUTES,
        arrivals=arrivals,
        arrivals_chart=sparkline([float(n) for n in arrivals]),
        last_minute=arrivals[-1] if arrivals else 0,
        hour_total=sum(arrivals),
        lag_chart=sparkline(lag),
        lag_now=(now - oldest).total_seconds() if oldest else 0.0,
        backlog=backlog,
        checkpoint=checkpoint,
        tree=tree,
        runs=runs,
        open_total=sum(n for (status, _), n in open_alerts.items() if status == "open"),
        alert_counts=sorted((status, sev, n) for (status, sev), n in open_alerts.items()),
    )


handlers = [health]
