"""Waking the workers when deliveries are integrated: one arq job per integrated batch, best effort.

Deliveries are applied in the log's order (leaf order), so the sequencer wakes the workers after
each batch it integrates (``audit.sequencer``). Redis is a wake-up, not a store: the batch is
already committed when this runs, so a failure here loses nothing (the processors' sweeper finds
integrated deliveries that were never processed). Each wake-up is sent by a background task, so
the sequencer never waits for Redis; the task gives up after ``redis_timeout_seconds`` and counts
what it could not send in ``ledgerhook_enqueue_failures_total``. The Redis client connects lazily.

The job carries the delivery id of the batch's first leaf; the worker that takes it drains every
pending delivery from PostgreSQL in leaf order (``processors.batcher``). Measured end to end, one
job per delivery cost more CPU (API, Redis and worker) than anything else on the way: sustained
rate 0.41x -> 0.56x of the ingest maximum with one job per batch.

Jobs are written with ONE Lua script call that writes exactly what
``ArqRedis.enqueue_job(PROCESS_DELIVERY, id, _job_id=job_id(settings, id))`` writes (the msgpack job
under ``arq:job:<job id>`` with arq's expiry, the job id in the queue's sorted set, skipped when
the job or its result already exists), atomically per job. arq's own enqueue costs a WATCH/MULTI
round trip sequence per job; measured, it halved ingest throughput, so this is the pipelined
equivalent the contract allows.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Sequence

from arq.connections import ArqRedis
from arq.constants import expires_extra_ms, job_key_prefix, result_key_prefix
from arq.jobs import serialize_job
from redis.asyncio import ConnectionPool

from ledgerhook import metrics
from ledgerhook.jobs import PROCESS_DELIVERY, deserialize, job_id, serialize
from ledgerhook.settings import Settings

__all__ = ["Waker", "arq_redis"]

log = logging.getLogger(__name__)

# KEYS[1] queue; ARGV: job key prefix, result key prefix, expiry ms, score, then job id/payload pairs.
_ENQUEUE = """
local n = 0
for i = 5, #ARGV, 2 do
  local jid = ARGV[i]
  local key = ARGV[1] .. jid
  if redis.call('EXISTS', key, ARGV[2] .. jid) == 0 then
    redis.call('PSETEX', key, ARGV[3], ARGV[i + 1])
    redis.call('ZADD', KEYS[1], ARGV[4], jid)
    n = n + 1
  end
end
return n
"""


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
        self._timeout = settings.redis_timeout_seconds
        self._tasks: set[asyncio.Task[None]] = set()
        self._script = redis.register_script(_ENQUEUE)

    def wake(self, delivery_ids: Sequence[int]) -> None:
        """Schedule the wake-up for an integrated batch, given in leaf order; returns at once.

        One job per batch, for its first delivery: a woken worker applies that delivery and
        drains every other pending one from PostgreSQL in leaf order (``processors.batcher``),
        so a job per delivery would only cost Redis, this process and the worker CPU per
        delivery. Anything a worker does not reach is the sweeper's, as always.
        """
        if not delivery_ids:
            return
        task = asyncio.create_task(self._enqueue([delivery_ids[0]]))
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    async def _enqueue(self, ids: list[int]) -> None:
        now_ms = int(time.time() * 1000)
        args: list[str | int | bytes] = [
            job_key_prefix,
            result_key_prefix,
            expires_extra_ms,
            now_ms,
        ]
        for delivery_id in ids:
            args.append(job_id(self._settings, delivery_id))
            args.append(
                serialize_job(
                    PROCESS_DELIVERY, (delivery_id,), {}, None, now_ms, serializer=serialize
                )
            )
        try:
            async with asyncio.timeout(self._timeout):
                await self._script(keys=[self._settings.processors.queue_name], args=args)
        except Exception as exc:  # Redis down or slow: the sweeper covers these deliveries
            metrics.enqueue_failures.inc(len(ids))
            log.warning(
                "could not wake workers for %d deliveries (%s); the sweeper will pick them up",
                len(ids),
                type(exc).__name__,
            )

    async def drain(self, grace: float) -> None:
        """Let in-flight wake-ups finish (bounded) before the Redis pool closes."""
        if self._tasks:
            await asyncio.wait(set(self._tasks), timeout=grace)
