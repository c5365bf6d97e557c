"""arq job functions: process a delivery, sweep for lost ones, keep audit partitions ahead,
keep planner statistics current.

Jobs take a delivery id (never a payload) and get their pool and settings from ``ctx``
(:mod:`ledgerhook.worker` opens them on start-up). arq may run a job twice (a worker killed
mid-job, a retry): harmless, because :func:`processors.service.process_delivery` is idempotent.
Transient failures (connection lost, lock timeout, deadlock, serialisation failure) raise
``arq.Retry`` with exponential backoff; everything they did was rolled back.
"""

from __future__ import annotations

import logging
import time
from typing import Any

import asyncpg
from arq import Retry
from arq.connections import ArqRedis
from arq.constants import in_progress_key_prefix

from audit.dbtypes import Conn
from ledgerhook import metrics
from ledgerhook.jobs import PROCESS_DELIVERY, job_id
from ledgerhook.logs import bind
from ledgerhook.settings import Settings
from processors import repository
from processors.batcher import Batcher
from processors.errors import DeliveryNotFound
from processors.sweeper import SweepResult, scan

__all__ = [
    "TRANSIENT",
    "analyze_stale",
    "batcher",
    "enqueue",
    "ensure_partitions",
    "process_delivery_job",
    "rescue_stalled",
    "run_sweep",
    "sweep",
    "warn_if_autovacuum_off",
]

log = logging.getLogger(__name__)

TRANSIENT: tuple[type[BaseException], ...] = (
    asyncpg.PostgresConnectionError,
    asyncpg.InterfaceError,
    asyncpg.DeadlockDetectedError,
    asyncpg.SerializationError,
    asyncpg.LockNotAvailableError,
    asyncpg.QueryCanceledError,
    asyncpg.UniqueViolationError,
    asyncpg.TooManyConnectionsError,
    asyncpg.CannotConnectNowError,
    ConnectionError,
    TimeoutError,
    OSError,
)


def batcher(ctx: dict[str, Any]) -> Batcher:
    """The process's :class:`Batcher`, kept in ``ctx``.

    The worker makes it in ``on_startup``: arq gives every job a *copy* of its ctx, so one made
    in a job would be that job's alone. Made on first use when called without one (tests).
    """
    b: Batcher | None = ctx.get("batcher")
    if b is None:
        settings: Settings | None = ctx.get("settings")
        p = settings.processors if settings is not None else None
        redis: ArqRedis | None = ctx.get("redis")
        b = ctx["batcher"] = Batcher(
            ctx["pool"],
            max_batch=p.batch_size if p is not None else 100,
            concurrency=p.batch_concurrency if p is not None else 2,
            drain=(redis, settings) if redis is not None and settings is not None else None,
        )
    return b


def backoff(job_try: int) -> int:
    """Seconds before retry ``job_try`` + 1: 2, 4, 8, ... capped at a minute."""
    return int(min(2 ** max(job_try, 1), 60))


async def process_delivery_job(ctx: dict[str, Any], delivery_id: int) -> str:
    job_try: int = ctx.get("job_try", 1)
    with bind(delivery_id=delivery_id, job_try=job_try):
        try:
            return await batcher(ctx).process(delivery_id)
        except DeliveryNotFound:
            log.error("job names a delivery that is not in the audit log")
            return "not_found"
        except TRANSIENT as exc:
            defer = backoff(job_try)
            log.warning(
                "transient failure, retrying", extra={"error": type(exc).__name__, "defer": defer}
            )
            raise Retry(defer=defer) from exc


async def enqueue(redis: ArqRedis, settings: Settings, delivery_ids: list[int]) -> list[int]:
    """Enqueue deliveries under their job ids; returns the ids whose job already existed."""
    existing = []
    for delivery_id in delivery_ids:
        job = await redis.enqueue_job(
            PROCESS_DELIVERY,
            delivery_id,
            _job_id=job_id(settings, delivery_id),
            _queue_name=settings.processors.queue_name,
        )
        if job is None:
            existing.append(delivery_id)
    return existing


async def rescue_stalled(
    redis: ArqRedis, settings: Settings, delivery_ids: list[int], in_progress_timeout_s: float
) -> int:
    """Free jobs a killed worker left marked in progress; returns how many were freed.

    arq marks a started job with an in-progress key that lives for the *longest* timeout of any
    function or cron job on the worker (an hour when a cron job allows an hour), and keeps the
    job in the queue; a worker killed mid-job therefore blocks that delivery for that long, and
    re-enqueuing under the same job id is a no-op. A delivery job cannot legitimately run longer
    than ``job_timeout_seconds`` (arq cancels it), so a marker older than that (plus a margin)
    belongs to a dead worker: deleting it lets the queued job run again. If it somehow were
    still running, PostgreSQL still makes the second run a no-op.
    """
    limit = settings.processors.job_timeout_seconds + 10
    freed = 0
    for delivery_id in delivery_ids:
        key = in_progress_key_prefix + job_id(settings, delivery_id)
        pttl: int = await redis.pttl(key)
        if pttl < 0:
            continue
        if in_progress_timeout_s - pttl / 1000 > limit:
            freed += await redis.delete(key)
    return freed


async def run_sweep(
    pool: asyncpg.Pool,
    redis: ArqRedis,
    settings: Settings,
    *,
    in_progress_timeout_s: float | None = None,
) -> SweepResult:
    async with pool.acquire() as conn:
        result = await scan(
            conn,
            older_than_seconds=settings.processors.sweep_after_seconds,
            limit=settings.processors.sweep_batch,
        )
    if result.due:
        existing = await enqueue(redis, settings, result.due)
        freed = 0
        if existing and in_progress_timeout_s is not None:
            freed = await rescue_stalled(redis, settings, existing, in_progress_timeout_s)
        log.info(
            "sweeper re-enqueued deliveries",
            extra={
                "due": len(result.due),
                "queued": len(result.due) - len(existing),
                "freed": freed,
            },
        )
    metrics.queue_depth.set(result.backlog)
    metrics.oldest_unprocessed_seconds.set(result.oldest_age_seconds)
    metrics.dead_letters.set(result.dead_letters)
    return result


async def sweep(ctx: dict[str, Any]) -> int:
    result = await run_sweep(
        ctx["pool"],
        ctx["redis"],
        ctx["settings"],
        in_progress_timeout_s=ctx.get("in_progress_timeout_s"),
    )
    return len(result.due)


async def ensure_partitions(ctx: dict[str, Any]) -> int:
    pool: asyncpg.Pool = ctx["pool"]
    async with pool.acquire() as conn:
        created: int = await conn.fetchval("SELECT audit.ensure_partitions(3)")
    if created:
        log.info("created monthly partitions ahead", extra={"created": created})
    return created


async def analyze_stale(ctx: dict[str, Any]) -> list[str]:
    """ANALYZE Ledgerhook's tables whose statistics are stale; returns the tables analyzed.

    Without it, on a server with autovacuum off, the cached plans of the worker's statements stay
    those chosen for near-empty tables and applying slows down as the log grows.
    """
    pool: asyncpg.Pool = ctx["pool"]
    started = time.monotonic()
    async with pool.acquire() as conn:
        tables = await repository.analyze_stale(conn)
    if tables:
        log.info(
            "analyzed tables with stale statistics",
            extra={"tables": tables, "seconds": round(time.monotonic() - started, 3)},
        )
    return tables


async def warn_if_autovacuum_off(conn: Conn) -> bool:
    """Log a warning when the server's autovacuum is off; True if it is."""
    if await conn.fetchval("SELECT current_setting('autovacuum')::boolean"):
        return False
    log.warning(
        "autovacuum is off on this PostgreSQL server: the worker keeps planner statistics "
        "current itself (processors.analyze_interval_seconds), but nothing vacuums the state "
        "tables; turn autovacuum on"
    )
    return True
