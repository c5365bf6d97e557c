"""The worker's sync job (``POST /sync`` enqueues it): :func:`~processors.sync.run_sync`.

Never raises into arq: a failed or refused run is logged with its reason and its cursor stays
in PostgreSQL for the next run; the outcome is in ``processors.sync_cursors`` (``GET /sync``).
"""

from __future__ import annotations

import logging
from typing import Any

from processors.errors import SyncBusy, SyncError
from processors.sync.runner import run_sync

__all__ = ["sync_job"]

log = logging.getLogger(__name__)


async def sync_job(
    ctx: dict[str, Any],
    *,
    provider: str,
    endpoint: str | None = None,
    types: list[str] | None = None,
    since: int | None = None,
    restart: bool = False,
) -> str:
    try:
        summary = await run_sync(
            ctx["pool"],
            ctx["settings"],
            provider,
            endpoint=endpoint,
            types=types,
            since=since,
            restart=restart,
        )
    except SyncBusy as exc:
        log.warning("sync not started: %s", exc)
        return "busy"
    except SyncError as exc:
        log.error("sync not started: %s", exc)
        return "refused"
    except Exception:
        log.exception("sync job failed; its cursor is kept, start it again to resume")
        return "failed"
    log.info(
        "sync finished",
        extra={
            "provider": provider,
            "endpoint": summary.endpoint,
            "lists": {s.object_type: s.status for s in summary.lists},
            "listed": sum(s.listed for s in summary.lists),
            "stored": sum(s.stored for s in summary.lists),
        },
    )
    return "done" if summary.ok else "failed"
