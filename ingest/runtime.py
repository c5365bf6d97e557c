"""The ingest edge's long-lived parts, opened in the app's lifespan and reached via ``app.state``.

Order matters on shutdown: stop accepting, commit what is queued, write pending rejection
records, then close Redis (used for the readiness report only: ingest never waits for Redis). The PostgreSQL pool is the app's and is closed
after this (the app lifespan that opened it exits last).
"""

from __future__ import annotations

import logging
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any

import asyncpg
from arq.connections import ArqRedis
from litestar import Litestar

from ingest.appender import Appender
from ingest.errors import Rejected
from ingest.rejection_log import RejectionContext, RejectionLog
from ledgerhook.settings import EndpointSettings, Settings
from ledgerhook.wakeup import arq_redis

__all__ = ["IngestRuntime", "ingest_lifespan", "record_rejection"]

log = logging.getLogger(__name__)


class IngestRuntime:
    def __init__(self, settings: Settings, pool: asyncpg.Pool) -> None:
        self.settings = settings
        self.pool = pool
        self.endpoints: dict[tuple[str, str], EndpointSettings] = {
            (e.provider, e.name): e for e in settings.all_endpoints()
        }
        self.redis: ArqRedis = arq_redis(settings, timeout=settings.redis_timeout_seconds)
        self.appender = Appender(
            pool,
            max_batch=settings.ingest.max_batch,
            max_pending=settings.ingest.max_pending,
            commit_timeout=settings.ingest.commit_timeout_seconds,
            pipeline=settings.ingest.commit_pipeline,
        )
        self.rejections = RejectionLog(pool, settings.ingest)

    def start(self) -> None:
        self.appender.start()
        self.rejections.start()

    async def stop(self) -> None:
        await self.appender.stop(self.settings.ingest.commit_timeout_seconds)
        await self.rejections.stop()
        await self.redis.aclose(close_connection_pool=True)


@asynccontextmanager
async def ingest_lifespan(app: Litestar) -> AsyncIterator[None]:
    """Runs after the app lifespan opened ``app.state.pool``; closes before it is closed."""
    runtime = IngestRuntime(app.state.settings, app.state.pool)
    runtime.start()
    app.state.ingest = runtime
    try:
        yield
    finally:
        await runtime.stop()


def record_rejection(state: Any, exc: Rejected, status: int) -> None:
    """Hand a refused request to the rejection log (called where errors become HTTP answers)."""
    runtime: IngestRuntime | None = state.get("ingest")
    if runtime is None or not isinstance(exc.context, RejectionContext):
        return
    try:
        runtime.rejections.record(exc.context, exc.reason, status)
    except Exception:  # recording must never turn a 4xx into a 500
        log.exception("could not record a rejection")
