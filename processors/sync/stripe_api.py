"""Stripe's object APIs through the official ``stripe`` library (its httpx client).

Listing: ``GET /v1/<list>?limit=100`` (``created[gte]`` for ``--since``, ``status=all`` for
subscriptions, so canceled ones come too), newest first, paging with ``starting_after=<last id>``
while ``has_more``; the first page also asks ``include[]=total_count`` (the progress ETA, when
Stripe answers it). Retrieve: ``GET /v1/<list>/<id>`` (a deleted customer answers
``{"id", "object", "deleted": true}``; a deleted draft invoice answers 404: ObjectGone).

Requests go through ``StripeClient.raw_request_async``: the SDK signs them with the key, sets its
API version (or ``SYNC__STRIPE_API_VERSION``), and retries connection errors, 409 and 5xx
``max_network_retries`` times itself. It returns the response body as text decoded strictly as
UTF-8, so ``body.encode()`` is exactly the bytes Stripe sent; each object is a slice of that
(``msgspec.Raw``), stored as is. The typed ``client.v1.<list>.list_async`` would parse every
object into a StripeObject first, for nothing. The SDK does not retry 429 and never reads
``Retry-After``: :mod:`.retry` does, as it retries what the SDK gave up on.

A cursor whose object was deleted meanwhile makes Stripe refuse ``starting_after``
(``resource_missing``); the listing then continues from the cursor's ``created`` second
(``created[lte]``), re-reading at most that second's objects (recorded duplicates).
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Awaitable, Callable
from email.utils import parsedate_to_datetime
from typing import Any
from urllib.parse import quote

import msgspec
import stripe

from ingest.providers.base import fingerprint
from ledgerhook.settings import Settings
from processors.errors import SyncNotConfigured
from processors.sync import retry
from processors.sync.api import Fetched, Page, response_headers
from processors.sync.identity import fetch_second
from processors.sync.kinds import STRIPE_LISTS

__all__ = ["StripeApi", "classify"]


class _ListPage(msgspec.Struct, frozen=True, kw_only=True):
    data: list[msgspec.Raw]
    has_more: bool = False
    total_count: int | None = None


class _Object(msgspec.Struct, frozen=True, kw_only=True):
    id: str
    object: str | None = None
    created: int | None = None


_list_page = msgspec.json.Decoder(_ListPage)
_object = msgspec.json.Decoder(_Object)
_PATHS = {kind: f"/v1/{name}" for name, kind in STRIPE_LISTS.items()}


class _CursorGone(Exception):
    pass


def _retry_after(headers: Any) -> float | None:
    if not headers:
        return None
    value = headers.get("Retry-After") or headers.get("retry-after")
    if not value:
        return None
    try:
        return float(value)
    except ValueError:
        try:
            return max(0.0, parsedate_to_datetime(value).timestamp() - time.time())
        except (TypeError, ValueError):
            return None


def classify(exc: BaseException) -> retry.Failure | None:
    """A Stripe library error as a :class:`~processors.sync.retry.Failure` (None: not one)."""
    if not isinstance(exc, stripe.StripeError):
        return None
    status = exc.http_status
    code = exc.code
    param = getattr(exc, "param", None)
    detail = type(exc).__name__ + (f" {code}" if code else "")
    kind: retry.FailureKind
    retry_after = None
    if isinstance(exc, stripe.RateLimitError) or status == 429:
        kind, retry_after = "rate_limited", _retry_after(exc.headers)
    elif isinstance(exc, stripe.APIConnectionError):
        kind = "timeout" if "timed out" in str(exc).lower() else "connection"
    elif isinstance(exc, stripe.AuthenticationError | stripe.PermissionError) or status in (
        401,
        403,
    ):
        kind = "auth"
    elif code == "resource_missing":
        kind = "not_found"  # the object; a 404 without it is a wrong URL (client_error)
    elif status is not None and status >= 500:
        kind = "server_error"
    elif isinstance(exc, stripe.APIError) and (status is None or 200 <= status < 300):
        kind = "malformed"  # "Invalid response body from API": not JSON
    else:
        kind = "client_error"
    return retry.Failure(
        kind=kind, status=status, retry_after=retry_after, detail=detail, param=param
    )


class StripeApi:
    provider = "stripe"

    def __init__(
        self,
        settings: Settings,
        *,
        operation: str = "sync",
        sleep: Callable[[float], Awaitable[None]] = asyncio.sleep,
    ) -> None:
        if not settings.stripe_api_key:
            raise SyncNotConfigured("LEDGERHOOK_STRIPE_API_KEY is not set")
        key = settings.stripe_api_key.reveal()
        self.key_fingerprint = fingerprint(key)
        self._settings = settings.sync
        self._operation = operation
        self._sleep = sleep
        self._http = stripe.HTTPXClient(timeout=settings.sync.request_timeout_seconds)
        options: dict[str, Any] = {}
        if settings.sync.stripe_api_version:
            options["stripe_version"] = settings.sync.stripe_api_version
        self._client = stripe.StripeClient(
            key,
            base_addresses={"api": settings.stripe_api_base.rstrip("/")},
            http_client=self._http,
            max_network_retries=settings.sync.max_network_retries,
            **options,
        )

    async def _get(self, path: str, params: dict[str, Any]) -> tuple[bytes, int, str]:
        """(body, fetch second, kept headers) of one GET, as one classified attempt."""
        started = time.time()
        try:
            resp = await self._client.raw_request_async("get", path, **params)
        except stripe.StripeError as exc:
            failure = classify(exc)
            assert failure is not None
            raise retry.FailedCall(failure) from None
        date = resp.headers.get("date") or resp.headers.get("Date")
        return (
            resp.body.encode("utf-8"),
            fetch_second(started, date),
            response_headers(resp.headers),
        )

    async def list_page(
        self,
        list_name: str,
        *,
        since: int | None,
        cursor: str | None,
        cursor_created: int | None,
        want_total: bool,
    ) -> Page:
        kind = STRIPE_LISTS[list_name]
        try:
            return await self._list_page(kind, since, cursor, cursor_created, want_total)
        except _CursorGone:
            # The cursor object was deleted: continue from its second instead.
            return await self._list_page(kind, since, None, cursor_created, want_total)

    async def _list_page(
        self,
        kind: str,
        since: int | None,
        cursor: str | None,
        cursor_created: int | None,
        want_total: bool,
    ) -> Page:
        params: dict[str, Any] = {"limit": self._settings.page_size}
        created: dict[str, int] = {}
        if since is not None:
            created["gte"] = since
        if cursor is not None:
            params["starting_after"] = cursor
        elif cursor_created is not None:
            created["lte"] = cursor_created
        if created:
            params["created"] = created
        if kind == "subscription":
            params["status"] = "all"
        if want_total:
            params["include"] = ["total_count"]

        async def attempt() -> Page:
            body, fetched_at, headers = await self._get(_PATHS[kind], params)
            page = _list_page.decode(body)
            objects = []
            for raw in page.data:
                view = _object.decode(raw)
                if view.object not in (None, kind):
                    raise retry.Malformed(f"a {kind} list holds a {view.object!r}")
                objects.append(
                    Fetched(kind=kind, object_id=view.id, raw=bytes(raw), created=view.created)
                )
            more = page.has_more and bool(objects)
            return Page(
                objects=objects,
                next_cursor=objects[-1].object_id if more else None,
                next_cursor_created=objects[-1].created if more else None,
                fetched_at=fetched_at,
                headers=headers,
                total=page.total_count,
            )

        async def vanished(failure: retry.Failure) -> Page | None:
            if cursor is not None and failure.param == "starting_after":
                raise _CursorGone
            return None

        return await retry.call(
            attempt,
            self._settings,
            provider="stripe",
            operation=self._operation,
            what=f"list {kind}",
            sleep=self._sleep,
            on_failure=vanished,
        )

    async def retrieve(self, kind: str, object_id: str) -> tuple[Fetched, int, str]:
        path = f"{_PATHS[kind]}/{quote(object_id, safe='')}"

        async def attempt() -> tuple[Fetched, int, str]:
            body, fetched_at, headers = await self._get(path, {})
            view = _object.decode(body)
            if view.id != object_id:
                raise retry.Malformed(f"asked for {kind} {object_id}, got {view.id}")
            return (
                Fetched(kind=kind, object_id=view.id, raw=body, created=view.created),
                fetched_at,
                headers,
            )

        return await retry.call(
            attempt,
            self._settings,
            provider="stripe",
            operation=self._operation,
            what=f"retrieve {kind}",
            sleep=self._sleep,
        )

    async def close(self) -> None:
        await self._http.close_async()  # type: ignore[no-untyped-call]
