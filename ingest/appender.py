"""Group commit: concurrent deliveries share one transaction, and nobody hears 2xx before it commits.

One writer task per process takes everything queued (up to ``max_batch``) and appends it with
:func:`audit.append.append_deliveries`: ONE statement, one transaction, one fsync for the whole
batch. While batches commit, the next ones accumulate, so under load each transaction is shared
by many requests; with one request in flight a delivery waits for exactly one short transaction.

Up to ``pipeline`` batches are in flight at once, each on its own connection. Nothing orders
them (the log's order is the sequencer's, later), so they commit side by side in PostgreSQL,
and so do the batches of every other API process.

Failure rules, all answered 503 so the provider retries:
- more than ``max_pending`` deliveries waiting or committing in this process -> :class:`Overloaded`
  at once, without queueing (back-pressure instead of an unbounded queue);
- the transaction fails (PostgreSQL down, ...) -> :class:`CommitFailed` for every request of the
  batch; the transaction rolled back, so none of them is stored;
- no commit within ``commit_timeout`` -> :class:`CommitTimeout`. The batch may still commit
  later; the provider's retry is then stored as a duplicate row, which is harmless.
"""

from __future__ import annotations

import asyncio
import logging
from collections import deque
from typing import Any, cast

import asyncpg

from audit.append import Appended, NewDelivery, append_deliveries
from ingest.errors import CommitFailed, CommitTimeout, Overloaded
from ledgerhook import metrics

__all__ = ["Appender"]

log = logging.getLogger(__name__)


def _consume(fut: asyncio.Future[Appended]) -> None:
    """Mark a failed future's exception as seen (its request may have timed out and left)."""
    if not fut.cancelled():
        fut.exception()


def _expire(fut: asyncio.Future[Appended]) -> None:
    if not fut.done():
        fut.set_exception(CommitTimeout("the delivery was not committed in time"))


class Appender:
    def __init__(
        self,
        pool: asyncpg.Pool,
        *,
        max_batch: int,
        max_pending: int,
        commit_timeout: float,
        pipeline: int = 1,
    ) -> None:
        self._pool = pool
        self._max_batch = max_batch
        self._max_pending = max_pending
        self._commit_timeout = commit_timeout
        self._queue: deque[tuple[NewDelivery, asyncio.Future[Appended]]] = deque()
        self._committing = 0
        self._wake = asyncio.Event()
        self._closing = False
        self._task: asyncio.Task[None] | None = None
        self._max_inflight = max(1, pipeline)
        self._inflight = 0
        self._tasks: set[asyncio.Task[None]] = set()
        self._idle: list[Any] = []  # pool connections kept between batches (one per slot)

    @property
    def pending(self) -> int:
        return len(self._queue) + self._committing

    def start(self) -> None:
        self._task = asyncio.create_task(self._run(), name="ingest-appender")

    async def _connection(self) -> Any:
        """A connection kept by the writer between batches: going back to the pool costs a
        round trip (asyncpg resets the session on release) per commit."""
        if self._idle:
            return self._idle.pop()
        return await self._pool.acquire(timeout=self._commit_timeout)

    async def _release(self, conn: Any) -> None:
        try:
            await self._pool.release(conn, timeout=self._commit_timeout)
        except Exception as exc:  # a broken connection is closed by the pool anyway
            log.warning("could not release a connection: %s", type(exc).__name__)

    async def stop(self, grace: float = 10.0) -> None:
        """Commit what is queued, then end the writer (requests arriving now get 503)."""
        self._closing = True
        self._wake.set()
        if self._task is not None:
            try:
                await asyncio.wait_for(self._task, grace)
            except TimeoutError:
                log.warning("ingest appender did not drain within %.1fs", grace)
        for _, fut in self._queue:
            if not fut.done():
                fut.set_exception(CommitFailed("server is shutting down"))
        self._queue.clear()
        while self._idle:
            await self._release(self._idle.pop())

    async def append(self, delivery: NewDelivery) -> Appended:
        """The committed row of ``delivery``; raises :class:`ingest.errors.Unavailable`."""
        if self._closing:
            raise CommitFailed("server is shutting down")
        if self.pending >= self._max_pending:
            raise Overloaded("too many deliveries waiting for a commit")
        loop = asyncio.get_running_loop()
        fut: asyncio.Future[Appended] = loop.create_future()
        fut.add_done_callback(_consume)
        self._queue.append((delivery, fut))
        if not self._wake.is_set():
            self._wake.set()
        # One timer handle per request (a heap entry), instead of wait_for + shield (two extra
        # futures, a task wrapper and callbacks): this was ~7% of the server's CPU under load.
        # The writer skips futures that are already done; a request cancelled by a client
        # disconnect leaves its delivery to be committed anyway, which is allowed.
        timer = loop.call_later(self._commit_timeout, _expire, fut)
        try:
            return await fut
        finally:
            timer.cancel()

    async def _run(self) -> None:
        while True:
            if not self._queue or self._inflight >= self._max_inflight:
                if self._closing and not self._queue and not self._inflight:
                    return
                self._wake.clear()
                await self._wake.wait()
                continue
            n = min(len(self._queue), self._max_batch)
            batch = [self._queue.popleft() for _ in range(n)]
            self._inflight += 1
            self._committing += n
            task = asyncio.create_task(self._commit(batch))
            self._tasks.add(task)
            task.add_done_callback(self._tasks.discard)

    async def _commit(self, batch: list[tuple[NewDelivery, asyncio.Future[Appended]]]) -> None:
        try:
            conn: Any = None
            try:
                conn = await self._connection()
                results = await append_deliveries(
                    cast(asyncpg.Connection, conn), [d for d, _ in batch]
                )
                self._idle.append(conn)
            except Exception as exc:
                if conn is not None:
                    await self._release(conn)
                log.error(
                    "group commit of %d deliveries failed: %s: %s",
                    len(batch),
                    type(exc).__name__,
                    exc,
                )
                for _, fut in batch:
                    if not fut.done():
                        fut.set_exception(CommitFailed("the audit log is unavailable"))
                return
            metrics.commit_batch_size.observe(len(batch))
            for (_, fut), row in zip(batch, results, strict=True):
                if not fut.done():
                    fut.set_result(row)
        finally:
            self._inflight -= 1
            self._committing -= len(batch)
            self._wake.set()
