"""Group commit: concurrent deliveries share one transaction, and nobody hears 2xx before it commits.

One writer task per process takes everything queued (up to ``max_batch``) and appends it with
:func:`audit.chain.append_deliveries` in ONE transaction, then resolves each waiting request's
future with its row. While one batch commits, the next one accumulates, so under load each
transaction (and its fsync, and its turn on the chain lock) is shared by many requests; with one
request in flight a delivery waits for exactly one short transaction.

Each batch is ONE statement (:func:`audit.chain.append_prepared`), hashed against the head the
batches before it will leave. Up to ``pipeline`` batches are in flight at once, each on its own
connection: the next one is already in PostgreSQL, queued on the chain lock, when the previous
commits, instead of waiting for its answer to reach this busy event loop before being sent. A
guess that turns out wrong (a batch before it failed, another process appended) costs a retry
against the actual head, never a wrong chain.

Failure rules, all answered 503 so the provider retries:
- more than ``max_pending`` deliveries waiting or committing in this process -> :class:`Overloaded`
  at once, without queueing (back-pressure instead of an unbounded queue);
- the transaction fails (PostgreSQL down, ...) -> :class:`CommitFailed` for every request of the
  batch; the transaction rolled back, so none of them is stored;
- no commit within ``commit_timeout`` -> :class:`CommitTimeout`. The batch may still commit
  later; the provider's retry is then stored as a duplicate row, which is harmless.

``on_commit`` runs after the commit with the appended rows (the Redis wake-up); it must not block.
"""

from __future__ import annotations

import asyncio
import logging
from collections import deque
from collections.abc import Callable, Sequence
from typing import Any, cast

import asyncpg

from audit.chain import (
    Appended,
    NewDelivery,
    PreparedAppend,
    append_deliveries,
    append_prepared,
)
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
        on_commit: Callable[[Sequence[Appended]], None] | None = None,
        pipeline: int = 1,
    ) -> None:
        self._pool = pool
        self._max_batch = max_batch
        self._max_pending = max_pending
        self._commit_timeout = commit_timeout
        self._on_commit = on_commit
        self._queue: deque[tuple[NewDelivery, asyncio.Future[Appended]]] = deque()
        self._committing = 0
        self._wake = asyncio.Event()
        self._closing = False
        self._task: asyncio.Task[None] | None = None
        self._max_inflight = max(1, pipeline)
        self._inflight = 0
        self._tasks: set[asyncio.Task[None]] = set()
        self._idle: list[Any] = []  # pool connections kept between batches (one per slot)
        # (id, row_hash) the chain head will have once the batches sent so far have landed, or
        # None when unknown (start, failure): then a batch is sent alone and reads the head.
        self._head: tuple[int, bytes] | None = None

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
            blocked = self._inflight >= self._max_inflight or (
                self._head is None and self._inflight > 0
            )
            if not self._queue or blocked:
                if self._closing and not self._queue and not self._inflight:
                    return
                self._wake.clear()
                await self._wake.wait()
                continue
            n = min(len(self._queue), self._max_batch)
            batch = [self._queue.popleft() for _ in range(n)]
            prepared: PreparedAppend | None = None
            if self._head is not None:
                # Hashed against the head the batches in flight will leave: sent at once, it
                # waits in PostgreSQL for the chain lock instead of here for their answers.
                try:
                    prepared = PreparedAppend([d for d, _ in batch], self._head)
                except Exception:  # never let one bad batch end the writer
                    log.exception("could not prepare a group commit of %d deliveries", n)
                    for _, fut in batch:
                        if not fut.done():
                            fut.set_exception(CommitFailed("the delivery could not be stored"))
                    continue
                self._head = prepared.head_after
            self._inflight += 1
            self._committing += n
            task = asyncio.create_task(self._commit(batch, prepared))
            self._tasks.add(task)
            task.add_done_callback(self._tasks.discard)

    async def _commit(
        self,
        batch: list[tuple[NewDelivery, asyncio.Future[Appended]]],
        prepared: PreparedAppend | None,
    ) -> None:
        try:
            conn: Any = None
            try:
                conn = await self._connection()
                c = cast(asyncpg.Connection, conn)
                if prepared is None:
                    results = await append_deliveries(c, [d for d, _ in batch])
                else:
                    results = await append_prepared(c, prepared)
                self._idle.append(conn)
            except Exception as exc:
                if conn is not None:
                    await self._release(conn)
                self._head = None  # re-read under the lock by the next batch sent alone
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
            last = (results[-1].id, results[-1].row_hash)
            if prepared is None:
                self._head = last
            elif last != prepared.head_after:
                # Landed elsewhere than expected (another writer, or a batch before it failed):
                # what is in flight was hashed for a head that is gone; start again from PostgreSQL.
                self._head = None
            metrics.commit_batch_size.observe(len(batch))
            for (_, fut), row in zip(batch, results, strict=True):
                if not fut.done():
                    fut.set_result(row)
            if self._on_commit is not None:
                try:
                    self._on_commit(results)
                except Exception:
                    log.exception("post-commit hook failed")
        finally:
            self._inflight -= 1
            self._committing -= len(batch)
            self._wake.set()
