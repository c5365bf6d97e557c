"""The coexistence sweep (an arq cron job every ``coexist.sweep_interval_seconds``).

1. links from metadata (when a metadata key is configured): tagged target objects get their
   link before the rules look for orphans;
2. the coexistence facts, the four ``coexist_*`` rules, the alert lifecycle (new alerts go to
   the notification outbox, delivered by the main sweep);
3. every open coexistence alert whose rule no longer finds it is resolved at once (these rules
   describe a state that either holds or not, so there is no quiet period to wait for).
"""

from __future__ import annotations

import logging
from datetime import UTC, datetime
from typing import Any

import asyncpg
import msgspec
from arq.cron import CronJob, cron

from alerts import lifecycle, notify
from alerts.coexist.facts import gather_coexist
from alerts.coexist.rules import COEXIST_RULES
from alerts.model import Facts
from alerts.rules import evaluate
from ledgerhook.settings import Settings
from processors.coexist.metadata import link_from_metadata

__all__ = ["CoexistSweep", "coexist_cron_jobs", "coexist_sweep"]

log = logging.getLogger(__name__)


class CoexistSweep(msgspec.Struct, frozen=True, kw_only=True):
    linked: int
    findings: int
    opened: list[int]
    resolved: list[int]
    skipped_links: list[str] = []


async def coexist_sweep(
    pool: asyncpg.Pool, settings: Settings, now: datetime | None = None
) -> CoexistSweep:
    now = now or datetime.now(UTC)
    cfg = settings.coexist
    channels = notify.channels(settings)
    async with pool.acquire() as conn:
        linked, skipped = 0, []
        if cfg.customer_metadata_key or cfg.subscription_metadata_key:
            result = await link_from_metadata(conn, settings)
            linked, skipped = result.linked, result.skipped
        async with conn.transaction(isolation="repeatable_read"):
            facts = Facts(
                config=settings.alerts,
                coexist=await gather_coexist(conn, settings, int(now.timestamp())),
            )
        findings = evaluate(facts, now, only=COEXIST_RULES)
        fired = await lifecycle.apply_findings(conn, findings, now, channels)
        resolved = await lifecycle.auto_resolve(
            conn,
            rules=COEXIST_RULES,
            firing={(f.rule, f.subject) for f in findings},
            now=now,
            quiet_seconds=0,
            channels=channels,
        )
        await lifecycle.refresh_gauges(conn)
    return CoexistSweep(
        linked=linked,
        findings=len(findings),
        opened=[f.alert_id for f in fired if f.opened],
        resolved=resolved,
        skipped_links=skipped[:100],
    )


async def alerts_coexist(ctx: dict[str, Any]) -> None:
    report = await coexist_sweep(ctx["pool"], ctx["settings"])
    if report.linked or report.opened or report.resolved:
        log.info(
            "coexistence sweep",
            extra={
                "linked": report.linked,
                "opened": len(report.opened),
                "resolved": len(report.resolved),
            },
        )


def coexist_cron_jobs(settings: Settings) -> list[CronJob]:
    seconds = settings.coexist.sweep_interval_seconds
    if seconds <= 0:
        return []
    from alerts.sweep import _every

    return [
        cron(alerts_coexist, name="alerts_coexist", unique=True, timeout=900, **_every(seconds))
    ]
