"""The worker's drift jobs: the periodic sweep (cron) and on-demand checks (``POST /drift``).

Neither raises into arq: failures are logged, counted (``provider_api``) and retried next time.
"""

from __future__ import annotations

import logging
from typing import Any

from alerts.drift.check import drift_sweep, run_drift
from alerts.reconcile import configured_providers
from processors.errors import SyncError

__all__ = ["drift_cron", "drift_job"]

log = logging.getLogger(__name__)


async def drift_cron(ctx: dict[str, Any]) -> int:
    reports = await drift_sweep(ctx["pool"], ctx["settings"], configured_providers(ctx["settings"]))
    return sum(r.checked for r in reports)


async def drift_job(
    ctx: dict[str, Any],
    *,
    provider: str,
    endpoint: str | None = None,
    object_type: str | None = None,
    object_id: str | None = None,
    repair: bool = False,
) -> str:
    try:
        report = await run_drift(
            ctx["pool"],
            ctx["settings"],
            provider,
            endpoint=endpoint,
            object_type=object_type,  # type: ignore[arg-type]  # checked by the route
            object_id=object_id,
            repair=repair,
        )
    except SyncError as exc:
        log.error("drift check not started: %s", exc)
        return "refused"
    except Exception:
        log.exception("drift check failed")
        return "failed"
    log.info(
        "drift check finished",
        extra={
            "provider": provider,
            "checked": report.checked,
            "drifted": report.drifted,
            "repaired": report.repaired,
            "error": report.error,
        },
    )
    return "failed" if report.error else "done"
