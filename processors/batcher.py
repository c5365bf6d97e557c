"""Group the deliveries of concurrent jobs into shared transactions (group apply).

One arq job per delivery is the contract, and arq runs up to ``max_jobs`` of them at once. Each
job hands its delivery id to the process's :class:`Batcher` and waits for its own outcome; the
batcher runs :func:`processors.service.process_batch` on everything handed in meanwhile. So one
transaction, one commit (one fsync) and a fixed number of statements serve a whole batch instead
of one delivery, which is where the worker's time went (round trips and commits, not Python).

With ``drain`` set (the worker sets it), a batch that has room is topped up with other
unprocessed deliveries read from PostgreSQL in the log's order (leaf order: deliveries are
applied once the sequencer has integrated them), and their (not yet started) jobs are
then removed from the arq queue: arq's own cost per job (about six Redis round trips, four of
them one after the other while it starts jobs) is otherwise the ceiling. "A job applies its own
delivery and may apply others" keeps the contract (jobs take a delivery id; the sweeper still
re-enqueues whatever is left). A job removed after its delivery committed is not needed; a
drained delivery whose job arq already started is found processed by that job (a no-op).

Nothing about exactly-once moves here: a batch is still claim → lock → apply → mark in one
PostgreSQL transaction, a failed batch is redone one delivery at a time, and a job whose batch
is lost (worker killed) is simply run again by arq or the sweeper.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging

import asyncpg
from arq.connections import ArqRedis
from arq.constants import job_key_prefix

from audit.dbtypes import Conn
from ledgerhook.jobs import job_id
from ledgerhook.settings import Settings
from processors import repository as repo
from processors.service import process_batch

__all__ = ["Batcher"]

log = logging.getLogger(__name__)


class Batcher:
    """Collect delivery ids from concurrent jobs; at most ``concurrency`` batches in flight.

    The first id starts a batch at once (no waiting for company: an idle worker adds no
    latency); ids that arrive while batches are running form the next batch.
    """

    def __init__(
        self,
        pool: asyncpg.Pool,
        *,
        max_batch: int = 100,
        concurrency: int = 2,
        drain: tuple[ArqRedis, Settings] | None = None,
    ) -> None:
        self._pool = pool
        # arq's Redis and the settings naming the queue and job ids: where drained deliveries'
        # jobs are removed from.
        self._drain_to = drain
        # Drain reads above this leaf index: below the sweeper's watermark at first, then lowered
        # to any job below it and raised past what was read (see _top_up, _raise_floor).
        self._floor: int | None = None
        self._inflight: set[int] = set()
        self._max_batch = max(max_batch, 1)
        self._concurrency = max(concurrency, 1)
        self._pending: dict[int, list[asyncio.Future[str]]] = {}
        self._running = 0
        self._tasks: set[asyncio.Task[None]] = set()

    async def process(self, delivery_id: int) -> str:
        """The delivery's outcome, or its error raised (as :func:`process_delivery` would)."""
        fut: asyncio.Future[str] = asyncio.get_running_loop().create_future()
        self._pending.setdefault(delivery_id, []).append(fut)
        if self._running < self._concurrency:
            self._running += 1
            task = asyncio.create_task(self._drain())
            self._tasks.add(task)
            task.add_done_callback(self._tasks.discard)
        return await fut

    def _take(self) -> dict[int, list[asyncio.Future[str]]]:
        taken: dict[int, list[asyncio.Future[str]]] = {}
        for delivery_id in list(self._pending)[: self._max_batch]:
            taken[delivery_id] = self._pending.pop(delivery_id)
        return taken

    def _take_all(self) -> dict[int, list[asyncio.Future[str]]]:
        taken, self._pending = self._pending, {}
        return taken

    async def _drain(self) -> None:
        try:
            while True:
                try:
                    # One connection for as long as there is work: no pool reset per batch.
                    async with self._pool.acquire() as conn:
                        while await self._one_batch(conn):
                            pass
                except Exception as exc:
                    # The batch's jobs were told; the ones waiting would meet the same trouble
                    # (PostgreSQL away): they are told too and retry with backoff, instead of
                    # this task spinning on a pool that cannot connect.
                    log.warning("batch connection failed", extra={"error": type(exc).__name__})
                    for futs in self._take_all().values():
                        for f in futs:
                            if not f.done():
                                f.set_exception(exc)
                # No await between this check and the exit (``finally`` below): an id handed in
                # meanwhile is never left without a task to run it.
                if not self._pending:
                    return
        finally:
            self._running -= 1

    async def _one_batch(self, conn: Conn) -> bool:
        """Run one batch on ``conn``; False when there was nothing to do.

        Connection errors reach the batch's jobs (they retry) and are raised again so that
        :meth:`_drain` takes another connection.
        """
        batch = self._take()
        drained: list[int] = []
        read: repo.DrainRead | None = None
        room = self._max_batch - len(batch)
        try:
            if self._drain_to is not None and room > 0:
                read = await self._top_up(conn, batch)
                drained = read.delivery_ids
            if not batch and not drained:
                return False
            self._inflight.update(batch, drained)
            try:
                results = await process_batch(conn, [*batch, *drained])
            finally:
                self._inflight.difference_update(batch, drained)
        except asyncio.CancelledError:
            for futs in batch.values():
                for f in futs:
                    f.cancel()
            raise
        except Exception as exc:
            for futs in batch.values():
                for f in futs:
                    if not f.done():
                        f.set_exception(exc)
            raise
        for delivery_id, futs in batch.items():
            r = results[delivery_id]
            for f in futs:
                if f.done():  # the job was cancelled (timeout); the work is done anyway
                    continue
                if isinstance(r, BaseException):
                    f.set_exception(r)
                else:
                    f.set_result(r)
        if read is not None:
            self._raise_floor(read, room)
        if drained:
            await self._remove_jobs(drained, results)
        return True

    async def _top_up(
        self, conn: Conn, batch: dict[int, list[asyncio.Future[str]]]
    ) -> repo.DrainRead:
        """Unprocessed deliveries to add to ``batch``, read in leaf order above the floor."""
        if self._floor is None:
            # Start from PostgreSQL, not from the first job: a queue can hold jobs for deliveries
            # far ahead (or for another database), and the floor only moves down with jobs.
            self._floor = await repo.sweep_watermark(conn) - 1
        read = await repo.drain_read(
            conn,
            self._floor,
            self._max_batch - len(batch),
            [*self._inflight, *batch, *self._pending],
            list(batch),
        )
        # A job below the floor (a retry, the sweeper re-enqueuing an old backlog) moved it
        # down in the read: the backlog behind it is then drained at batch speed.
        self._floor = read.floor if read.last_leaf is None else max(read.floor, read.last_leaf)
        return read

    def _raise_floor(self, read: repo.DrainRead, room: int) -> None:
        """After a read that found less than it had room for, move the floor past the jobs.

        Jobs name integrated deliveries (the sequencer wakes the workers after it commits a
        batch; the sweeper re-enqueues leaves), and leaves commit in index order, so every leaf up
        to the highest of the jobs' (``jobs_top``, read in the same snapshot) was visible to that
        read: returned, in flight, handed in or processed. That holds up to the top of the window
        the read looked at; beyond it (a backlog deeper than the window) the read saw nothing, so
        the floor stops there.
        """
        if self._floor is None or len(read.delivery_ids) >= room or read.jobs_top is None:
            return
        covered = read.floor + repo.DRAIN_WINDOW
        self._floor = max(self._floor, min(read.jobs_top, covered))

    async def _remove_jobs(
        self, drained: list[int], results: dict[int, str | BaseException]
    ) -> None:
        """Drop the queued jobs of drained deliveries that now have their outcome (one round trip)."""
        assert self._drain_to is not None
        redis, settings = self._drain_to
        queue = settings.processors.queue_name
        done = [
            job_id(settings, i) for i in drained if not isinstance(results.get(i), BaseException)
        ]
        if not done:
            return
        try:
            async with redis.pipeline(transaction=False) as pipe:
                pipe.zrem(queue, *done)
                pipe.delete(*(job_key_prefix + j for j in done))
                await pipe.execute()
        except Exception:  # the jobs then run and find their delivery processed: a no-op
            log.warning("could not remove drained jobs from the queue", exc_info=True)

    async def close(self) -> None:
        for task in list(self._tasks):
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await task
