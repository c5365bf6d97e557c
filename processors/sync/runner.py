"""``ledgerhook sync``: list a provider's objects and store each as a delivery, resumably.

For each list (customers, subscriptions, ...), in order: take the list's cursor
(:mod:`.cursors`; an unfinished one is resumed), apply what a killed run left pending, then page
through the provider's listing from the cursor. Each page is stored in ONE transaction with its
cursor (:func:`.store.store` then :func:`.cursors.advance`), then applied through the processors'
own path (:func:`processors.service.process_batch`, exactly once, in order). The next page is
fetched while the current one is stored and applied (one page ahead: memory stays flat whatever
the size of the account). A kill at any point loses nothing and repeats nothing: the cursor moved
with the stored page; its deliveries are applied by the next run (or the worker's sweeper).

One run per endpoint at a time: a session advisory lock, held for the run, refuses a second one
(SyncBusy). The provider failing after every retry stops the run with the cursor kept and the
list marked ``failed`` (counted for the ``provider_api`` alert); running it again resumes.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import AsyncIterator, Callable
from datetime import UTC, datetime
from typing import cast

import asyncpg
import msgspec

from audit.dbtypes import Conn
from ledgerhook import metrics
from ledgerhook.settings import Settings
from processors.errors import ProviderError, SyncBusy, SyncNotConfigured
from processors.repository import analyze_stale
from processors.service import process_batch
from processors.sync import cursors, kinds
from processors.sync.api import Page, ProviderApi, make_api
from processors.sync.store import SyncTarget, store

__all__ = ["ListProgress", "ListSummary", "SyncSummary", "run_sync", "target"]

log = logging.getLogger(__name__)


class ListProgress(msgspec.Struct, frozen=True, kw_only=True):
    """Where one list stands, after each page (for the terminal and the API)."""

    provider: str
    object_type: str
    listed: int
    stored: int
    duplicates: int
    total: int | None
    seconds: float
    resumed_at: int = 0  # objects already listed by earlier runs of this list


class ListSummary(msgspec.Struct, frozen=True, kw_only=True):
    object_type: str
    status: str
    resumed: bool
    pages: int
    listed: int
    stored: int
    duplicates: int
    applied: int
    not_applied: int
    total: int | None
    seconds: float
    error: str | None = None


class SyncSummary(msgspec.Struct, frozen=True, kw_only=True):
    provider: str
    endpoint: str
    account: str
    since: int | None
    lists: list[ListSummary]

    @property
    def ok(self) -> bool:
        return all(s.status == "done" for s in self.lists)


Progress = Callable[[ListProgress], None]


def target(settings: Settings, provider: str, endpoint: str | None) -> SyncTarget:
    """The endpoint (and account) synced objects belong to: the same as its webhooks'."""
    name = endpoint or "default"
    e = settings.endpoint(provider, name)
    if e is not None:
        return SyncTarget(provider=provider, endpoint=name, account=e.account_id)
    if endpoint is not None:
        raise SyncNotConfigured(f"no {provider} endpoint named {endpoint!r} is configured")
    account = settings.stripe_account if provider == "stripe" else settings.chargebee_site
    return SyncTarget(provider=provider, endpoint=name, account=account or "default")


_END = object()


async def _ahead(pages: AsyncIterator[Page]) -> AsyncIterator[Page]:
    """``pages``, fetched one page ahead of the consumer (a queue of one)."""
    queue: asyncio.Queue[object] = asyncio.Queue(maxsize=1)

    async def produce() -> None:
        try:
            async for page in pages:
                await queue.put(page)
            await queue.put(_END)
        except Exception as exc:  # handed to the consumer, in order
            await queue.put(exc)

    task = asyncio.create_task(produce())
    try:
        while True:
            item = await queue.get()
            if item is _END:
                return
            if isinstance(item, Exception):
                raise item
            yield cast(Page, item)
    finally:
        task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await task


async def _pages(api: ProviderApi, list_name: str, cursor: cursors.Cursor) -> AsyncIterator[Page]:
    position, created = cursor.cursor, cursor.cursor_created
    first = not cursor.resumed
    while True:
        page = await api.list_page(
            list_name,
            since=cursor.since,
            cursor=position,
            cursor_created=created,
            want_total=first,
        )
        first = False
        yield page
        if page.next_cursor is None:
            return
        position, created = page.next_cursor, page.next_cursor_created


# As often as the worker's analyze job runs by default. A sync writes state faster than anything else, and
# it may run before any worker (or on a server with autovacuum off): without fresh statistics
# its per-page reads of current state were planned for near-empty tables and read whole accounts
# (`make bench-sync` fell to 306 objects/s at 100 000 customers, PostgreSQL busy on one read).
ANALYZE_EVERY_SECONDS = 15.0


async def _analyze_stale(pool: asyncpg.Pool) -> None:
    async with pool.acquire() as conn:
        await analyze_stale(conn)


async def _apply(pool: asyncpg.Pool, ids: list[int]) -> tuple[int, int]:
    """(settled, not settled) of ``ids`` applied through the processors; failures are left to
    the worker's sweeper, as any delivery's would be."""
    if not ids:
        return 0, 0
    async with pool.acquire() as conn:
        outcomes = await process_batch(conn, ids)
    bad = [i for i, o in outcomes.items() if isinstance(o, BaseException) or o == "dead_letter"]
    if bad:
        log.warning("synced deliveries not applied", extra={"delivery_ids": bad[:20]})
    return len(outcomes) - len(bad), len(bad)


async def _sync_list(
    pool: asyncpg.Pool,
    api: ProviderApi,
    where: SyncTarget,
    list_name: str,
    *,
    since: int | None,
    restart: bool,
    progress: Progress | None,
) -> ListSummary:
    started = time.monotonic()
    async with pool.acquire() as conn:
        cursor = await cursors.begin(
            conn,
            where.provider,
            where.endpoint,
            list_name,
            since=since,
            restart=restart,
            now=datetime.now(UTC),
        )
    key = cursor.key
    applied, not_applied = await _apply(pool, cursor.pending)
    if cursor.pending:
        async with pool.acquire() as conn:
            await cursors.applied(conn, key, cursor.pending, datetime.now(UTC))
    if cursor.resumed:
        log.info(
            "resuming sync",
            extra={"provider": where.provider, "list": list_name, "after": cursor.listed},
        )
    listed = stored = duplicates = pages = 0
    analyzed_at = time.monotonic()
    total = cursor.total
    labels = {"provider": where.provider, "object_type": list_name}
    error: str | None = None
    try:
        async for page in _ahead(_pages(api, list_name, cursor)):
            total = page.total if page.total is not None else total
            async with pool.acquire() as conn, conn.transaction():
                appended = await store(
                    cast(Conn, conn),
                    where,
                    page.objects,
                    fetched_at=page.fetched_at,
                    headers=page.headers,
                    key_fingerprint=api.key_fingerprint,
                )
                ids = [a.id for a in appended]
                dups = sum(1 for a in appended if a.duplicate)
                await cursors.advance(
                    conn,
                    key,
                    cursor=page.next_cursor,
                    cursor_created=page.next_cursor_created,
                    total=page.total,
                    listed=len(page.objects),
                    stored=len(appended) - dups,
                    duplicates=dups,
                    pending=ids,
                    now=datetime.now(UTC),
                )
            pages += 1
            listed += len(page.objects)
            duplicates += dups
            stored += len(appended) - dups
            # The next page's advance() replaces `pending`, and finish() clears it: one commit
            # less per page. A run killed here re-applies this page first (a no-op if done).
            ok, bad = await _apply(pool, ids)
            applied, not_applied = applied + ok, not_applied + bad
            if time.monotonic() - analyzed_at >= ANALYZE_EVERY_SECONDS:
                await _analyze_stale(pool)
                analyzed_at = time.monotonic()
            metrics.sync_pages.labels(**labels).inc()
            metrics.sync_objects.labels(**labels, outcome="stored").inc(len(appended) - dups)
            metrics.sync_objects.labels(**labels, outcome="duplicate").inc(dups)
            metrics.sync_expected_objects.labels(**labels).set(total or 0)
            if progress is not None:
                progress(
                    ListProgress(
                        provider=where.provider,
                        object_type=list_name,
                        listed=listed,
                        stored=stored,
                        duplicates=duplicates,
                        total=total,
                        seconds=time.monotonic() - started,
                        resumed_at=cursor.listed,
                    )
                )
    except ProviderError as exc:
        async with pool.acquire() as conn:
            await cursors.fail(conn, key, str(exc), datetime.now(UTC))
        log.error(
            "sync stopped: the provider kept failing; run it again to resume",
            extra={"provider": where.provider, "list": list_name, "kind": exc.kind},
        )
        status, error = "failed", str(exc)
    else:
        async with pool.acquire() as conn:
            await cursors.finish(conn, key, datetime.now(UTC))
        status, error = "done", None
    return ListSummary(
        object_type=list_name,
        status=status,
        resumed=cursor.resumed,
        pages=pages,
        listed=listed,
        stored=stored,
        duplicates=duplicates,
        applied=applied,
        not_applied=not_applied,
        total=total,
        seconds=round(time.monotonic() - started, 3),
        error=error,
    )


def _lock_key(where: SyncTarget) -> str:
    return f"sync\x1f{where.provider}\x1f{where.endpoint}"


async def run_sync(
    pool: asyncpg.Pool,
    settings: Settings,
    provider: str,
    *,
    endpoint: str | None = None,
    types: str | list[str] | tuple[str, ...] | None = None,
    since: int | None = None,
    restart: bool = False,
    progress: Progress | None = None,
    api: ProviderApi | None = None,
) -> SyncSummary:
    """Sync the lists ``types`` (all by default) of ``provider``'s objects into the audit log."""
    lists = kinds.parse_lists(provider, types)
    where = target(settings, provider, endpoint)
    own_api = api is None
    api = api or make_api(settings, provider)
    summaries: list[ListSummary] = []
    try:
        async with pool.acquire() as lock_conn:
            got = await lock_conn.fetchval(
                "SELECT pg_try_advisory_lock(hashtextextended($1, 0))", _lock_key(where)
            )
            if not got:
                raise SyncBusy(f"a sync of {provider}/{where.endpoint} is already running")
            metrics.sync_running.labels(provider=provider).inc()
            try:
                for list_name in lists:
                    summary = await _sync_list(
                        pool,
                        api,
                        where,
                        list_name,
                        since=since,
                        restart=restart,
                        progress=progress,
                    )
                    summaries.append(summary)
                    if summary.status != "done":
                        break  # the provider is failing: stop here, resume later
            finally:
                metrics.sync_running.labels(provider=provider).dec()
                await lock_conn.execute(
                    "SELECT pg_advisory_unlock(hashtextextended($1, 0))", _lock_key(where)
                )
    finally:
        if own_api:
            await api.close()
    return SyncSummary(
        provider=provider,
        endpoint=where.endpoint,
        account=where.account,
        since=since,
        lists=summaries,
    )
