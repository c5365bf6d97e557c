"""Chargebee's Events API over plain httpx (HTTP Basic, the API key as user, empty password).

The official ``chargebee`` package builds its URL from the site name and a domain, so it cannot
point at a local stand-in; httpx against ``LEDGERHOOK_CHARGEBEE_API_BASE`` (default
``https://{site}.chargebee.com``) can. Listing: ``GET /api/v2/events?occurred_at[after]=...``
with ``limit=100`` and ``offset=<next_offset>`` until no ``next_offset``. Each entry is
``{"event": {...}}``; the inner object's bytes, exactly as returned, are what a webhook carries.

Retention: Chargebee documents no listing limit as short as Stripe's; windows are clamped to
:data:`RETENTION_SECONDS` (90 days) to keep a run bounded.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Mapping
from urllib.parse import quote

import httpx
import msgspec

from alerts.errors import NotConfigured, ProviderApiError
from alerts.reconcile.base import ProviderEvent, public_url
from ingest.providers.chargebee import main_resource
from ledgerhook.settings import Settings

__all__ = ["RETENTION_SECONDS", "client", "list_events", "retrieve_event"]

RETENTION_SECONDS = 90 * 86_400
PAGE_SIZE = 100


class _Entry(msgspec.Struct, frozen=True, kw_only=True):
    event: msgspec.Raw


class _Page(msgspec.Struct, frozen=True, kw_only=True):
    entries: list[_Entry] = msgspec.field(name="list")
    next_offset: str | None = None


class _Event(msgspec.Struct, frozen=True, kw_only=True):
    id: str
    event_type: str
    occurred_at: int
    content: dict[str, msgspec.Raw] | None = None


_page = msgspec.json.Decoder(_Page)
_entry = msgspec.json.Decoder(_Entry)
_event = msgspec.json.Decoder(_Event)


def client(settings: Settings) -> httpx.AsyncClient:
    if not settings.chargebee_api_key:
        raise NotConfigured("LEDGERHOOK_CHARGEBEE_API_KEY is not set")
    if not settings.chargebee_api_base and not settings.chargebee_site:
        raise NotConfigured("LEDGERHOOK_CHARGEBEE_SITE or LEDGERHOOK_CHARGEBEE_API_BASE is not set")
    return httpx.AsyncClient(
        base_url=settings.chargebee_api_url.rstrip("/"),
        auth=(settings.chargebee_api_key.reveal(), ""),
        timeout=30.0,
    )


def to_event(raw: msgspec.Raw | bytes) -> ProviderEvent:
    view = _event.decode(raw)
    content: Mapping[str, msgspec.Raw] = view.content or {}
    return ProviderEvent(
        id=view.id,
        type=view.event_type,
        created=view.occurred_at,
        object_id=main_resource(view.event_type, content),
        raw=bytes(raw),
    )


async def _get(http: httpx.AsyncClient, path: str, params: dict[str, str | int]) -> bytes:
    url = public_url(str(http.base_url).rstrip("/") + path)
    try:
        resp = await http.get(path, params=params)
    except httpx.HTTPError as exc:
        raise ProviderApiError(
            f"chargebee API at {url}: no connection ({type(exc).__name__})", url=url
        ) from None
    if resp.status_code == 404:
        return b""
    if resp.status_code >= 300:
        raise ProviderApiError(f"chargebee API at {url} answered HTTP {resp.status_code}", url=url)
    return resp.content


async def list_events(settings: Settings, since: int) -> AsyncIterator[list[ProviderEvent]]:
    """Pages of events that occurred at or after ``since``."""
    async with client(settings) as http:
        offset: str | None = None
        while True:
            params: dict[str, str | int] = {
                "occurred_at[after]": since - 1,  # "after" is strict
                "limit": PAGE_SIZE,
                "sort_by[asc]": "occurred_at",
            }
            if offset:
                params["offset"] = offset
            body = await _get(http, "/api/v2/events", params)
            try:
                page = _page.decode(body)
                events = [to_event(e.event) for e in page.entries]
            except msgspec.DecodeError as exc:
                raise ProviderApiError(
                    f"chargebee events API answered an unexpected body: {exc}",
                    url=public_url(settings.chargebee_api_url + "/api/v2/events"),
                ) from None
            yield events
            if not page.next_offset:
                return
            offset = page.next_offset


async def retrieve_event(http: httpx.AsyncClient, event_id: str) -> ProviderEvent | None:
    """``GET /api/v2/events/{id}``: the event as Chargebee has it, or None when it does not exist."""
    body = await _get(http, f"/api/v2/events/{quote(event_id, safe='')}", {})
    if not body:
        return None
    try:
        return to_event(_entry.decode(body).event)
    except msgspec.DecodeError as exc:
        raise ProviderApiError(f"chargebee event API answered an unexpected body: {exc}") from None
