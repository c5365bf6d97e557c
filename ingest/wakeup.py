"""Waking the workers after commit: one arq job per committed delivery, best effort.

Redis is a wake-up, not a store: the delivery is already committed when this runs, so a failure
here loses nothing (the processors' sweeper finds committed deliveries that were never processed).
Each batch is enqueued by a background task, so no response waits for Redis; the task gives up
after ``enqueue_timeout_seconds`` and counts what it could not send in
``ledgerhook_enqueue_failures_total``. The Redis client connects lazily: ingest starts and accepts
deliveries with Redis down.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Sequence

from arq.connections import ArqRedis
from redis.asyncio import ConnectionPool

from audit.chain import Appended
from ledgerhook import metrics
from ledgerhook.jobs import PROCESS_DELIVERY, deserialize, job_id, serialize
from ledgerhook.settings import Settings

__all__ = ["Waker", "arq_redis"]

log = logging.getLogger(__name__)


def arq_redis(settings: Settings, *, timeout: float) -> ArqRedis:
    """An arq client with the shared msgpack serializer and bounded socket waits; lazy connect."""
    pool = ConnectionPool.from_url(
        settings.redis_url.reveal(),
        socket_connect_timeout=timeout,
        socket_timeout=timeout,
        max_connections=64,
    )
    return ArqRedis(
        pool,
        job_serializer=serialize,
        job_deserializer=deserialize,
        default_queue_name=settings.processors.queue_name,
    )


class Waker:
    def __init__(self, settings: Settings, redis: ArqRedis) -> None:
        self._settings = settings
        self._redis = redis
        self._timeout = settings.ingest.enqueue_timeout_seconds
        self._tasks: set[asyncio.Task[None]] = set()

    def wake(self, rows: Sequence[Appended]) -> None:
        """Schedule the wake-up of ``rows``; returns at once."""
        task = asyncio.create_task(self._enqueue([r.id for r in rows]))
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    async def _enqueue(self, ids: list[int]) -> None:
        done = 0
        try:
            async with asyncio.timeout(self._timeout):
                for delivery_id in ids:
                    await self._redis.enqueue_job(
                        PROCESS_DELIVERY,
                        delivery_id,
                        _job_id=job_id(self._settings, delivery_id),
                        _queue_name=self._settings.processors.queue_name,
                    )
                    done += 1
        except Exception as exc:  # Redis down or slow: the sweeper covers these deliveries
            missed = len(ids) - done
            metrics.enqueue_failures.inc(missed)
            log.warning(
                "could not wake workers for %d deliveries (%s); the sweeper will pick them up",
                missed,
                type(exc).__name__,
            )

    async def drain(self, grace: float) -> None:
        """Let in-flight wake-ups finish (bounded) before the Redis pool closes."""
        if self._tasks:
            await asyncio.wait(set(self._tasks), timeout=grace)
