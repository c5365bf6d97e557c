"""Alerts: lists by status with filters, one alert with its history and evidence, and on-call's
acknowledge/resolve with a note.

Reads through :func:`alerts.repository.list_alerts` and :mod:`alerts.lifecycle` (the API's
functions); changes through :func:`alerts.oncall.change_status`, the same function
``POST /alerts/{id}/ack|resolve`` calls, so the same transitions are allowed and the same ones
refused (409 for acknowledging an alert that is not open or resolving a resolved one).
"""

from __future__ import annotations

from typing import Annotated, Any

import asyncpg
from litestar import Request, get, post
from litestar.di import NamedDependency
from litestar.params import Parameter
from litestar.response import Redirect, Template

from alerts import lifecycle, oncall
from alerts.errors import InvalidAlertQuery
from alerts.model import RULES
from alerts.repository import AlertFilter, list_alerts
from audit import permissions
from audit.auth import principal_of
from ledgerhook.console import forms
from ledgerhook.console.auth import ROLE
from ledgerhook.console.errors import BadForm
from ledgerhook.console.render import page
from ledgerhook.settings import Settings

__all__ = ["handlers"]

PAGE_SIZE = 50
AlertId = Annotated[int, Parameter(ge=1, le=2**63 - 1)]


@get("/alerts", name="console_alerts")
async def alerts_list(
    request: Request[Any, Any, Any], pool: NamedDependency[asyncpg.Pool]
) -> Template:
    params = request.query_params
    values = forms.values(params, forms.ALERT_FIELDS)
    error = None
    result = None
    try:
        search = forms.alert_search(params)
        f = AlertFilter(
            status=search.status,
            rule=search.rule,
            severity=search.severity,
            provider=search.provider,
        )
        async with pool.acquire() as conn:
            result = await list_alerts(conn, f, cursor=search.cursor, limit=PAGE_SIZE)
    except (BadForm, InvalidAlertQuery) as exc:
        error = str(exc)
    return page(
        request,
        "alerts.html",
        status=400 if error else 200,
        title="Alerts",
        nav="alerts",
        values=values,
        error=error,
        result=result,
        statuses=forms.ALERT_STATUSES,
        rules=RULES,
        severities=forms.SEVERITIES,
        providers=forms.PROVIDERS,
    )


@get("/alerts/{alert_id:int}", name="console_alert")
async def alert_page(
    request: Request[Any, Any, Any], pool: NamedDependency[asyncpg.Pool], alert_id: AlertId
) -> Template:
    async with pool.acquire() as conn:
        alert = await lifecycle.get_alert(conn, alert_id)
        events = await lifecycle.history(conn, alert_id)
    return page(
        request,
        "alert.html",
        title=f"Alert {alert.id}",
        nav="alerts",
        alert=alert,
        events=events,
        max_note=oncall.MAX_NOTE,
    )


async def _change(
    request: Request[Any, Any, Any],
    settings: Settings,
    pool: asyncpg.Pool,
    alert_id: int,
    action: oncall.Action,
) -> Redirect:
    form = await request.form()
    note = form.get("note")
    text = note if isinstance(note, str) and note.strip() else None
    await oncall.change_status(
        pool, settings, alert_id, action, actor=principal_of(request).name, note=text
    )
    return Redirect(f"/console/alerts/{alert_id}", status_code=303)


@post(
    "/alerts/{alert_id:int}/acknowledge",
    name="console_alert_acknowledge",
    opt={ROLE: permissions.ACKNOWLEDGE},
    status_code=303,
)
async def acknowledge(
    request: Request[Any, Any, Any],
    settings: NamedDependency[Settings],
    pool: NamedDependency[asyncpg.Pool],
    alert_id: AlertId,
) -> Redirect:
    return await _change(request, settings, pool, alert_id, "acknowledge")


@post(
    "/alerts/{alert_id:int}/resolve",
    name="console_alert_resolve",
    opt={ROLE: permissions.RESOLVE},
    status_code=303,
)
async def resolve(
    request: Request[Any, Any, Any],
    settings: NamedDependency[Settings],
    pool: NamedDependency[asyncpg.Pool],
    alert_id: AlertId,
) -> Redirect:
    return await _change(request, settings, pool, alert_id, "resolve")


handlers = [alerts_list, alert_page, acknowledge, resolve]
