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

from audit.auth import require_role
from audit.checkpoints import Checkpoint, list_checkpoints, load_key
from audit.errors import InvalidQuery
from audit.export import ExportFormat, export_chunks
from audit.repository import (
    AccessPage,
    Delivery,
    DeliveryFilter,
    DeliveryPage,
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
from audit.verify import verify_chain
from ledgerhook.settings import Settings

__all__ = ["routes"]

Provider = Literal["stripe", "chargebee"]
Order = Literal["asc", "desc"]

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
    )
    check_filter(f)
    return f


@get("/deliveries", dependencies={"f": Provide(provide_delivery_filter, sync_to_thread=False)})
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


@get("/deliveries/{delivery_id:int}")
async def delivery(
    request: Request[Any, Any, Any], pool: NamedDependency[asyncpg.Pool], delivery_id: FromPath[int]
) -> Delivery:
    """One delivery: metadata, verification, processing outcome, chain position and hashes."""
    _only(request, frozenset())
    async with pool.acquire() as conn:
        return await get_delivery(conn, delivery_id)


@get("/deliveries/{delivery_id:int}/raw", media_type="application/octet-stream")
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


@get("/objects/{provider:str}/{object_id:str}/timeline")
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


@get("/rejections")
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
                description="JSON Lines (format=jsonl) or CSV (format=csv), ending with the chain "
                "head and the latest signed checkpoint",
                content={"application/x-ndjson": text, "text/csv": text},
            ),
        }


@get(
    "/export",
    dependencies={"f": Provide(provide_delivery_filter, sync_to_thread=False)},
    operation_class=_ExportOperation,
)
async def export(
    request: Request[Any, Any, Any],
    pool: NamedDependency[asyncpg.Pool],
    f: NamedDependency[DeliveryFilter],
    format: FromQuery[ExportFormat] = "jsonl",
) -> Stream:
    """Streaming export (JSON Lines or CSV) with body and chain hashes, chain head and the latest
    signed checkpoint, verifiable offline with ``ledgerhook verify --export FILE``."""
    _only(request, _FILTER_PARAMS | {"format"})

    async def chunks() -> AsyncIterator[bytes]:
        async with pool.acquire() as conn:
            async for chunk in export_chunks(conn, f, format):
                yield chunk

    media = "application/x-ndjson" if format == "jsonl" else "text/csv; charset=utf-8"
    return Stream(
        chunks(),
        media_type=media,
        headers={"Content-Disposition": f'attachment; filename="ledgerhook-export.{format}"'},
    )


class VerifyOut(msgspec.Struct, frozen=True, kw_only=True):
    ok: bool
    checked: int
    head_id: int
    head_hash: str
    started_after: int
    checkpoints_checked: int
    first_bad_id: int | None
    reason: str | None
    summary: str


@get("/verify")
async def verify(
    request: Request[Any, Any, Any],
    settings: NamedDependency[Settings],
    pool: NamedDependency[asyncpg.Pool],
    from_checkpoint: Annotated[int | None, QueryParameter(ge=1)] = None,
) -> VerifyOut:
    """Walk the hash chain (from a signed checkpoint if given) and report the first broken row."""
    _only(request, frozenset({"from_checkpoint"}))
    key = load_key(settings)
    async with pool.acquire() as conn:
        result = await verify_chain(conn, key=key, from_checkpoint=from_checkpoint)  # type: ignore[arg-type]
    return VerifyOut(
        ok=result.ok,
        checked=result.checked,
        head_id=result.head_id,
        head_hash=result.head_hash.hex(),
        started_after=result.started_after,
        checkpoints_checked=result.checkpoints_checked,
        first_bad_id=result.first_bad_id,
        reason=result.reason,
        summary=result.describe(),
    )


class CheckpointOut(msgspec.Struct, frozen=True, kw_only=True):
    id: int
    created_at: datetime
    delivery_id: int
    chain_hash: str
    row_count: int
    key_id: str
    signature: str

    @classmethod
    def of(cls, cp: Checkpoint) -> CheckpointOut:
        return cls(
            id=cp.id,
            created_at=cp.created_at,
            delivery_id=cp.delivery_id,
            chain_hash=cp.chain_hash.hex(),
            row_count=cp.row_count,
            key_id=cp.key_id,
            signature=cp.signature.hex(),
        )


@get("/checkpoints")
async def checkpoints(
    request: Request[Any, Any, Any],
    pool: NamedDependency[asyncpg.Pool],
    limit: Annotated[int, QueryParameter(ge=1, le=1000)] = 100,
) -> list[CheckpointOut]:
    """Signed checkpoints of the chain head, newest first (an auditor may copy them out)."""
    _only(request, frozenset({"limit"}))
    async with pool.acquire() as conn:
        return [CheckpointOut.of(cp) for cp in await list_checkpoints(conn, limit=limit)]  # type: ignore[arg-type]


@get("/access-log")
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
            verify,
            checkpoints,
            access_log,
        ],
        guards=[require_role("auditor")],
        tags=["audit"],
        security=[{"bearer": []}],
    )
]
