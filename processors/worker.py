"""arq job functions: process a delivery, sweep for lost ones, keep audit partitions ahead.

Jobs take a delivery id (never a payload) and get their pool and settings from ``ctx``
(:mod:`ledgerhook.worker` opens them on start-up). arq may run a job twice (a worker killed
mid-job, a retry): harmless, because :func:`processors.service.process_delivery` is idempotent.
Transient failures (connection lost, lock timeout, deadlock, serialisation failure) raise
``arq.Retry`` with exponential backoff; everything they did was rolled back.
"""

from __future__ import annotations

import logging
from typing import Any

import asyncpg
from arq import Retry
from arq.connections import ArqRedis

from ledgerhook import metrics
from ledgerhook.jobs import PROCESS_DELIVERY, job_id
from ledgerhook.logs import bind
from ledgerhook.settings import Settings
from processors.errors import DeliveryNotFound
from processors.service import process_delivery
from processors.sweeper import SweepResult, scan

__all__ = ["TRANSIENT", "enqueue", "ensure_partitions", "process_delivery_job", "sweep"]

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


def backoff(job_try: int) -> int:
    """Seconds before retry ``job_try`` + 1: 2, 4, 8, ... capped at a minute."""
    return int(min(2 ** max(job_try, 1), 60))


async def process_delivery_job(ctx: dict[str, Any], delivery_id: int) -> str:
    pool: asyncpg.Pool = ctx["pool"]
    job_try: int = ctx.get("job_try", 1)
    with bind(delivery_id=delivery_id, job_try=job_try):
        try:
            async with pool.acquire() as conn:
                return await process_delivery(conn, delivery_id)
        except DeliveryNotFound:
            log.error("job names a delivery that is not in the audit log")
            return "not_found"
        except TRANSIENT as exc:
            defer = backoff(job_try)
            log.warning(
                "transient failure, retrying", extra={"error": type(exc).__name__, "defer": defer}
            )
            raise Retry(defer=defer) from exc


async def enqueue(redis: ArqRedis, settings: Settings, delivery_ids: list[int]) -> int:
    """Enqueue deliveries under their job ids; an id already queued is skipped by arq."""
    n = 0
    for delivery_id in delivery_ids:
        job = await redis.enqueue_job(
            PROCESS_DELIVERY,
            delivery_id,
            _job_id=job_id(settings, delivery_id),
            _queue_name=settings.processors.queue_name,
        )
        n += job is not None
    return n


async def run_sweep(pool: asyncpg.Pool, redis: ArqRedis, settings: Settings) -> SweepResult:
    async with pool.acquire() as conn:
        result = await scan(
            conn,
            older_than_seconds=settings.processors.sweep_after_seconds,
            limit=settings.processors.sweep_batch,
        )
    if result.due:
        queued = await enqueue(redis, settings, result.due)
        log.info("sweeper re-enqueued deliveries", extra={"due": len(result.due), "queued": queued})
    metrics.queue_depth.set(result.backlog)
    metrics.oldest_unprocessed_seconds.set(result.oldest_age_seconds)
    metrics.dead_letters.set(result.dead_letters)
    return result


async def sweep(ctx: dict[str, Any]) -> int:
    result = await run_sweep(ctx["pool"], ctx["redis"], ctx["settings"])
    return len(result.due)


async def ensure_partitions(ctx: dict[str, Any]) -> int:
    pool: asyncpg.Pool = ctx["pool"]
    async with pool.acquire() as conn:
        created: int = await conn.fetchval("SELECT audit.ensure_partitions(3)")
    return created
