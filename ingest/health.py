"""Liveness, readiness and the Prometheus exposition.

Ready means "a delivery sent now would be stored": PostgreSQL answers ``SELECT 1`` within a short
timeout. Redis is reported but does not make ingest unready: deliveries still land without it.
"""

from __future__ import annotations

import asyncio
from typing import Any

import msgspec
from litestar import Request, Response, get
from litestar.openapi.datastructures import ResponseSpec

from ingest.runtime import IngestRuntime
from ledgerhook.log_gauges import exposition
from ledgerhook.metrics import MEDIA_TYPE, render

__all__ = ["health_routes"]

CHECK_TIMEOUT = 1.0


class Readiness(msgspec.Struct, frozen=True, kw_only=True):
    status: str
    postgres: str
    redis: str


async def _postgres_ok(runtime: IngestRuntime) -> bool:
    try:
        async with asyncio.timeout(CHECK_TIMEOUT):
            async with runtime.pool.acquire() as conn:
                return bool(await conn.fetchval("SELECT 1") == 1)
    except Exception:
        return False


async def _redis_ok(runtime: IngestRuntime) -> bool:
    try:
        async with asyncio.timeout(CHECK_TIMEOUT):
            return bool(await runtime.redis.ping())
    except Exception:
        return False


@get("/health/live", name="health_live", summary="Liveness", tags=["health"])
async def live() -> dict[str, str]:
    """Always 200 `{"status": "ok"}` while the process serves HTTP (a liveness probe)."""
    return {"status": "ok"}


@get(
    "/health/ready",
    name="health_ready",
    summary="Readiness",
    tags=["health"],
    responses={
        503: ResponseSpec(
            data_container=Readiness,
            description="PostgreSQL does not answer: deliveries would be refused.",
            generate_examples=False,
        )
    },
)
async def ready(request: Request[Any, Any, Any]) -> Response[Readiness]:
    """200 when PostgreSQL answers (a delivery sent now would be stored), else 503. Redis is
    reported but does not make the service unready: deliveries still land without it."""
    runtime: IngestRuntime = request.app.state.ingest
    pg, redis = await asyncio.gather(_postgres_ok(runtime), _redis_ok(runtime))
    body = Readiness(
        status="ready" if pg else "unavailable",
        postgres="ok" if pg else "down",
        redis="ok" if redis else "down",
    )
    return Response(body, status_code=200 if pg else 503)


@get("/metrics", name="metrics", include_in_schema=False)
async def metrics_exposition(request: Request[Any, Any, Any]) -> Response[bytes]:
    """Prometheus text format: process metrics aggregated across server processes (and the
    worker's under ``ledgerhook run``), plus the log's state read from PostgreSQL."""
    runtime: IngestRuntime = request.app.state.ingest
    return Response(render() + await exposition(runtime.pool), media_type=MEDIA_TYPE)


health_routes = [live, ready, metrics_exposition]
