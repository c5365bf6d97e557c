"""HTTP routes of the `audit` package: the auditors' read API over the append-only log.

Thin handlers: parameters are typed (Litestar validates them and answers 400 with the reason),
unknown parameter names are refused (a typo must not silently widen a query), and the work is
done by :mod:`audit.repository`, :mod:`audit.export` and :mod:`audit.verify`. Every route needs a
bearer token (:mod:`audit.auth`); all are reads, so ``auditor`` is enough. Nothing here can change
the log: the application role has no UPDATE or DELETE on it.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from dataclasses import dataclass
from datetime import datetime
from typing import Annotated, Any, Literal

import asyncpg
import msgspec
from litestar import Request, Response, Router, get
from litestar.di import NamedDependency, Provide
from litestar.openapi.spec import OpenAPIMediaType, OpenAPIResponse, OpenAPIType, Operation, Schema
from litestar.params import FromPath, FromQuery, QueryParameter
from litestar.response import Stream

from audit import permissions
from audit.auth import require_role
from audit.checkpoints import log_origin, public_key
from audit.errors import InvalidQuery
from audit.export import ExportFormat, export_chunks
from audit.repository import (
    AccessPage,
    Delivery,
    DeliveryFilter,
    DeliveryPage,
    Outcome,
    RejectionFilter,
    RejectionPage,
    TimelineEntry,
    check_filter,
    get_delivery,
    get_raw,
    list_access,
    list_deliveries,
    list_rejections,
    object_timeline,
    page_size,
)
from ledgerhook.http_errors import documented
from ledgerhook.settings import Settings

__all__ = ["routes"]

Provider = Literal["stripe", "chargebee"]
Order = Literal["asc", "desc"]

# Error answers of the read routes, for the OpenAPI schema.
_READ = documented(400, 401, 403, 429, 503)
_READ_ONE = documented(400, 401, 403, 404, 429, 503)

_FILTER_PARAMS = frozenset(DeliveryFilter.__struct_fields__)
_PAGE_PARAMS = frozenset({"limit", "cursor", "order"})


def _only(request: Request[Any, Any, Any], allowed: frozenset[str]) -> None:
    unknown = sorted(set(request.query_params.keys()) - allowed)
    if unknown:
        raise InvalidQuery(
            f"unknown query parameter(s): {', '.join(unknown)}; allowed: {', '.join(sorted(allowed))}"
        )


def provide_delivery_filter(
    *,
    provider: FromQuery[Provider | None] = None,
    endpoint: FromQuery[str | None] = None,
    account: FromQuery[str | None] = None,
    event_type: FromQuery[str | None] = None,
    event_id: FromQuery[str | None] = None,
    object_id: FromQuery[str | None] = None,
    origin: FromQuery[Literal["webhook", "reconciliation", "sync"] | None] = None,
    received_from: Annotated[
        datetime | None, QueryParameter(description="received at or after (ISO 8601)")
    ] = None,
    received_to: Annotated[
        datetime | None, QueryParameter(description="received before (ISO 8601)")
    ] = None,
    event_from: Annotated[
        datetime | None, QueryParameter(description="provider event time at or after (ISO 8601)")
    ] = None,
    event_to: Annotated[
        datetime | None, QueryParameter(description="provider event time before (ISO 8601)")
    ] = None,
    verification: Annotated[
        str | None, QueryParameter(description="scheme (stripe-v1) or full verification value")
    ] = None,
    duplicate: Annotated[
        bool | None, QueryParameter(description="true: only repeat deliveries; false: only firsts")
    ] = None,
    outcome: Annotated[
        Outcome | None,
        QueryParameter(description="what the processors did with it, or 'unprocessed'"),
    ] = None,
) -> DeliveryFilter:
    f = DeliveryFilter(
        provider=provider,
        endpoint=endpoint,
        account=account,
        event_type=event_type,
        event_id=event_id,
        object_id=object_id,
        origin=origin,
        received_from=received_from,
        received_to=received_to,
        event_from=event_from,
        event_to=event_to,
        verification=verification,
        duplicate=duplicate,
        outcome=outcome,
    )
    check_filter(f)
    return f


@get(
    "/deliveries",
    dependencies={"f": Provide(provide_delivery_filter, sync_to_thread=False)},
    summary="List deliveries",
    responses=_READ,
)
async def deliveries(
    *,
    request: Request[Any, Any, Any],
    settings: NamedDependency[Settings],
    pool: NamedDependency[asyncpg.Pool],
    f: NamedDependency[DeliveryFilter],
    limit: Annotated[int | None, QueryParameter(description="page size (max: settings)")] = None,
    cursor: Annotated[
        str | None, QueryParameter(description="next_cursor of the previous page")
    ] = None,
    order: FromQuery[Order] = "asc",
) -> DeliveryPage:
    """Deliveries matching every given filter, in chain order, one keyset page at a time."""
    _only(request, _FILTER_PARAMS | _PAGE_PARAMS)
    n = page_size(limit, settings.api.default_page_size, settings.api.max_page_size)
    async with pool.acquire() as conn:
        return await list_deliveries(
            conn, f, cursor=cursor, limit=n, order=order, with_processing=True
        )


@get("/deliveries/{delivery_id:int}", summary="Get one delivery", responses=_READ_ONE)
async def delivery(
    request: Request[Any, Any, Any], pool: NamedDependency[asyncpg.Pool], delivery_id: FromPath[int]
) -> Delivery:
    """One delivery: metadata, verification, processing outcome, chain position and hashes."""
    _only(request, frozenset())
    async with pool.acquire() as conn:
        return await get_delivery(conn, delivery_id)


@get(
    "/deliveries/{delivery_id:int}/raw",
    media_type="application/octet-stream",
    summary="Get a delivery's raw body",
    responses=_READ_ONE,
)
async def delivery_raw(
    request: Request[Any, Any, Any], pool: NamedDependency[asyncpg.Pool], delivery_id: FromPath[int]
) -> Response[bytes]:
    """The exact bytes as received, with the content type they arrived with."""
    _only(request, frozenset())
    async with pool.acquire() as conn:
        body, content_type = await get_raw(conn, delivery_id)
    return Response(
        content=body,
        media_type=content_type or "application/octet-stream",
        headers={"X-Content-Type-Options": "nosniff", "Content-Security-Policy": "sandbox"},
    )


class Timeline(msgspec.Struct, frozen=True, kw_only=True):
    provider: str
    object_id: str
    entries: list[TimelineEntry]


@get(
    "/objects/{provider:str}/{object_id:str}/timeline",
    summary="Timeline of one billing object",
    responses=_READ,
)
async def timeline(
    request: Request[Any, Any, Any],
    pool: NamedDependency[asyncpg.Pool],
    provider: FromPath[str],
    object_id: FromPath[str],
) -> Timeline:
    """Every delivery that touched the object, in provider-event order, with its effect."""
    _only(request, frozenset())
    if provider not in ("stripe", "chargebee"):
        raise InvalidQuery("provider: must be 'stripe' or 'chargebee'")
    if not 0 < len(object_id) <= 255:
        raise InvalidQuery("object_id: must be 1 to 255 characters")
    async with pool.acquire() as conn:
        entries = await object_timeline(conn, provider, object_id)
    return Timeline(provider=provider, object_id=object_id, entries=entries)


@get("/rejections", summary="List rejected requests", responses=_READ)
async def rejections(
    *,
    request: Request[Any, Any, Any],
    settings: NamedDependency[Settings],
    pool: NamedDependency[asyncpg.Pool],
    provider: FromQuery[Provider | None] = None,
    endpoint: FromQuery[str | None] = None,
    status: Annotated[int | None, QueryParameter(ge=100, le=599)] = None,
    received_from: FromQuery[datetime | None] = None,
    received_to: FromQuery[datetime | None] = None,
    limit: FromQuery[int | None] = None,
    cursor: FromQuery[str | None] = None,
    order: FromQuery[Order] = "asc",
) -> RejectionPage:
    """The rejected-delivery log (bad signatures, malformed bodies...), keyset-paginated."""
    _only(
        request,
        _PAGE_PARAMS | {"provider", "endpoint", "status", "received_from", "received_to"},
    )
    n = page_size(limit, settings.api.default_page_size, settings.api.max_page_size)
    f = RejectionFilter(
        provider=provider,
        endpoint=endpoint,
        status=status,
        received_from=received_from,
        received_to=received_to,
    )
    if received_from and received_to and received_from >= received_to:
        raise InvalidQuery("received_from must be before received_to")
    async with pool.acquire() as conn:
        return await list_rejections(conn, f, cursor=cursor, limit=n, order=order)


@dataclass
class _ExportOperation(Operation):
    """The export answers in one of two media types; the schema must name both."""

    def __post_init__(self) -> None:
        text = OpenAPIMediaType(schema=Schema(type=OpenAPIType.STRING))
        self.responses = {
            **(self.responses or {}),
            "200": OpenAPIResponse(
                description="JSON Lines (format=jsonl) or CSV (format=csv), proved against the "
                "latest signed checkpoint",
                content={"application/x-ndjson": text, "text/csv": text},
            ),
        }


@get(
    "/export",
    dependencies={"f": Provide(provide_delivery_filter, sync_to_thread=False)},
    operation_class=_ExportOperation,
    summary="Export the audit log",
    responses=_READ,
)
async def export(
    request: Request[Any, Any, Any],
    settings: NamedDependency[Settings],
    pool: NamedDependency[asyncpg.Pool],
    f: NamedDependency[DeliveryFilter],
    format: FromQuery[ExportFormat] = "jsonl",
) -> Stream:
    """Streaming export (JSON Lines or CSV) of the leaves of the latest signed checkpoint, with
    bodies, leaf hashes and (filtered) inclusion proofs, verifiable offline with
    ``ledgerhook verify --export FILE --public-key KEY``."""
    _only(request, _FILTER_PARAMS | {"format"})
    origin, key = log_origin(settings), public_key(request.app.state.signer)

    async def chunks() -> AsyncIterator[bytes]:
        async with pool.acquire() as conn:
            async for chunk in export_chunks(conn, f, format, origin=origin, public_key=key):
                yield chunk

    media = "application/x-ndjson" if format == "jsonl" else "text/csv; charset=utf-8"
    return Stream(
        chunks(),
        media_type=media,
        headers={"Content-Disposition": f'attachment; filename="ledgerhook-export.{format}"'},
    )


@get("/access-log", summary="Read the access log", responses=_READ)
async def access_log(
    *,
    request: Request[Any, Any, Any],
    settings: NamedDependency[Settings],
    pool: NamedDependency[asyncpg.Pool],
    token_name: FromQuery[str | None] = None,
    decision: FromQuery[Literal["allowed", "forbidden", "unauthenticated"] | None] = None,
    limit: FromQuery[int | None] = None,
    cursor: FromQuery[str | None] = None,
) -> AccessPage:
    """Who used the API, for what, when (newest first). Reading it is itself recorded."""
    _only(request, frozenset({"token_name", "decision", "limit", "cursor"}))
    n = page_size(limit, settings.api.default_page_size, settings.api.max_page_size)
    async with pool.acquire() as conn:
        return await list_access(
            conn, token_name=token_name, decision=decision, cursor=cursor, limit=n
        )


routes: list[Any] = [
    Router(
        path="/audit",
        route_handlers=[
            deliveries,
            delivery,
            delivery_raw,
            timeline,
            rejections,
            export,
            access_log,
        ],
        guards=[require_role(permissions.READ)],
        tags=["audit"],
        security=[{"bearer": []}],
    )
]
