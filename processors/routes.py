"""HTTP routes of the `processors` package: the billing-state read API for portals and backoffice.

All reads, so ``auditor`` is enough (:mod:`audit.auth`). Thin handlers over
:mod:`processors.queries`; unknown query parameters are refused (a typo must not silently widen a
list), and errors are mapped to HTTP in ``ledgerhook.app``. Every row carries
``last_delivery_id`` and every history row its ``delivery_id``: the way from a number back to
the raw webhook (``GET /audit/deliveries/{id}``).
"""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Annotated, Any, Literal, get_args

import asyncpg
import msgspec
from litestar import Request, Router, get
from litestar.di import NamedDependency
from litestar.params import FromPath, FromQuery, Parameter

from audit import permissions
from audit.auth import require_role
from ledgerhook.http_errors import documented
from ledgerhook.settings import Settings
from processors.coexist.model import Ref
from processors.coexist.queries import Coexistence, coexistence
from processors.errors import InvalidStateQuery
from processors.queries import (
    ChangeRow,
    HistoryRow,
    StateFilter,
    StatePage,
    StateRow,
    get_object,
    history,
    list_objects,
    subscription_changes,
)

__all__ = ["routes"]

Provider = Literal["stripe", "chargebee"]
Kind = Literal["customers", "subscriptions", "invoices", "payments", "refunds", "credit_notes"]
_LIST_PARAMS = frozenset({"provider", "account", "status", "customer", "limit", "cursor"})
_ONE_PARAMS = frozenset({"account"})


class SubscriptionDetail(msgspec.Struct, frozen=True, kw_only=True):
    subscription: StateRow
    # Classified business changes (created, upgraded, canceled, ...) with their MRR delta.
    changes: list[ChangeRow]
    # Every update any event made or tried to make (stale ones included).
    history: list[HistoryRow]
    # Linked across providers (a migration): the authoritative side and both sides.
    coexistence: Coexistence | None = None


class ObjectDetail(msgspec.Struct, frozen=True, kw_only=True):
    object: StateRow
    history: list[HistoryRow]
    # Customers linked across providers: the authoritative side and both sides.
    coexistence: Coexistence | None = None


# Error answers of the read routes, for the OpenAPI schema.
_READ = documented(400, 401, 403, 429, 503)
_READ_ONE = documented(400, 401, 403, 404, 429, 503)


def _only(request: Request[Any, Any, Any], allowed: frozenset[str]) -> None:
    unknown = sorted(set(request.query_params.keys()) - allowed)
    if unknown:
        raise InvalidStateQuery(
            f"unknown query parameter(s): {', '.join(unknown)}; allowed: {', '.join(sorted(allowed))}"
        )


async def _detail(
    pool: asyncpg.Pool, kind: str, provider: str, object_id: str, account: str | None
) -> ObjectDetail:
    async with pool.acquire() as conn:
        row = await get_object(conn, kind, provider, object_id, account)
        hist = await history(conn, row.object_type, row.provider, row.account, row.id)
        linked = None
        if kind == "customers":
            linked = await _coexistence(conn, "customer", row)
    return ObjectDetail(object=row, history=hist, coexistence=linked)


async def _coexistence(conn: Any, kind: str, row: StateRow) -> Coexistence | None:
    ref = Ref(provider=row.provider, account=row.account, id=row.id)
    return await coexistence(conn, kind, ref, int(datetime.now(UTC).timestamp()))


@get(
    "/state/customers/{provider:str}/{object_id:str}",
    guards=[require_role(permissions.READ)],
    summary="Get a customer",
    responses=_READ_ONE,
)
async def customer_detail(
    request: Request[Any, Any, Any],
    pool: NamedDependency[asyncpg.Pool],
    provider: FromPath[Provider],
    object_id: FromPath[str],
    account: FromQuery[str | None] = None,
) -> ObjectDetail:
    """One customer and every update made to it (`?account=` when the id exists in several
    accounts of the provider); when linked across providers, who is authoritative and both
    sides."""
    _only(request, _ONE_PARAMS)
    return await _detail(pool, "customers", provider, object_id, account)


@get(
    "/state/invoices/{provider:str}/{object_id:str}",
    guards=[require_role(permissions.READ)],
    summary="Get an invoice",
    responses=_READ_ONE,
)
async def invoice_detail(
    request: Request[Any, Any, Any],
    pool: NamedDependency[asyncpg.Pool],
    provider: FromPath[Provider],
    object_id: FromPath[str],
    account: FromQuery[str | None] = None,
) -> ObjectDetail:
    """One invoice and every update made to it (`?account=` when the id exists in several
    accounts of the provider)."""
    _only(request, _ONE_PARAMS)
    return await _detail(pool, "invoices", provider, object_id, account)


@get(
    "/state/subscriptions/{provider:str}/{object_id:str}",
    guards=[require_role(permissions.READ)],
    summary="Get a subscription",
    responses=_READ_ONE,
)
async def subscription_detail(
    request: Request[Any, Any, Any],
    pool: NamedDependency[asyncpg.Pool],
    provider: FromPath[Provider],
    object_id: FromPath[str],
    account: FromQuery[str | None] = None,
) -> SubscriptionDetail:
    """One subscription with its classified change history (MRR deltas) and update history;
    when it is linked across providers, who is authoritative and both sides."""
    _only(request, _ONE_PARAMS)
    async with pool.acquire() as conn:
        row = await get_object(conn, "subscriptions", provider, object_id, account)
        changes = await subscription_changes(conn, row.provider, row.account, row.id)
        hist = await history(conn, "subscription", row.provider, row.account, row.id)
        linked = await _coexistence(conn, "subscription", row)
    return SubscriptionDetail(subscription=row, changes=changes, history=hist, coexistence=linked)


# One static path per collection: a "/state/{kind}" pattern would lose to the static
# "/state/subscriptions/..." prefix of the detail routes in Litestar's router.
@get(
    [f"/state/{kind}" for kind in get_args(Kind)],
    guards=[require_role(permissions.READ)],
    summary="List billing objects of one kind",
    responses=_READ,
)
async def state_list(
    *,
    request: Request[Any, Any, Any],
    settings: NamedDependency[Settings],
    pool: NamedDependency[asyncpg.Pool],
    provider: FromQuery[Provider | None] = None,
    account: FromQuery[str | None] = None,
    status: FromQuery[str | None] = None,
    customer: Annotated[str | None, Parameter(description="customer id")] = None,
    limit: Annotated[int | None, Parameter(ge=1, description="page size")] = None,
    cursor: Annotated[str | None, Parameter(description="next_cursor of the previous page")] = None,
) -> StatePage:
    """Customers, subscriptions, invoices, payments, refunds or credit notes (the last path
    segment) matching every given filter, ordered by (provider, account, id), one keyset page at
    a time: pass `next_cursor` back as `cursor`."""
    _only(request, _LIST_PARAMS)
    kind = request.url.path.rstrip("/").rsplit("/", 1)[-1]
    n = min(limit or settings.api.default_page_size, settings.api.max_page_size)
    f = StateFilter(provider=provider, account=account, status=status, customer=customer)
    async with pool.acquire() as conn:
        return await list_objects(conn, kind, f, cursor=cursor, limit=n)


routes: list[Any] = [
    Router(
        path="/",
        route_handlers=[customer_detail, invoice_detail, subscription_detail, state_list],
        tags=["state"],
        security=[{"bearer": []}],
    )
]
