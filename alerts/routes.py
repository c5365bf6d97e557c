"""HTTP routes of the `alerts` package, collected by `ledgerhook.app.route_handlers`.

Reads need ``auditor``; acknowledging and resolving need ``oncall`` (the actor recorded in the
history is the token's name); triggering a reconciliation or a drift check needs ``admin``. Handlers are thin: the
work is in :mod:`alerts.lifecycle`, :mod:`alerts.repository` and :mod:`alerts.reconcile`, whose
errors ``ledgerhook.app`` maps to 400/404/409/502.
"""

from __future__ import annotations

from typing import Annotated, Any, Literal

import asyncpg
import msgspec
from litestar import Request, Router, get, post
from litestar.di import NamedDependency
from litestar.params import FromQuery, Parameter

from alerts import lifecycle, oncall
from alerts.errors import InvalidAlertQuery
from alerts.lifecycle import Alert, AlertEvent
from alerts.model import RuleName, Severity
from alerts.reconcile import ReconcileSummary, reconcile
from alerts.repository import AlertFilter, AlertPage, list_alerts
from audit import permissions
from audit.auth import principal_of, require_role
from ledgerhook.http_errors import documented
from ledgerhook.jobs import CHECK_DRIFT
from ledgerhook.settings import Settings
from processors.model import ObjectType
from processors.sync.api import check_configured
from processors.sync.routes import queue_job
from processors.sync.runner import target

__all__ = ["routes"]

Status = Literal["open", "acknowledged", "resolved"]
Provider = Literal["stripe", "chargebee"]
# Path ids beyond bigint are a 400 from validation, not a database error.
AlertId = Annotated[int, Parameter(ge=1, le=2**63 - 1)]
_LIST_PARAMS = frozenset({"status", "rule", "severity", "provider", "limit", "cursor"})


class AlertDetail(msgspec.Struct, frozen=True, kw_only=True):
    alert: Alert
    history: list[AlertEvent]


class NoteBody(msgspec.Struct, frozen=True, kw_only=True, forbid_unknown_fields=True):
    note: str | None = None


class ReconcileBody(msgspec.Struct, frozen=True, kw_only=True, forbid_unknown_fields=True):
    provider: Provider
    since_seconds: int = 7200
    endpoint: str | None = None


class DriftBody(msgspec.Struct, frozen=True, kw_only=True, forbid_unknown_fields=True):
    provider: Provider
    endpoint: str | None = None
    # One state object type (default: all), and/or one object id.
    type: ObjectType | None = None
    object_id: str | None = None
    # Append the provider's copy through the pipeline where it differs.
    repair: bool = False


class DriftStarted(msgspec.Struct, frozen=True, kw_only=True):
    job_id: str
    provider: str
    endpoint: str
    type: str | None
    object_id: str | None
    repair: bool


_note = msgspec.json.Decoder(NoteBody)
_drift_body = msgspec.json.Decoder(DriftBody)
_reconcile_body = msgspec.json.Decoder(ReconcileBody)


def _only(request: Request[Any, Any, Any], allowed: frozenset[str]) -> None:
    unknown = sorted(set(request.query_params.keys()) - allowed)
    if unknown:
        raise InvalidAlertQuery(f"unknown query parameter(s): {', '.join(unknown)}")


async def _read_note(request: Request[Any, Any, Any]) -> str | None:
    body = await request.body()
    if not body.strip():
        return None
    try:
        note = _note.decode(body).note
    except msgspec.DecodeError as exc:
        raise InvalidAlertQuery(f'body: {exc} (expected {{"note": "..."}})') from None
    return note


@get(
    "/alerts",
    guards=[require_role(permissions.READ)],
    summary="List alerts",
    responses=documented(400, 401, 403, 429, 503),
)
async def alerts_list(
    *,
    request: Request[Any, Any, Any],
    settings: NamedDependency[Settings],
    pool: NamedDependency[asyncpg.Pool],
    status: FromQuery[Status | None] = None,
    rule: FromQuery[RuleName | None] = None,
    severity: FromQuery[Severity | None] = None,
    provider: FromQuery[Provider | None] = None,
    limit: Annotated[int | None, Parameter(ge=1, description="page size")] = None,
    cursor: Annotated[str | None, Parameter(description="next_cursor of the previous page")] = None,
) -> AlertPage:
    """Alerts matching every given filter, newest first, one keyset page at a time: pass
    `next_cursor` back as `cursor`."""
    _only(request, _LIST_PARAMS)
    n = min(limit or settings.api.default_page_size, settings.api.max_page_size)
    f = AlertFilter(status=status, rule=rule, severity=severity, provider=provider)
    async with pool.acquire() as conn:
        return await list_alerts(conn, f, cursor=cursor, limit=n)


@get(
    "/alerts/{alert_id:int}",
    guards=[require_role(permissions.READ)],
    summary="Get an alert and its history",
    responses=documented(400, 401, 403, 404, 429, 503),
)
async def alert_detail(
    request: Request[Any, Any, Any], pool: NamedDependency[asyncpg.Pool], alert_id: AlertId
) -> AlertDetail:
    """One alert with its full status history (who changed what, when, with which note)."""
    _only(request, frozenset())
    async with pool.acquire() as conn:
        alert = await lifecycle.get_alert(conn, alert_id)
        return AlertDetail(alert=alert, history=await lifecycle.history(conn, alert_id))


async def _change(
    request: Request[Any, Any, Any],
    settings: Settings,
    pool: asyncpg.Pool,
    alert_id: int,
    action: oncall.Action,
) -> Alert:
    """An on-call status change by the caller's token, with its note (see alerts.oncall)."""
    note = await _read_note(request)
    return await oncall.change_status(
        pool, settings, alert_id, action, actor=principal_of(request).name, note=note
    )


@post(
    "/alerts/{alert_id:int}/ack",
    guards=[require_role(permissions.ACKNOWLEDGE)],
    status_code=200,
    summary="Acknowledge an alert",
    responses=documented(400, 401, 403, 404, 409, 429, 503),
)
async def alert_ack(
    request: Request[Any, Any, Any],
    settings: NamedDependency[Settings],
    pool: NamedDependency[asyncpg.Pool],
    alert_id: AlertId,
) -> Alert:
    """Acknowledge an open alert (409 if it is not open), recorded under the token's name; the
    body `{"note": "..."}` is optional."""
    return await _change(request, settings, pool, alert_id, "acknowledge")


@post(
    "/alerts/{alert_id:int}/resolve",
    guards=[require_role(permissions.RESOLVE)],
    status_code=200,
    summary="Resolve an alert",
    responses=documented(400, 401, 403, 404, 409, 429, 503),
)
async def alert_resolve(
    request: Request[Any, Any, Any],
    settings: NamedDependency[Settings],
    pool: NamedDependency[asyncpg.Pool],
    alert_id: AlertId,
) -> Alert:
    """Resolve an open or acknowledged alert (409 if already resolved), recorded under the
    token's name; the body `{"note": "..."}` is optional."""
    return await _change(request, settings, pool, alert_id, "resolve")


@post(
    "/reconcile",
    guards=[require_role(permissions.RECONCILE)],
    status_code=200,
    summary="Reconcile with a provider's Events API now",
    responses=documented(
        400,
        401,
        403,
        429,
        502,
        503,
        s400="Invalid body, or the provider has no API credentials (`error`: invalid_parameter, "
        "not_configured).",
    ),
)
async def reconcile_now(
    request: Request[Any, Any, Any],
    settings: NamedDependency[Settings],
    pool: NamedDependency[asyncpg.Pool],
) -> ReconcileSummary:
    """List the provider's own events for the window (body `{"provider": "stripe",
    "since_seconds": 7200}`, optional `endpoint`), backfill and apply every one the audit log
    lacks, raise `missing_event` alerts, and answer the summary."""
    try:
        body = _reconcile_body.decode(await request.body())
    except msgspec.DecodeError as exc:
        raise InvalidAlertQuery(
            f'body: {exc} (expected {{"provider": "stripe"|"chargebee", "since_seconds": N}})'
        ) from None
    return await reconcile(
        pool, settings, body.provider, body.since_seconds, endpoint=body.endpoint
    )


@post(
    "/drift",
    guards=[require_role(permissions.SYNC)],
    status_code=202,
    summary="Check state against a provider now",
    responses=documented(400, 401, 403, 429, 503),
)
async def drift_start(
    request: Request[Any, Any, Any], settings: NamedDependency[Settings]
) -> DriftStarted:
    """Check state against the provider in the worker: ``{"provider": "stripe", "type":
    "subscription", "object_id": "sub_1", "repair": true}``; findings are state_drift alerts."""
    try:
        body = _drift_body.decode(await request.body())
    except msgspec.DecodeError as exc:
        raise InvalidAlertQuery(
            f'body: {exc} (expected {{"provider": "stripe"|"chargebee", "type": ..., '
            '"object_id": ..., "repair": bool}})'
        ) from None
    where = target(settings, body.provider, body.endpoint)
    check_configured(settings, body.provider)
    job = await queue_job(
        request,
        settings,
        CHECK_DRIFT,
        provider=body.provider,
        endpoint=where.endpoint,
        object_type=body.type,
        object_id=body.object_id,
        repair=body.repair,
    )
    return DriftStarted(
        job_id=job,
        provider=body.provider,
        endpoint=where.endpoint,
        type=body.type,
        object_id=body.object_id,
        repair=body.repair,
    )


routes: list[Any] = [
    Router(
        path="/",
        route_handlers=[
            alerts_list,
            alert_detail,
            alert_ack,
            alert_resolve,
            reconcile_now,
            drift_start,
        ],
        tags=["alerts"],
        security=[{"bearer": []}],
    )
]
