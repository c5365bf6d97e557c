"""HTTP routes of ``ledgerhook sync``: start one (admin) and see where each list stands (auditor).

``POST /sync`` validates the request (provider, endpoint, lists, API key) and queues a job for
the worker (:mod:`processors.sync.jobs`); the sync never runs inside the request. ``GET /sync``
reads ``processors.sync_cursors``: status, counts, totals and the last failure of every list.
"""

from __future__ import annotations

from typing import Any, Literal

import asyncpg
import msgspec
import redis.exceptions
from litestar import Request, Router, get, post
from litestar.di import NamedDependency
from litestar.params import FromQuery

from audit import permissions
from audit.auth import require_role
from ledgerhook.http_errors import documented
from ledgerhook.jobs import SYNC_OBJECTS, enqueue_run
from ledgerhook.settings import Settings
from processors.errors import InvalidSyncRequest, JobQueueUnavailable
from processors.sync import cursors, kinds
from processors.sync.api import check_configured
from processors.sync.runner import target

__all__ = ["SyncRequest", "SyncStarted", "queue_job", "routes"]

Provider = Literal["stripe", "chargebee"]


class SyncRequest(msgspec.Struct, frozen=True, kw_only=True, forbid_unknown_fields=True):
    provider: Provider
    endpoint: str | None = None
    # Lists to sync (default: all), e.g. ["customers", "subscriptions"].
    types: list[str] | None = None
    # Only objects created at or after this unix time.
    since: int | None = None
    # Start unfinished lists over instead of resuming them.
    restart: bool = False


class SyncStarted(msgspec.Struct, frozen=True, kw_only=True):
    job_id: str
    provider: str
    endpoint: str
    types: list[str]
    since: int | None
    restart: bool


class SyncStatus(msgspec.Struct, frozen=True, kw_only=True):
    lists: list[cursors.Cursor]


_request = msgspec.json.Decoder(SyncRequest)


async def queue_job(
    request: Request[Any, Any, Any], settings: Settings, name: str, **kw: Any
) -> str:
    """Queue a run for the worker through the ingest edge's Redis client (503 when it is down)."""
    try:
        return await enqueue_run(request.app.state.ingest.redis, settings, name, **kw)
    except (redis.exceptions.RedisError, OSError, TimeoutError):
        raise JobQueueUnavailable("the job queue (Redis) is unavailable; try again") from None


@post(
    "/sync",
    guards=[require_role(permissions.SYNC)],
    status_code=202,
    summary="Start an initial sync from a provider",
    responses=documented(400, 401, 403, 409, 429, 503),
)
async def sync_start(
    request: Request[Any, Any, Any], settings: NamedDependency[Settings]
) -> SyncStarted:
    """Start a sync in the worker: ``{"provider": "stripe", "types": ["customers"], "since": 1700000000}``."""
    try:
        body = _request.decode(await request.body())
    except msgspec.DecodeError as exc:
        raise InvalidSyncRequest(
            f'body: {exc} (expected {{"provider": "stripe"|"chargebee", "types": [...], '
            '"since": unix seconds, "endpoint": name, "restart": bool}})'
        ) from None
    lists = kinds.parse_lists(body.provider, body.types)
    where = target(settings, body.provider, body.endpoint)
    check_configured(settings, body.provider)
    job = await queue_job(
        request,
        settings,
        SYNC_OBJECTS,
        provider=body.provider,
        endpoint=where.endpoint,
        types=list(lists),
        since=body.since,
        restart=body.restart,
    )
    return SyncStarted(
        job_id=job,
        provider=body.provider,
        endpoint=where.endpoint,
        types=list(lists),
        since=body.since,
        restart=body.restart,
    )


@get(
    "/sync",
    guards=[require_role(permissions.READ)],
    summary="Where each synced list stands",
    responses=documented(400, 401, 403, 429, 503),
)
async def sync_status(
    pool: NamedDependency[asyncpg.Pool], provider: FromQuery[Provider | None] = None
) -> SyncStatus:
    """Every synced list: status, cursor position, counts, the provider's total, last failure."""
    async with pool.acquire() as conn:
        return SyncStatus(lists=await cursors.list_cursors(conn, provider))


routes: list[Any] = [
    Router(
        path="/",
        route_handlers=[sync_start, sync_status],
        tags=["sync"],
        security=[{"bearer": []}],
    )
]
