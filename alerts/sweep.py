"""The scheduled sweeps (arq cron jobs) that gather facts, run the rules and keep alerts current.

- :func:`sweep` (every ``alerts.sweep_interval_seconds``): anomalies, silence, rejections,
  processing; then Chargebee fetch-back; then auto-resolve of alerts quiet for
  ``alerts.auto_resolve_after_seconds``; then the notification outbox. Each stage is isolated: a
  failing notifier or an unreachable Chargebee never stops the alerts themselves.
- :func:`integrity_check` (every ``alerts.integrity_interval_seconds``): verify the log, bodies
  included, from the last checkpoint this job had verified up to (so every leaf's body is checked
  at least once) to the end; the run is recorded in ``audit.verification_runs`` (what the
  ``ledgerhook_log_verification_ok`` gauge reports) and a failure raises the critical
  ``integrity`` alert at once. Integrity alerts never resolve themselves: a later run that passes
  may simply have started after the damage; on-call resolves them.
- the sweep also raises ``merge_delay`` (deliveries not integrated in time) and ``integrity``
  from a failed run recorded by anyone (``ledgerhook verify``, the checkpoint signer).
- :func:`periodic_reconcile` (every ``reconcile.interval_seconds`` over the last
  ``reconcile.window_seconds``), only for providers with API credentials (interval 0: only on
  demand, ``ledgerhook reconcile`` or ``POST /reconcile``). A provider API that
  fails is one error line per run and the ``reconciliation_failing`` alert (see
  :func:`alerts.reconcile.reconcile`), which the next successful run resolves.
- the drift sweep (:mod:`alerts.drift`, every ``drift.interval_seconds``; 0 turns it off), only
  for providers with API credentials.

``ctx`` holds ``settings`` and ``pool`` (put there by the worker's ``on_startup``).
"""

from __future__ import annotations

import logging
from datetime import UTC, datetime, timedelta
from typing import Any, cast

import asyncpg
import httpx
import msgspec
from arq.cron import CronJob, cron

from alerts import facts as facts_mod
from alerts import lifecycle, notify
from alerts.drift.jobs import drift_cron
from alerts.errors import ProviderApiError
from alerts.fetchback import run_fetch_back
from alerts.model import Facts, VerificationStatus
from alerts.reconcile import ReconcileSummary, configured_providers, reconcile
from alerts.rules import evaluate, integrity
from audit.checkpoints import load_signer, log_origin
from audit.verify import verify_tree
from ledgerhook.settings import Settings

__all__ = [
    "AUTO_RESOLVE_RULES",
    "SWEEP_RULES",
    "SweepReport",
    "cron_jobs",
    "integrity_check",
    "periodic_reconcile",
    "sweep",
]

log = logging.getLogger(__name__)

SWEEP_RULES = frozenset(
    {
        "out_of_order",
        "missing_predecessor",
        "silence",
        "rejections",
        "processing",
        "merge_delay",
        "integrity",
        "provider_api",
    }
)
# Rules fired by other jobs (reconciliation, fetch-back) also go quiet and resolve here.
# Never integrity: a damaged log does not heal, and a later partial check proves nothing of it.
AUTO_RESOLVE_RULES = (SWEEP_RULES - {"integrity"}) | {"missing_event", "fetch_back_mismatch"}


class SweepReport(msgspec.Struct, frozen=True, kw_only=True):
    findings: int
    opened: list[int]
    resolved: list[int]
    fetch_back_checked: int = 0
    fetch_back_mismatches: int = 0
    notified: int = 0
    notify_failed: int = 0


async def sweep(
    pool: asyncpg.Pool,
    settings: Settings,
    now: datetime | None = None,
    http: httpx.AsyncClient | None = None,
) -> SweepReport:
    now = now or datetime.now(UTC)
    cfg = settings.alerts
    channels = notify.channels(settings)
    async with pool.acquire() as conn, conn.transaction():
        facts = await facts_mod.gather(conn, settings, now)
        grace = timedelta(seconds=cfg.missing_predecessor_grace_seconds)
        # Anomalies are evaluated once: out-of-order at once, missing-predecessor after the grace.
        due = [
            a.id
            for a in facts.anomalies
            if a.kind == "out_of_order" or a.predecessor_arrived or now - a.created_at >= grace
        ]
        claimed = await facts_mod.mark_anomalies_seen(conn, due, now)
        facts = msgspec.structs.replace(
            facts, anomalies=tuple(a for a in facts.anomalies if a.id in claimed)
        )
        findings = evaluate(facts, now, only=SWEEP_RULES)
        fired = await lifecycle.apply_findings(conn, findings, now, channels)

    checked = mismatches = 0
    try:
        checked, mismatches = await run_fetch_back(pool, settings, now, http)
    except Exception:
        log.exception("chargebee fetch-back failed; retried next sweep")

    async with pool.acquire() as conn:
        resolved = await lifecycle.auto_resolve(
            conn,
            rules=AUTO_RESOLVE_RULES,
            firing={(f.rule, f.subject) for f in findings},
            now=now,
            quiet_seconds=cfg.auto_resolve_after_seconds,
            channels=channels,
        )
        await lifecycle.refresh_gauges(conn)

    delivered = failed = 0
    try:
        delivered, failed = await notify.deliver_due(pool, settings, now, http)
    except Exception:
        log.exception("notification delivery failed; retried next sweep")
    return SweepReport(
        findings=len(findings),
        opened=[f.alert_id for f in fired if f.opened],
        resolved=resolved,
        fetch_back_checked=checked,
        fetch_back_mismatches=mismatches,
        notified=delivered,
        notify_failed=failed,
    )


# The integrity job re-hashes every body integrated since its last run, in the worker that also
# applies deliveries: unpaced, the hourly run of a 10-minute soak (380 000 leaves) took the
# worker's CPU for about 40 s and applying fell 14 s behind. Paced to half the time, it takes
# twice as long and applying keeps its share.
INTEGRITY_DUTY = 0.5


async def integrity_check(
    pool: asyncpg.Pool, settings: Settings, now: datetime | None = None
) -> VerificationStatus:
    now = now or datetime.now(UTC)
    signer = load_signer(settings)
    async with pool.acquire() as conn:
        c = cast(asyncpg.Connection, conn)
        # From the last checkpoint within what this job verified last time (bodies and all).
        start = await c.fetchval(
            "SELECT c.id FROM audit.tree_checkpoints c WHERE c.origin = $1 AND c.tree_size <= "
            "coalesce((SELECT tree_size FROM audit.verification_runs "
            "          WHERE source = 'integrity' AND ok ORDER BY id DESC LIMIT 1), 0) "
            "ORDER BY c.tree_size DESC, c.id DESC LIMIT 1",
            log_origin(settings),
        )
        result = await verify_tree(
            c,
            verifiers=[signer.verifier],
            origin=log_origin(settings),
            from_checkpoint=start,
            legacy_key=None
            if settings.legacy_hmac_key is None
            else settings.legacy_hmac_key.reveal().encode(),
            record="integrity",
            duty=INTEGRITY_DUTY,
        )
        status = VerificationStatus(
            ok=result.ok,
            tree_size=result.tree_size,
            finished_at=datetime.now(UTC),
            source="integrity",
            first_bad=result.first_bad,
            reason=result.reason,
        )
        findings = integrity(Facts(config=settings.alerts, verification=status), now)
        await lifecycle.apply_findings(conn, findings, now, notify.channels(settings))
        await lifecycle.refresh_gauges(conn)
    if not result.ok:
        log.error("log verification failed: %s", result.describe())
    return status


async def periodic_reconcile(
    pool: asyncpg.Pool, settings: Settings, now: datetime | None = None
) -> list[ReconcileSummary]:
    out = []
    for provider in configured_providers(settings):
        try:
            out.append(
                await reconcile(
                    pool, settings, provider, settings.reconcile.window_seconds, now=now
                )
            )
        except ProviderApiError as exc:
            # Expected while credentials or the provider are wrong: one line, no traceback (the
            # reconciliation_failing alert and ledgerhook_reconciliation_failures_total have it).
            log.error(
                "periodic %s reconciliation failed: %s; retried in %ss",
                provider,
                exc,
                settings.reconcile.interval_seconds,
            )
        except Exception:
            log.exception("periodic %s reconciliation failed; retried next interval", provider)
    return out


async def alerts_sweep(ctx: dict[str, Any]) -> None:
    report = await sweep(ctx["pool"], ctx["settings"])
    # One line when the sweep changed something on-call sees; none for a quiet minute.
    if report.opened or report.resolved or report.notified or report.notify_failed:
        log.info(
            "alert sweep: %s opened, %s resolved, %s notifications sent, %s failed",
            len(report.opened),
            len(report.resolved),
            report.notified,
            report.notify_failed,
        )


async def alerts_integrity(ctx: dict[str, Any]) -> None:
    await integrity_check(ctx["pool"], ctx["settings"])


async def alerts_reconcile(ctx: dict[str, Any]) -> None:
    await periodic_reconcile(ctx["pool"], ctx["settings"])


def _every(seconds: int) -> dict[str, Any]:
    """arq cron fields for "every ``seconds``" (rounded to a divisor of the minute/hour/day)."""
    seconds = max(int(seconds), 1)
    if seconds < 60:
        return {"second": set(range(0, 60, seconds))}
    if seconds < 3600:
        return {"minute": set(range(0, 60, max(seconds // 60, 1))), "second": {0}}
    return {"hour": set(range(0, 24, max(seconds // 3600, 1))), "minute": {0}, "second": {0}}


def cron_jobs(settings: Settings) -> list[CronJob]:
    """The alerts package's cron jobs, added to the worker's ``cron_jobs``."""
    jobs = [
        cron(
            alerts_sweep,
            name="alerts_sweep",
            unique=True,
            timeout=300,
            **_every(settings.alerts.sweep_interval_seconds),
        ),
        cron(
            alerts_integrity,
            name="alerts_integrity",
            unique=True,
            timeout=3600,
            run_at_startup=True,
            **_every(settings.alerts.integrity_interval_seconds),
        ),
    ]
    from alerts.coexist.sweep import coexist_cron_jobs

    jobs += coexist_cron_jobs(settings)
    if configured_providers(settings) and settings.reconcile.interval_seconds > 0:
        jobs.append(
            cron(
                alerts_reconcile,
                name="alerts_reconcile",
                unique=True,
                timeout=1800,
                **_every(settings.reconcile.interval_seconds),
            )
        )
        if settings.drift.interval_seconds > 0:
            jobs.append(
                cron(
                    drift_cron,
                    name="alerts_drift",
                    unique=True,
                    # A run paces its calls over 0.9 of the interval, plus the provider's retries.
                    timeout=settings.drift.interval_seconds + 600,
                    **_every(settings.drift.interval_seconds),
                )
            )
    return jobs
