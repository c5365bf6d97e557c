"""Stripe's Events API through the official ``stripe`` package with its httpx client.

``GET {LEDGERHOOK_STRIPE_API_BASE}/v1/events?created[gte]=...&limit=100``, paging with
``starting_after`` while ``has_more``; also with ``delivery_success=false`` (the events Stripe
itself failed to deliver to any endpoint). The list is read through ``raw_request_async`` so each
event's bytes are exactly those the API returned (a slice of the response), not a re-serialisation.

Retention: Stripe lists events of the last 30 days only; a longer window is clamped to 30 days
and the summary says so.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from typing import Any

import msgspec
import stripe

from alerts.errors import NotConfigured, ProviderApiError
from alerts.reconcile.base import ProviderEvent, public_url
from ledgerhook.settings import Settings

__all__ = ["RETENTION_SECONDS", "list_events"]

RETENTION_SECONDS = 30 * 86_400
PAGE_SIZE = 100


class _Object(msgspec.Struct, frozen=True, kw_only=True):
    id: str | None = None


class _Data(msgspec.Struct, frozen=True, kw_only=True):
    object: _Object | None = None


class _Event(msgspec.Struct, frozen=True, kw_only=True):
    id: str
    type: str
    created: int
    data: _Data | None = None


class _Page(msgspec.Struct, frozen=True, kw_only=True):
    data: list[msgspec.Raw]
    has_more: bool = False


_page = msgspec.json.Decoder(_Page)
_event = msgspec.json.Decoder(_Event)


def _failure(exc: stripe.StripeError) -> str:
    """What went wrong, in words: no connection, or the API's answer (never the key)."""
    if isinstance(exc, stripe.APIConnectionError):
        return f"no connection ({type(exc).__name__}, after retries)"
    if exc.http_status is None:
        return type(exc).__name__
    return f"answered HTTP {exc.http_status} ({type(exc).__name__})"


def _client(settings: Settings) -> tuple[stripe.StripeClient, stripe.HTTPXClient]:
    if not settings.stripe_api_key:
        raise NotConfigured("LEDGERHOOK_STRIPE_API_KEY is not set")
    http = stripe.HTTPXClient(timeout=30)
    client = stripe.StripeClient(
        settings.stripe_api_key.reveal(),
        base_addresses={"api": settings.stripe_api_base.rstrip("/")},
        http_client=http,
        max_network_retries=2,
    )
    return client, http


async def list_events(
    settings: Settings, since: int, *, delivery_success: bool | None = None
) -> AsyncIterator[list[ProviderEvent]]:
    """Pages of events created at or after ``since`` (newest first, as Stripe lists them)."""
    client, http = _client(settings)
    url = public_url(settings.stripe_api_base.rstrip("/") + "/v1/events")
    failed = True if delivery_success is False else None
    starting_after: str | None = None
    try:
        while True:
            params: dict[str, Any] = {"created": {"gte": since}, "limit": PAGE_SIZE}
            if delivery_success is not None:
                params["delivery_success"] = delivery_success
            if starting_after is not None:
                params["starting_after"] = starting_after
            try:
                resp = await client.raw_request_async("get", "/v1/events", **params)
            except stripe.StripeError as exc:
                raise ProviderApiError(
                    f"stripe events API at {url}: {_failure(exc)}", url=url
                ) from None
            try:
                page = _page.decode(resp.body.encode())
                events = []
                for raw in page.data:
                    view = _event.decode(raw)
                    obj = view.data.object if view.data is not None else None
                    events.append(
                        ProviderEvent(
                            id=view.id,
                            type=view.type,
                            created=view.created,
                            object_id=obj.id if obj is not None else None,
                            raw=bytes(raw),
                            delivery_failed=failed,
                        )
                    )
            except msgspec.DecodeError as exc:
                raise ProviderApiError(
                    f"stripe events API at {url} answered an unexpected body: {exc}", url=url
                ) from None
            yield events
            if not page.has_more or not events:
                return
            starting_after = events[-1].id
    finally:
        await http.close_async()  # type: ignore[no-untyped-call]
