"""HTTP routes of provider migration (``/migration``), collected by ``ledgerhook.app``.

Roles (:mod:`audit.auth`): reading links, accounts, cohorts and reports needs ``auditor``;
running a verification needs ``oncall`` (it only records a run); importing links or prices,
unlinking, and planning, cutting over or rolling back need ``admin``, because they change which
provider Ledgerhook treats as the one that bills, and so what the coexistence alerts say. The
actor recorded in every history row is the token's name. Errors are mapped to HTTP in
``ledgerhook.app`` (bad input 400, unknown 404, conflict 409); a refused request writes nothing.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from datetime import UTC, datetime
from typing import Annotated, Any, Literal, get_args

import asyncpg
import msgspec
from litestar import Request, Response, Router, get, post
from litestar.di import NamedDependency
from litestar.params import FromPath, FromQuery, QueryParameter
from litestar.response import Stream

from audit import permissions
from audit.auth import principal_of, require_role
from ledgerhook.http_errors import documented
from ledgerhook.settings import Settings
from processors.coexist import queries
from processors.coexist.cutover import change_authority
from processors.coexist.errors import InvalidChange, InvalidImport
from processors.coexist.imports import Format, parse_links, parse_prices
from processors.coexist.links import ImportResult, default_accounts, import_links, unlink
from processors.coexist.model import Action, Ref
from processors.coexist.price_store import import_prices
from processors.coexist.render import results_csv_header, results_csv_rows
from processors.coexist.verify import AuthorityView, RunReport, run_verification, tolerances_of

__all__ = ["routes"]

Provider = Literal["stripe", "chargebee"]
Kind = Literal["customer", "subscription"]
MAX_NOTE = 2000
_NAME = r"^[A-Za-z0-9][A-Za-z0-9._:@-]*$"
OptionalName = Annotated[str | None, QueryParameter(min_length=1, max_length=100, pattern=_NAME)]
Limit = Annotated[int | None, QueryParameter(ge=1, description="page size")]


class ChangeBody(msgspec.Struct, frozen=True, kw_only=True, forbid_unknown_fields=True):
    # ISO 8601 with a time zone, or unix seconds; a plan needs it, the others default to now.
    at: datetime | int | None = None
    note: str | None = None


class UnlinkBody(msgspec.Struct, frozen=True, kw_only=True, forbid_unknown_fields=True):
    kind: Kind
    provider: Provider
    id: str
    account: str | None = None
    note: str | None = None


class AuthorityChange(msgspec.Struct, frozen=True, kw_only=True):
    id: int
    cohort: str
    billing_account: str | None
    action: str
    effective_at: int
    actor: str
    recorded_at: int
    note: str | None
    # The authority that results, as a report shows it.
    authority: AuthorityView


class ResultPage(msgspec.Struct, frozen=True, kw_only=True):
    run: queries.RunRow
    items: list[queries.ResultRow]
    next_cursor: str | None


_change = msgspec.json.Decoder(ChangeBody)
_unlink = msgspec.json.Decoder(UnlinkBody)


def _now() -> int:
    return int(datetime.now(UTC).timestamp())


def _format(request: Request[Any, Any, Any], fmt: str | None) -> Format:
    if fmt in ("csv", "json"):
        return fmt  # type: ignore[return-value]
    if fmt is not None:
        raise InvalidImport(f"format {fmt!r}: use csv or json")
    content_type = request.headers.get("content-type", "").split(";")[0].strip().lower()
    return "json" if content_type.endswith("json") else "csv"


def _only(request: Request[Any, Any, Any], allowed: frozenset[str]) -> None:
    unknown = sorted(set(request.query_params.keys()) - allowed)
    if unknown:
        raise InvalidImport(f"unknown query parameter(s): {', '.join(unknown)}")


@post(
    "/migration/links",
    guards=[require_role(permissions.MIGRATE)],
    status_code=200,
    summary="Import migration links",
    responses=documented(400, 401, 403, 409, 429, 503),
)
async def links_import(
    request: Request[Any, Any, Any],
    settings: NamedDependency[Settings],
    pool: NamedDependency[asyncpg.Pool],
    format: FromQuery[Literal["csv", "json"] | None] = None,
    cohort: Annotated[
        str | None,
        QueryParameter(
            min_length=1, max_length=100, pattern=_NAME, description="cohort of lines naming none"
        ),
    ] = None,
) -> ImportResult:
    """Import links (CSV with a header, or JSON); all or nothing. Bad line: 400 naming it;
    a link contradicting an existing one: 409."""
    _only(request, frozenset({"format", "cohort"}))
    fmt = _format(request, format)
    lines = parse_links(
        await request.body(),
        fmt,
        default_accounts=default_accounts(settings),
        default_cohort=cohort,
    )
    async with pool.acquire() as conn:
        return await import_links(
            conn,
            lines,
            actor=principal_of(request).name,
            origin="api",
            source="POST /migration/links",
            fmt=fmt,
        )


@get(
    "/migration/links",
    guards=[require_role(permissions.READ)],
    summary="List migration links",
    responses=documented(400, 401, 403, 429, 503),
)
async def links_list(
    *,
    request: Request[Any, Any, Any],
    settings: NamedDependency[Settings],
    pool: NamedDependency[asyncpg.Pool],
    cohort: OptionalName = None,
    billing_account: OptionalName = None,
    limit: Limit = None,
    cursor: Annotated[
        str | None, QueryParameter(description="next_cursor of the previous page")
    ] = None,
) -> queries.LinkPage:
    """Current links, oldest first, keyset-paged."""
    _only(request, frozenset({"cohort", "billing_account", "limit", "cursor"}))
    n = min(limit or settings.api.default_page_size, settings.api.max_page_size)
    async with pool.acquire() as conn:
        return await queries.list_links(
            conn, cohort=cohort, billing_account=billing_account, cursor=cursor, limit=n
        )


@post(
    "/migration/links/unlink",
    guards=[require_role(permissions.MIGRATE)],
    status_code=200,
    summary="Remove a migration link",
    responses=documented(400, 401, 403, 404, 429, 503),
)
async def links_unlink(
    request: Request[Any, Any, Any],
    settings: NamedDependency[Settings],
    pool: NamedDependency[asyncpg.Pool],
) -> dict[str, int]:
    """Remove the link holding an object (either side): ``{"kind", "provider", "id"}``."""
    try:
        body = _unlink.decode(await request.body())
    except msgspec.DecodeError as exc:
        raise InvalidChange(
            f'body: {exc} (expected {{"kind": "customer", "provider": "stripe", "id": "..."}})'
        ) from None
    account = body.account or default_accounts(settings).get(body.provider)
    if not account:
        raise InvalidChange(f"account: required (no default {body.provider} endpoint account)")
    async with pool.acquire() as conn:
        link_id = await unlink(
            conn,
            body.kind,
            Ref(provider=body.provider, account=account, id=body.id),
            actor=principal_of(request).name,
            origin="api",
            note=(body.note or None) and body.note[:MAX_NOTE],
        )
    return {"unlinked": link_id}


@post(
    "/migration/prices",
    guards=[require_role(permissions.MIGRATE)],
    status_code=200,
    summary="Import the price map",
    responses=documented(400, 401, 403, 429, 503),
)
async def prices_import(
    request: Request[Any, Any, Any],
    pool: NamedDependency[asyncpg.Pool],
    format: FromQuery[Literal["csv", "json"] | None] = None,
) -> ImportResult:
    """Import price map entries (source price -> target price); a later entry replaces one."""
    _only(request, frozenset({"format"}))
    fmt = _format(request, format)
    lines = parse_prices(await request.body(), fmt)
    async with pool.acquire() as conn:
        return await import_prices(
            conn,
            lines,
            actor=principal_of(request).name,
            origin="api",
            source="POST /migration/prices",
            fmt=fmt,
        )


@get(
    "/migration/prices",
    guards=[require_role(permissions.READ)],
    summary="The price map",
    responses=documented(400, 401, 403, 429, 503),
)
async def prices_list(pool: NamedDependency[asyncpg.Pool]) -> list[dict[str, str]]:
    """The whole price map: every source price and the target price it maps to."""
    async with pool.acquire() as conn:
        rows = await conn.fetch(
            "SELECT source_provider, source_price, target_provider, target_price "
            "FROM coexist.prices ORDER BY 1, 2, 3"
        )
    return [dict(r) for r in rows]


@get(
    "/migration/accounts/{billing_account:str}",
    guards=[require_role(permissions.READ)],
    summary="A billing account's links and authority",
    responses=documented(400, 401, 403, 404, 429, 503),
)
async def account_get(
    pool: NamedDependency[asyncpg.Pool], billing_account: FromPath[str]
) -> queries.AccountDetail:
    """A billing account: its customer and subscription links, who is authoritative, and the
    full link and authority history."""
    async with pool.acquire() as conn:
        return await queries.account_detail(conn, billing_account, _now())


@get(
    "/migration/cohorts",
    guards=[require_role(permissions.READ)],
    summary="List migration cohorts",
    responses=documented(400, 401, 403, 429, 503),
)
async def cohorts_list(pool: NamedDependency[asyncpg.Pool]) -> list[queries.CohortRow]:
    """Every cohort: link counts, authority, the last verification run."""
    async with pool.acquire() as conn:
        return await queries.list_cohorts(conn, _now())


@get(
    "/migration/cohorts/{cohort:str}",
    guards=[require_role(permissions.READ)],
    summary="A migration cohort and its history",
    responses=documented(400, 401, 403, 404, 429, 503),
)
async def cohort_get(
    pool: NamedDependency[asyncpg.Pool], cohort: FromPath[str]
) -> queries.CohortDetail:
    """A cohort with its authority history, per-account overrides and recent runs."""
    async with pool.acquire() as conn:
        return await queries.cohort_detail(conn, cohort, _now())


def _at(value: datetime | int | None) -> int | None:
    if value is None:
        return None
    if isinstance(value, int):
        if not 0 <= value < 2**33:
            raise InvalidChange("at: unix seconds out of range")
        return value
    if value.tzinfo is None:
        raise InvalidChange("at: give a time zone (e.g. 2025-07-01T00:00:00Z)")
    return int(value.timestamp())


async def _authority_change(
    request: Request[Any, Any, Any],
    pool: asyncpg.Pool,
    *,
    cohort: str | None,
    billing_account: str | None,
) -> AuthorityChange:
    action: Action = request.url.path.rstrip("/").rsplit("/", 1)[-1]  # type: ignore[assignment]
    raw = await request.body()
    try:
        body = _change.decode(raw) if raw.strip() else ChangeBody()
    except msgspec.DecodeError as exc:
        raise InvalidChange(f'body: {exc} (expected {{"at": "...", "note": "..."}})') from None
    if body.note is not None and len(body.note) > MAX_NOTE:
        raise InvalidChange(f"note: at most {MAX_NOTE} characters")
    now = _now()
    async with pool.acquire() as conn:
        event = await change_authority(
            conn,
            action,
            cohort=cohort,
            billing_account=billing_account,
            effective_at=_at(body.at),
            now=now,
            actor=principal_of(request).name,
            origin="api",
            note=body.note,
        )
        if billing_account is not None:
            view = (await queries.account_detail(conn, billing_account, now)).authority
        else:
            view = (await queries.cohort_detail(conn, event.cohort, now)).cohort.authority
    return AuthorityChange(
        id=event.seq,
        cohort=event.cohort,
        billing_account=event.billing_account,
        action=event.action,
        effective_at=event.effective_at,
        actor=event.actor,
        recorded_at=event.recorded_at,
        note=event.note,
        authority=view,
    )


_ACTIONS: tuple[str, ...] = get_args(Action)


@post(
    [f"/migration/cohorts/{{cohort:str}}/{a}" for a in _ACTIONS],
    guards=[require_role(permissions.MIGRATE)],
    status_code=200,
    summary="Plan, cut over or roll back a cohort",
    responses=documented(400, 401, 403, 404, 409, 429, 503),
)
async def cohort_authority(
    request: Request[Any, Any, Any], pool: NamedDependency[asyncpg.Pool], cohort: FromPath[str]
) -> AuthorityChange:
    """Plan (``{"at": ...}``, in the future), cut over or roll back a cohort; optional note."""
    return await _authority_change(request, pool, cohort=cohort, billing_account=None)


@post(
    [f"/migration/accounts/{{billing_account:str}}/{a}" for a in _ACTIONS],
    guards=[require_role(permissions.MIGRATE)],
    status_code=200,
    summary="Plan, cut over or roll back one billing account",
    responses=documented(400, 401, 403, 404, 409, 429, 503),
)
async def account_authority(
    request: Request[Any, Any, Any],
    pool: NamedDependency[asyncpg.Pool],
    billing_account: FromPath[str],
) -> AuthorityChange:
    """The same for one billing account (overrides its cohort from then on)."""
    return await _authority_change(request, pool, cohort=None, billing_account=billing_account)


@post(
    "/migration/cohorts/{cohort:str}/verify",
    guards=[require_role(permissions.VERIFY_MIGRATION)],
    status_code=200,
    summary="Verify a cohort's linked pairs now",
    responses=documented(400, 401, 403, 404, 429, 503),
)
async def cohort_verify(
    request: Request[Any, Any, Any],
    settings: NamedDependency[Settings],
    pool: NamedDependency[asyncpg.Pool],
    cohort: FromPath[str],
) -> RunReport:
    """Verify every linked pair of the cohort now; the run is kept (``GET .../report``)."""
    async with pool.acquire() as conn:
        return await run_verification(
            conn,
            cohort,
            now=_now(),
            actor=principal_of(request).name,
            tolerances=tolerances_of(settings),
            page_size=settings.coexist.page_size,
        )


@get(
    "/migration/cohorts/{cohort:str}/report",
    guards=[require_role(permissions.READ)],
    summary="A cohort verification report",
    responses=documented(400, 401, 403, 404, 429, 503),
)
async def cohort_report(
    *,
    request: Request[Any, Any, Any],
    settings: NamedDependency[Settings],
    pool: NamedDependency[asyncpg.Pool],
    cohort: FromPath[str],
    run: Annotated[int | None, QueryParameter(ge=1, le=2**63 - 1, description="run id")] = None,
    format: FromQuery[Literal["json", "csv"]] = "json",
    verdict: FromQuery[Literal["mismatch", "explained"] | None] = None,
    limit: Limit = None,
    cursor: Annotated[str | None, QueryParameter(max_length=600)] = None,
) -> Response[Any]:
    """A run's report (the latest by default): summary, changes since the previous run, and
    every pair that is not a plain match (JSON pages, or all of them as CSV)."""
    _only(request, frozenset({"run", "format", "verdict", "limit", "cursor"}))
    async with pool.acquire() as conn:
        row = await queries.get_run(conn, run_id=run, cohort=None if run else cohort)
        if row.cohort != cohort:
            raise InvalidChange(f"run {row.id} belongs to cohort {row.cohort!r}")
        if format == "json":
            n = min(limit or settings.api.default_page_size, settings.api.max_page_size)
            items = await queries.result_page(
                conn, row.id, after=cursor or "", verdict=verdict, limit=n + 1
            )
            more = len(items) > n
            page = ResultPage(
                run=row, items=items[:n], next_cursor=items[n - 1].pair_key if more else None
            )
            return Response(page)
    pool_ = pool

    async def body() -> AsyncIterator[str]:
        async with pool_.acquire() as conn:
            yield results_csv_header()
            async for line in results_csv_rows(queries.iter_results(conn, row.id, verdict=verdict)):
                yield line

    return Stream(
        body(),
        media_type="text/csv",
        headers={"Content-Disposition": f'attachment; filename="{cohort}-run-{row.id}.csv"'},
    )


routes: list[Any] = [
    Router(
        path="/",
        route_handlers=[
            links_import,
            links_list,
            links_unlink,
            prices_import,
            prices_list,
            account_get,
            account_authority,
            cohorts_list,
            cohort_get,
            cohort_authority,
            cohort_verify,
            cohort_report,
        ],
        tags=["migration"],
        security=[{"bearer": []}],
    )
]
