"""Objects: the current billing state of a customer, subscription, invoice, payment, refund or
credit note, and its timeline.

One route, ``/console/objects``: with an ``id`` it shows that object (state through
:func:`processors.queries.get_object`, its updates through :func:`processors.queries.history`, a
subscription's classified changes through :func:`processors.queries.subscription_changes`, and
every delivery about it in provider-event order through :func:`audit.repository.object_timeline`,
the API's timeline); without one it lists objects of a kind (:func:`processors.queries.list_objects`).
Ids travel as query values, never as path segments, so any id (slashes included) works.
"""

from __future__ import annotations

from typing import Any

import asyncpg
from litestar import Request, get
from litestar.di import NamedDependency
from litestar.response import Template

from audit.errors import NotFound
from audit.repository import TimelineEntry, object_timeline
from ledgerhook.console import forms, seams
from ledgerhook.console.errors import BadForm
from ledgerhook.console.render import page
from processors.errors import InvalidStateQuery, StateNotFound
from processors.queries import (
    KINDS,
    ChangeRow,
    HistoryRow,
    StateRow,
    get_object,
    history,
    list_objects,
    subscription_changes,
)

__all__ = ["handlers"]

PAGE_SIZE = 50


@get("/objects", name="console_objects")
async def objects(request: Request[Any, Any, Any], pool: NamedDependency[asyncpg.Pool]) -> Template:
    params = request.query_params
    values = forms.values(params, forms.OBJECT_FIELDS)
    try:
        search = forms.object_search(params)
    except BadForm as exc:
        return _list_page(request, values, error=str(exc))
    if search.object_id is not None:
        if search.provider is None:
            return _list_page(request, values, error="provider: choose one to open an object")
        return await _object_page(request, pool, search)
    try:
        async with pool.acquire() as conn:
            result = await list_objects(
                conn, search.kind, search.filter, cursor=search.cursor, limit=PAGE_SIZE
            )
    except InvalidStateQuery as exc:
        return _list_page(request, values, error=str(exc))
    return _list_page(request, values, result=result, kind=search.kind)


def _list_page(
    request: Request[Any, Any, Any],
    values: dict[str, str],
    *,
    error: str | None = None,
    result: Any = None,
    kind: str = "customers",
) -> Template:
    return page(
        request,
        "objects.html",
        status=400 if error else 200,
        title="Objects",
        nav="objects",
        values=values,
        error=error,
        result=result,
        kind=kind,
        kinds=tuple(KINDS),
        providers=forms.PROVIDERS,
    )


async def _object_page(
    request: Request[Any, Any, Any], pool: asyncpg.Pool, search: forms.ObjectSearch
) -> Template:
    assert search.provider is not None and search.object_id is not None
    state: StateRow | None = None
    updates: list[HistoryRow] = []
    sub_changes: list[ChangeRow] = []
    timeline: list[TimelineEntry] = []
    async with pool.acquire() as conn:
        try:
            state = await get_object(
                conn, search.kind, search.provider, search.object_id, search.account
            )
        except StateNotFound:
            state = None
        if state is not None:
            updates = await history(
                conn, state.object_type, state.provider, state.account, state.id
            )
            if search.kind == "subscriptions":
                sub_changes = await subscription_changes(
                    conn, state.provider, state.account, state.id
                )
        try:
            timeline = await object_timeline(conn, search.provider, search.object_id)
        except NotFound:
            timeline = []
        links = await seams.provider_links(
            conn,
            search.kind,
            search.provider,
            state.account if state else (search.account or ""),
            search.object_id,
        )
    if state is None and not timeline:
        raise NotFound(f"no {KINDS[search.kind]} {search.provider}/{search.object_id}")
    return page(
        request,
        "object.html",
        title=f"{KINDS[search.kind]} {search.object_id}",
        nav="objects",
        kind=search.kind,
        object_type=KINDS[search.kind],
        provider=search.provider,
        object_id=search.object_id,
        state=state,
        updates=updates,
        changes_list=sub_changes,
        timeline=timeline,
        links=links,
    )


handlers = [objects]
