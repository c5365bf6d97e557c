"""Recording rejected requests without letting them slow the happy path or fill the disk.

Every rejection is counted (``ledgerhook_verification_failures_total{provider,reason}``). At most
``rejections_per_minute`` per endpoint per clock minute are also written to ``audit.rejections``;
the rest are only counted in ``ledgerhook_rejections_unrecorded_total``. Writing happens in a
background task in batches, so a flood of junk costs one COPY per batch, the 4xx answer never
waits for PostgreSQL, and PostgreSQL being down loses records (logged and counted), never the
answer. Metric labels use the configured provider/endpoint names only; a request to an unknown
endpoint is labelled ``unknown`` (its path is attacker-chosen text).
"""

from __future__ import annotations

import asyncio
import hashlib
import logging
import time
from collections import deque
from datetime import datetime
from typing import cast

import asyncpg
import msgspec

from audit.rejections import NewRejection, append_rejections
from ledgerhook import metrics
from ledgerhook.settings import IngestSettings

__all__ = ["RejectionContext", "RejectionLog"]

log = logging.getLogger(__name__)

MAX_QUEUED = 10_000
MAX_NAME = 100


class RejectionContext(msgspec.Struct, frozen=True, kw_only=True):
    """What the handler knew when it refused the request (headers already redacted)."""

    received_at: datetime
    provider: str
    endpoint: str
    known: bool  # provider and endpoint are configured (bounded metric labels)
    source_address: str | None
    headers: str
    body: bytes  # what was read; may be a prefix for an oversized body
    body_size: int


class RejectionLog:
    def __init__(self, pool: asyncpg.Pool, settings: IngestSettings) -> None:
        self._pool = pool
        self._per_minute = settings.rejections_per_minute
        self._body_bytes = settings.rejection_body_bytes
        self._minute = -1
        self._counts: dict[tuple[str, str], int] = {}
        self._queue: deque[tuple[NewRejection, tuple[str, str]]] = deque()
        self._wake = asyncio.Event()
        self._closing = False
        self._task: asyncio.Task[None] | None = None

    def start(self) -> None:
        self._task = asyncio.create_task(self._run(), name="ingest-rejections")

    async def stop(self, grace: float = 5.0) -> None:
        self._closing = True
        self._wake.set()
        if self._task is not None:
            try:
                await asyncio.wait_for(self._task, grace)
            except TimeoutError:
                log.warning("rejection log did not drain within %.1fs", grace)

    def record(self, ctx: RejectionContext, reason: str, status: int) -> None:
        """Count the rejection and, within the cap, queue its record. Never blocks, never raises."""
        provider = ctx.provider if ctx.known else "unknown"
        endpoint = ctx.endpoint if ctx.known else "unknown"
        metrics.deliveries_received.labels(provider, endpoint, "rejected").inc()
        metrics.verification_failures.labels(provider, reason).inc()
        minute = int(time.monotonic() // 60)
        if minute != self._minute:
            self._minute = minute
            self._counts.clear()
        key = (provider, endpoint)
        count = self._counts.get(key, 0)
        if count >= self._per_minute or len(self._queue) >= MAX_QUEUED or self._closing:
            metrics.rejections_unrecorded.labels(provider, endpoint).inc()
            return
        self._counts[key] = count + 1
        rejection = NewRejection(
            received_at=ctx.received_at,
            provider=ctx.provider[:MAX_NAME],
            endpoint=ctx.endpoint[:MAX_NAME],
            status=status,
            reason=reason,
            source_address=ctx.source_address,
            headers=ctx.headers,
            body_prefix=ctx.body[: self._body_bytes],
            body_size=ctx.body_size,
            body_sha256=hashlib.sha256(ctx.body).digest(),
        )
        self._queue.append((rejection, key))
        self._wake.set()

    async def _run(self) -> None:
        while True:
            if not self._queue:
                if self._closing:
                    return
                self._wake.clear()
                await self._wake.wait()
                continue
            batch = [self._queue.popleft() for _ in range(min(len(self._queue), 500))]
            try:
                async with self._pool.acquire(timeout=5) as conn:
                    await append_rejections(cast(asyncpg.Connection, conn), [r for r, _ in batch])
            except Exception as exc:
                for _, labels in batch:
                    metrics.rejections_unrecorded.labels(*labels).inc()
                log.error("could not record %d rejections: %s", len(batch), type(exc).__name__)
                await asyncio.sleep(1)  # PostgreSQL is down: do not spin
