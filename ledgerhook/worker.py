"""The worker process, composed from Settings: the sequencer, scheduled checkpoints, the arq worker.

:func:`run_worker` is what ``ledgerhook worker`` (and ``ledgerhook run``) runs: a sequencer
candidate (leader or standby, :mod:`audit.sequencer`) that integrates committed deliveries and
wakes the workers, scheduled checkpoints while it leads, and the supervised arq worker. The
sequencer lives beside arq, not inside it: it must keep integrating while Redis is away (arq's
worker is rebuilt then), since the log's order does not depend on Redis.

``worker_settings(settings)`` is the keyword set for ``arq.worker.Worker``; ``create_worker``
builds one (``ledgerhook worker`` runs it; tests run it with ``burst=True``). Long-lived
resources (the PostgreSQL pool) are opened in ``on_startup`` and closed in ``on_shutdown``; arq
puts its Redis pool in ``ctx["redis"]``. Jobs are serialised with msgpack (:mod:`ledgerhook.jobs`).

Other packages add their periodic work with one line in :func:`cron_jobs`.
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import logging
import signal
import time
from typing import Any

import asyncpg
import redis.exceptions
from arq.connections import RedisSettings
from arq.cron import CronJob, cron
from arq.worker import Function, Worker, func

from alerts.drift.jobs import drift_job
from alerts.sweep import cron_jobs as alerts_cron_jobs
from audit.checkpoints import load_signer, run_checkpoints
from audit.sequencer import Sequencer
from ledgerhook.db import create_pool
from ledgerhook.gc_tuning import freeze_startup_objects
from ledgerhook.jobs import CHECK_DRIFT, PROCESS_DELIVERY, SYNC_OBJECTS, deserialize, serialize
from ledgerhook.logs import quiet_cron_jobs
from ledgerhook.settings import Settings
from ledgerhook.wakeup import Waker, arq_redis
from processors.sync.jobs import sync_job
from processors.worker import (
    analyze_stale,
    batcher,
    ensure_partitions,
    process_delivery_job,
    sweep,
    warn_if_autovacuum_off,
)

__all__ = [
    "create_worker",
    "cron_jobs",
    "every",
    "functions",
    "run_sequencer",
    "run_supervised",
    "run_worker",
    "worker_settings",
]

log = logging.getLogger(__name__)


def every(seconds: int) -> dict[str, Any]:
    """cron() keywords for "every ``seconds``" (aligned to the minute/hour)."""
    if seconds < 60:
        return {"second": set(range(0, 60, max(seconds, 1)))}
    return {"minute": set(range(0, 60, max(seconds // 60, 1))), "second": 0}


def cron_jobs(settings: Settings) -> list[CronJob]:
    p = settings.processors
    jobs = [
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
    if p.analyze_interval_seconds > 0:
        jobs.append(
            cron(
                analyze_stale,
                name="processors.analyze",
                timeout=600,
                run_at_startup=True,
                **every(p.analyze_interval_seconds),
            )
        )
    return jobs


def _own_names(crons: list[CronJob], queue_name: str) -> list[CronJob]:
    """Prefix cron names with the queue: arq names a unique cron's job ``{name}:{time}``, without
    the queue, so two installations (or test runs) sharing one Redis would otherwise take each
    other's run for their own and skip it."""
    return [dataclasses.replace(c, name=f"{queue_name}:{c.name}") for c in crons]


def functions(settings: Settings) -> list[Function]:
    """The worker's job functions: deliveries, and the runs an admin starts by API."""
    # max_tries=1: a run whose worker died is started again by hand, and resumes.
    runs = settings.sync.job_timeout_seconds
    return [
        func(process_delivery_job, name=PROCESS_DELIVERY),
        func(sync_job, name=SYNC_OBJECTS, timeout=runs, max_tries=1),
        func(drift_job, name=CHECK_DRIFT, timeout=runs, max_tries=1),
    ]


def worker_settings(settings: Settings) -> dict[str, Any]:
    p = settings.processors
    crons = _own_names(cron_jobs(settings), p.queue_name)
    fns = functions(settings)
    # How long arq keeps a started job marked in progress (see processors.worker.rescue_stalled):
    # arq takes the longest timeout of any function or cron job.
    in_progress_timeout_s = (
        max(
            [
                p.job_timeout_seconds,
                *(c.timeout_s or 0 for c in crons),
                *(f.timeout_s or 0 for f in fns),
            ]
        )
        + 10
    )

    async def on_startup(ctx: dict[str, Any]) -> None:
        ctx["settings"] = settings
        ctx["in_progress_timeout_s"] = in_progress_timeout_s
        ctx["pool"] = await create_pool(settings)
        async with ctx["pool"].acquire() as conn:
            await warn_if_autovacuum_off(conn)
        # arq hands each job a shallow copy of ctx: the batcher must exist before the first job,
        # or every job would make its own (and batches would not be shared).
        batcher(ctx)
        freeze_startup_objects()

    async def on_shutdown(ctx: dict[str, Any]) -> None:
        batcher = ctx.pop("batcher", None)
        if batcher is not None:
            await batcher.close()
        pool = ctx.pop("pool", None)
        if pool is not None:
            await pool.close()

    return {
        "functions": fns,
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
        # Jobs are mostly wake-ups: the batcher drains pending deliveries from PostgreSQL and
        # removes their jobs (processors.batcher). arq starts each job it reads with four Redis
        # round trips one after the other, so reading few per poll keeps it off the hot path.
        "queue_read_limit": p.queue_read_limit,
        # Results are not needed (the outcome is in PostgreSQL), and a kept result would make
        # the sweeper's re-enqueue under the same job id a no-op for an hour.
        "keep_result": 0,
    }


def create_worker(settings: Settings, **overrides: Any) -> Worker:
    kwargs = {**worker_settings(settings), **overrides}
    # An idle worker is quiet: arq's start/finish lines of cron jobs are debug (ledgerhook.logs).
    quiet_cron_jobs(frozenset(c.name for c in kwargs["cron_jobs"]))
    return Worker(**kwargs)


# Outages of Redis or PostgreSQL: the worker is rebuilt after a pause instead of exiting.
# Any Redis error, not only ConnectionError: a Redis stopped while arq enqueues a cron job
# surfaces as WatchError ("A ConnectionError occurred on while watching"), one restarting as
# BusyLoadingError; the fault suite saw a worker exit on the first.
RECOVERABLE: tuple[type[BaseException], ...] = (
    redis.exceptions.RedisError,
    asyncpg.PostgresError,
    asyncpg.InterfaceError,
    OSError,
    TimeoutError,
)


async def _close(worker: Worker) -> None:
    try:
        await worker.close()
    except Exception:  # Redis still down: at least release PostgreSQL
        if worker.on_shutdown is not None:
            with contextlib.suppress(Exception):
                await worker.on_shutdown(worker.ctx)


async def run_supervised(settings: Settings, *, burst: bool = False) -> int:
    """Run the worker until SIGTERM/SIGINT (or an empty queue with ``burst``).

    arq's main loop exits when Redis goes away; a worker process that dies with every Redis
    restart would need an outside supervisor to keep applying deliveries. Here the worker is
    rebuilt with backoff (1 s doubling to 30 s) until Redis and PostgreSQL are back. Nothing is
    lost meanwhile: deliveries wait in PostgreSQL and the sweeper re-enqueues them.
    """
    delay = 1.0
    while True:
        worker = create_worker(settings, burst=burst)
        started = time.monotonic()
        try:
            await worker.async_run()
            return 0
        except asyncio.CancelledError:  # a signal: arq cancelled its main task
            return 0
        except RECOVERABLE as exc:
            log.warning(
                "worker lost Redis or PostgreSQL; restarting",
                extra={"error": type(exc).__name__, "retry_in": delay},
            )
        finally:
            await _close(worker)
        if time.monotonic() - started > 60:
            delay = 1.0
        await asyncio.sleep(delay)
        delay = min(delay * 2, 30.0)


@contextlib.asynccontextmanager
async def sequencing(settings: Settings) -> Any:
    """A sequencer candidate and its scheduled checkpoints, for as long as the block runs."""
    signer = load_signer(settings)  # a missing production key stops start-up here
    redis = arq_redis(settings, timeout=settings.redis_timeout_seconds)
    waker = Waker(settings, redis)
    sequencer = Sequencer(settings, on_integrated=waker.wake)
    stop = asyncio.Event()
    tasks = [
        asyncio.create_task(sequencer.run(), name="sequencer"),
        asyncio.create_task(
            run_checkpoints(settings, signer, lambda: sequencer.leading, stop), name="checkpoints"
        ),
    ]
    try:
        yield sequencer
    finally:
        sequencer.stop()
        stop.set()
        await asyncio.wait(tasks, timeout=15)
        for task in tasks:
            task.cancel()
        await waker.drain(settings.redis_timeout_seconds + 0.5)
        with contextlib.suppress(Exception):
            await redis.aclose(close_connection_pool=True)


async def run_worker(settings: Settings, *, burst: bool = False) -> int:
    """``ledgerhook worker``: sequencer candidate + checkpoints + supervised arq worker.

    ``burst`` (tests, one-off drains) runs the arq worker alone: it exits when the queue is
    empty, and integration is the job of a long-running worker or ``ledgerhook sequencer``.
    """
    if burst:
        return await run_supervised(settings, burst=True)
    async with sequencing(settings):
        return await run_supervised(settings)


async def run_sequencer(settings: Settings) -> int:
    """``ledgerhook sequencer``: a sequencer candidate alone, until SIGTERM/SIGINT."""
    loop = asyncio.get_running_loop()
    done = asyncio.Event()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, done.set)
    async with sequencing(settings):
        await done.wait()
    return 0
