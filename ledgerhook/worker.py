"""The arq worker, composed from Settings: job functions, cron jobs, resources in ``ctx``.

``worker_settings(settings)`` is the keyword set for ``arq.worker.Worker``; ``create_worker``
builds one (``ledgerhook worker`` runs it; tests run it with ``burst=True``). Long-lived
resources (the PostgreSQL pool) are opened in ``on_startup`` and closed in ``on_shutdown``; arq
puts its Redis pool in ``ctx["redis"]``. Jobs are serialised with msgpack (:mod:`ledgerhook.jobs`).

Other packages add their periodic work with one line in :func:`cron_jobs`.
"""

from __future__ import annotations

from typing import Any

from arq.connections import RedisSettings
from arq.cron import CronJob, cron
from arq.worker import Worker, func

from alerts.sweep import cron_jobs as alerts_cron_jobs
from ledgerhook.db import create_pool
from ledgerhook.jobs import PROCESS_DELIVERY, deserialize, serialize
from ledgerhook.settings import Settings
from processors.worker import ensure_partitions, process_delivery_job, sweep

__all__ = ["create_worker", "cron_jobs", "every", "worker_settings"]


def every(seconds: int) -> dict[str, Any]:
    """cron() keywords for "every ``seconds``" (aligned to the minute/hour)."""
    if seconds < 60:
        return {"second": set(range(0, 60, max(seconds, 1)))}
    return {"minute": set(range(0, 60, max(seconds // 60, 1))), "second": 0}


def cron_jobs(settings: Settings) -> list[CronJob]:
    p = settings.processors
    return [
        cron(
            sweep, name="processors.sweep", run_at_startup=True, **every(p.sweep_interval_seconds)
        ),
        cron(
            ensure_partitions,
            name="audit.ensure_partitions",
            hour=3,
            minute=17,
            second=0,
            run_at_startup=True,
        ),
        *alerts_cron_jobs(settings),
    ]


def worker_settings(settings: Settings) -> dict[str, Any]:
    p = settings.processors
    crons = cron_jobs(settings)
    # How long arq keeps a started job marked in progress (see processors.worker.rescue_stalled).
    in_progress_timeout_s = max([p.job_timeout_seconds, *(c.timeout_s or 0 for c in crons)]) + 10

    async def on_startup(ctx: dict[str, Any]) -> None:
        ctx["settings"] = settings
        ctx["in_progress_timeout_s"] = in_progress_timeout_s
        ctx["pool"] = await create_pool(settings)

    async def on_shutdown(ctx: dict[str, Any]) -> None:
        pool = ctx.pop("pool", None)
        if pool is not None:
            await pool.close()

    return {
        "functions": [func(process_delivery_job, name=PROCESS_DELIVERY)],
        "cron_jobs": crons,
        "on_startup": on_startup,
        "on_shutdown": on_shutdown,
        "redis_settings": RedisSettings.from_dsn(settings.redis_url.reveal()),
        "queue_name": p.queue_name,
        "job_serializer": serialize,
        "job_deserializer": deserialize,
        "job_timeout": p.job_timeout_seconds,
        "max_tries": p.max_tries,
        "max_jobs": p.max_jobs,
        "poll_delay": p.poll_delay_seconds,
        # Results are not needed (the outcome is in PostgreSQL), and a kept result would make
        # the sweeper's re-enqueue under the same job id a no-op for an hour.
        "keep_result": 0,
    }


def create_worker(settings: Settings, **overrides: Any) -> Worker:
    return Worker(**{**worker_settings(settings), **overrides})
