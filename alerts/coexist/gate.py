"""The post-migration check of a cohort (``ledgerhook migration verify``): may it roll out?

It passes when, as of now: every linked pair is matched or explained; subscriptions and
priced MRR per currency are equal on both sides; and no coexistence alert about the cohort is
open (after a fresh coexistence sweep, so the alerts are current). The verification run is
recorded like any other.
"""

from __future__ import annotations

from collections.abc import Callable
from datetime import UTC, datetime

import asyncpg
import msgspec

from alerts.coexist.rules import COEXIST_RULES
from alerts.coexist.sweep import coexist_sweep
from ledgerhook.settings import Settings
from processors.coexist.report import totals_problems
from processors.coexist.verify import RunReport, run_verification, tolerances_of

__all__ = ["GateResult", "gate"]


class OpenAlert(msgspec.Struct, frozen=True, kw_only=True):
    id: int
    rule: str
    severity: str
    summary: str


class GateResult(msgspec.Struct, frozen=True, kw_only=True):
    cohort: str
    ok: bool
    problems: list[str]
    report: RunReport
    open_alerts: list[OpenAlert]


async def gate(
    pool: asyncpg.Pool,
    settings: Settings,
    cohort: str,
    *,
    actor: str,
    now: datetime | None = None,
    progress: Callable[[int], None] | None = None,
) -> GateResult:
    now = now or datetime.now(UTC)
    await coexist_sweep(pool, settings, now)
    async with pool.acquire() as conn:
        report = await run_verification(
            conn,
            cohort,
            now=int(now.timestamp()),
            actor=actor,
            tolerances=tolerances_of(settings),
            page_size=settings.coexist.page_size,
            progress=progress,
        )
        rows = await conn.fetch(
            "SELECT id, rule, severity, summary FROM alerts.alerts "
            "WHERE status <> 'resolved' AND rule = ANY($1::text[]) AND evidence->>'cohort' = $2 "
            "ORDER BY id",
            sorted(COEXIST_RULES),
            cohort,
        )
    alerts = [OpenAlert(**dict(r)) for r in rows]
    problems = []
    if report.summary.mismatched:
        problems.append(f"{report.summary.mismatched} linked pair(s) mismatched")
    problems += totals_problems(report.summary)
    problems += [f"open alert {a.id} ({a.rule}, {a.severity}): {a.summary}" for a in alerts]
    return GateResult(
        cohort=cohort, ok=not problems, problems=problems, report=report, open_alerts=alerts
    )
