"""Deliveries: search the log, open one delivery, download its exact bytes, replay it.

The search and the delivery page read through :mod:`audit.repository` (the functions behind
``GET /audit/deliveries`` and ``GET /audit/deliveries/{id}``): the same filters, the same keyset
pages (newest first here), the same redacted headers. Replaying goes through
:func:`processors.service.process_delivery`, the function ``ledgerhook replay --delivery`` runs:
a dead-lettered or unprocessed delivery is applied again, a settled one is left as it is.
"""

from __future__ import annotations

from typing import Annotated, Any

import asyncpg
import msgspec
from litestar import Request, Response, get, post
from litestar.di import NamedDependency
from litestar.params import Parameter
from litestar.response import Redirect, Template

from audit import permissions
from audit.checkpoints import log_origin, public_key
from audit.errors import InvalidQuery
from audit.proofs import build_bundle
from audit.repository import get_delivery, get_raw, list_deliveries
from ledgerhook.console import forms, seams
from ledgerhook.console.auth import ROLE
from ledgerhook.console.bodies import body_view
from ledgerhook.console.errors import BadForm
from ledgerhook.console.render import page
from ledgerhook.settings import Settings
from processors.repository import TABLES
from processors.service import process_delivery

__all__ = ["handlers"]

PAGE_SIZE = 50
DeliveryId = Annotated[int, Parameter(ge=1, le=2**63 - 1)]


@get("/deliveries", name="console_deliveries")
async def deliveries(
    request: Request[Any, Any, Any], pool: NamedDependency[asyncpg.Pool]
) -> Template:
    params = request.query_params
    values = forms.values(params, forms.DELIVERY_FIELDS)
    error = None
    result = None
    try:
        search = forms.delivery_search(params)
        async with pool.acquire() as conn:
            result = await list_deliveries(
                conn,
                search.filter,
                cursor=search.cursor,
                limit=PAGE_SIZE,
                order="desc",
                with_processing=True,
            )
    except (BadForm, InvalidQuery) as exc:
        error = str(exc)
    return page(
        request,
        "deliveries.html",
        status=400 if error else 200,
        title="Deliveries",
        nav="deliveries",
        values=values,
        error=error,
        result=result,
        providers=forms.PROVIDERS,
        outcomes=forms.OUTCOMES,
        origins=forms.ORIGINS,
        searched=any(values.values()),
    )


def _object_kind(object_type: str | None) -> str | None:
    """The console's object page kind (a state table name) for a processed object type."""
    return TABLES.get(object_type) if object_type else None  # type: ignore[call-overload]


@get("/deliveries/{delivery_id:int}", name="console_delivery")
async def delivery(
    request: Request[Any, Any, Any],
    pool: NamedDependency[asyncpg.Pool],
    delivery_id: DeliveryId,
) -> Template:
    settings: Settings = request.app.state.settings
    async with pool.acquire() as conn:
        d = await get_delivery(conn, delivery_id)
        body, _ = await get_raw(conn, delivery_id)
        proof = await seams.inclusion_proof(
            conn,
            delivery_id,
            origin=log_origin(settings),
            public_key=public_key(request.app.state.signer),
        )
    processing = d.processing
    return page(
        request,
        "delivery.html",
        title=f"Delivery {d.id}",
        nav="deliveries",
        d=d,
        body=body_view(body),
        proof=proof,
        object_kind=_object_kind(processing.object_type if processing else None),
        replayed=request.query_params.get("replayed") == "1",
    )


@get("/deliveries/{delivery_id:int}/raw", name="console_delivery_raw")
async def delivery_raw(
    pool: NamedDependency[asyncpg.Pool], delivery_id: DeliveryId
) -> Response[bytes]:
    """The exact bytes, as a download: never rendered by the browser (attachment, octet-stream,
    nosniff, and a sandboxing CSP in case it is opened anyway)."""
    async with pool.acquire() as conn:
        body, _ = await get_raw(conn, delivery_id)
    return Response(
        content=body,
        media_type="application/octet-stream",
        headers={
            "Content-Disposition": f'attachment; filename="delivery-{delivery_id}.body"',
            "Content-Security-Policy": "sandbox; default-src 'none'",
        },
    )


@get("/deliveries/{delivery_id:int}/proof.json", name="console_delivery_proof")
async def delivery_proof(
    request: Request[Any, Any, Any], pool: NamedDependency[asyncpg.Pool], delivery_id: DeliveryId
) -> Response[bytes]:
    """The delivery's proof bundle (as ``GET /audit/deliveries/{id}/proof``), as a download to
    check offline with ``ledgerhook verify-proof``."""
    settings: Settings = request.app.state.settings
    async with pool.acquire() as conn, conn.transaction(isolation="repeatable_read"):
        bundle = await build_bundle(
            conn,
            delivery_id,
            origin=log_origin(settings),
            public_key=public_key(request.app.state.signer),
        )
    return Response(
        content=msgspec.json.format(msgspec.json.encode(bundle), indent=2),
        media_type="application/json",
        headers={
            "Content-Disposition": f'attachment; filename="delivery-{delivery_id}.proof.json"',
            "Content-Security-Policy": "sandbox; default-src 'none'",
        },
    )


@post(
    "/deliveries/{delivery_id:int}/replay",
    name="console_delivery_replay",
    opt={ROLE: permissions.REPLAY},
    status_code=303,
)
async def replay(pool: NamedDependency[asyncpg.Pool], delivery_id: DeliveryId) -> Redirect:
    async with pool.acquire() as conn:
        await process_delivery(conn, delivery_id)
    return Redirect(f"/console/deliveries/{delivery_id}?replayed=1", status_code=303)


handlers = [deliveries, delivery, delivery_raw, delivery_proof, replay]
