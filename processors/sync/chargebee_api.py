"""Chargebee's object APIs through the official ``chargebee`` library (3.29, on httpx).

Listing: ``<Resource>.list({"limit": 100, "include_deleted": True, "offset": ...})`` (with
``created_at[after]`` or ``date[after]`` for ``--since``), paging with ``next_offset`` until there
is none; each entry is ``{"<kind>": {...}, ...}`` and the ``<kind>`` object is what is stored.
Retrieve: ``<Resource>.retrieve(id)``; 404 (``resource_not_found``) is ObjectGone.

Where the API is: the SDK builds ``{protocol}://{site}.{domain}/api/v2`` and has no base URL
setting, so :func:`sdk_location` derives site, domain and protocol from
``LEDGERHOOK_CHARGEBEE_API_BASE`` (``https://acme.chargebee.com`` → site ``acme``, domain
``chargebee.com``; a stand-in at ``http://127.0.0.1:8123`` → site ``127``, domain ``0.0.1:8123``).
For ``http`` the SDK's class-wide ``verify_ca_certs`` must be off (it otherwise forces https);
https then verifies with httpx's default trust store instead of the SDK's bundled one.

Exact bytes: the SDK parses the response JSON and keeps no raw body. It creates an
``httpx.AsyncClient`` per request, so the module's ``httpx`` reference is pointed at a namespace
that is httpx except for an ``AsyncClient`` adding a response hook (:data:`_SDK_HTTPX`); the hook
hands each response to the call that is waiting for it (a context variable), and the page is cut
from ``response.content``, the bytes as received. The SDK still does the request, its
authentication, its parameters and its errors.

Retries: the SDK's own RetryConfig is left off. On 429 it retries forever every ``delay_ms``
and never honours ``Retry-After`` (it reads ``response_headers`` from an error whose headers are
in ``http_headers``), and it does not retry timeouts or lost connections. :mod:`.retry` does all
of it: 429 after ``Retry-After``, 5xx, timeouts, connections and unreadable answers.
"""

from __future__ import annotations

import asyncio
import contextvars
import functools
import re
import ssl
import time
import types
from collections.abc import Awaitable, Callable
from email.utils import parsedate_to_datetime
from typing import Any
from urllib.parse import urlsplit

import chargebee
import chargebee.http_request
import httpx
import msgspec
from chargebee.main import Chargebee
from chargebee.retry_config import RetryConfig

from ingest.providers.base import fingerprint
from ledgerhook.settings import Settings
from processors.errors import SyncNotConfigured
from processors.sync import retry
from processors.sync.api import Fetched, Page, response_headers
from processors.sync.identity import fetch_second
from processors.sync.kinds import CHARGEBEE_LISTS, CHARGEBEE_SINCE_FILTER

__all__ = ["ChargebeeApi", "classify", "sdk_location"]

_responses: contextvars.ContextVar[list[httpx.Response] | None] = contextvars.ContextVar(
    "ledgerhook_chargebee_responses", default=None
)


async def _remember(response: httpx.Response) -> None:
    seen = _responses.get()
    if seen is not None:
        seen.append(response)


@functools.cache
def _default_tls() -> ssl.SSLContext:
    """httpx's default verification context, made once: the SDK opens a client per request,
    and building the context (loading the CA bundle) each time cost more than the request."""
    return httpx.create_ssl_context()


class _RecordingClient(httpx.AsyncClient):
    def __init__(self, *args: Any, **kwargs: Any) -> None:
        hooks = dict(kwargs.pop("event_hooks", None) or {})
        hooks["response"] = [*hooks.get("response", []), _remember]
        if kwargs.get("verify", True) is True:
            kwargs["verify"] = _default_tls()
        super().__init__(*args, event_hooks=hooks, **kwargs)


class _HttpxForSdk(types.ModuleType):
    """httpx, but with the recording AsyncClient."""

    AsyncClient = _RecordingClient

    def __getattr__(self, name: str) -> Any:
        return getattr(httpx, name)


_SDK_HTTPX = _HttpxForSdk("httpx")


class _Page(msgspec.Struct, frozen=True, kw_only=True):
    entries: list[dict[str, msgspec.Raw]] = msgspec.field(name="list")
    next_offset: str | None = None


class _Resource(msgspec.Struct, frozen=True, kw_only=True):
    id: str
    object: str | None = None
    resource_version: int | None = None
    created_at: int | None = None
    date: int | None = None


_page = msgspec.json.Decoder(_Page)
_wrapped = msgspec.json.Decoder(dict[str, msgspec.Raw])
_resource = msgspec.json.Decoder(_Resource)
_STATUS = re.compile(r"http_status_code:\s*(\d{3})")


def sdk_location(base_url: str, site: str) -> tuple[str, str, str]:
    """(site, domain, protocol) that make the SDK call ``base_url`` (or Chargebee for ``site``)."""
    if not base_url:
        if not site:
            raise SyncNotConfigured(
                "LEDGERHOOK_CHARGEBEE_SITE or LEDGERHOOK_CHARGEBEE_API_BASE is not set"
            )
        return site, "chargebee.com", "https"
    parts = urlsplit(base_url.rstrip("/"))
    if parts.scheme not in ("http", "https") or parts.path not in ("", "/") or not parts.netloc:
        raise SyncNotConfigured(
            "LEDGERHOOK_CHARGEBEE_API_BASE: use scheme://host[:port] (the SDK adds /api/v2)"
        )
    host = parts.netloc
    if site and host.startswith(f"{site}."):
        return site, host[len(site) + 1 :], parts.scheme
    first, dot, rest = host.partition(".")
    if not dot or not first or not rest:
        raise SyncNotConfigured(
            "LEDGERHOOK_CHARGEBEE_API_BASE: the SDK needs a host of the form <site>.<domain> "
            "(for a local stand-in use 127.0.0.1, not localhost)"
        )
    return first, rest, parts.scheme


def _retry_after(headers: Any) -> float | None:
    value = headers.get("retry-after") if headers is not None else None
    if not value:
        return None
    try:
        return float(value)
    except ValueError:
        try:
            return max(0.0, parsedate_to_datetime(value).timestamp() - time.time())
        except (TypeError, ValueError):
            return None


def classify(exc: BaseException, response: httpx.Response | None) -> retry.Failure | None:
    """A Chargebee SDK (or httpx) error as a Failure; ``response``: the last one received."""
    kind: retry.FailureKind
    if isinstance(exc, chargebee.APIError):
        status = exc.http_code
        code = exc.api_error_code
        detail = type(exc).__name__ + (f" {code}" if code else "")
        if status == 429:
            return retry.Failure(
                kind="rate_limited",
                status=status,
                retry_after=_retry_after(exc.http_headers),
                detail=detail,
            )
        if code == "resource_not_found":
            kind = "not_found"  # the resource; another 404 is a wrong URL or site
        elif status in (401, 403):
            kind = "auth"
        elif isinstance(status, int) and status >= 500:
            kind = "server_error"
        else:
            kind = "client_error"
        return retry.Failure(kind=kind, status=status, detail=detail, param=exc.param)
    if isinstance(exc, httpx.TimeoutException):
        return retry.Failure(kind="timeout", detail=type(exc).__name__)
    if isinstance(exc, httpx.TransportError):
        return retry.Failure(kind="connection", detail=type(exc).__name__)
    if response is None:
        return None
    # The SDK raises a plain Exception for a body that is not JSON, or JSON that is not one of
    # its errors; the response says which it was.
    status = response.status_code
    match = _STATUS.search(str(exc))
    detail = f"{type(exc).__name__} (the SDK read HTTP {match.group(1) if match else '?'})"
    if status == 429:
        kind = "rate_limited"
    elif status >= 500:
        kind = "server_error"
    elif 200 <= status < 300:
        kind = "malformed"
    else:
        kind = "client_error"
    return retry.Failure(
        kind=kind,
        status=status,
        retry_after=_retry_after(response.headers) if status == 429 else None,
        detail=detail,
    )


class ChargebeeApi:
    provider = "chargebee"

    def __init__(
        self,
        settings: Settings,
        *,
        operation: str = "sync",
        sleep: Callable[[float], Awaitable[None]] = asyncio.sleep,
    ) -> None:
        if not settings.chargebee_api_key:
            raise SyncNotConfigured("LEDGERHOOK_CHARGEBEE_API_KEY is not set")
        site, domain, protocol = sdk_location(settings.chargebee_api_base, settings.chargebee_site)
        key = settings.chargebee_api_key.reveal()
        self.key_fingerprint = fingerprint(key)
        self._settings = settings.sync
        self._operation = operation
        self._sleep = sleep
        chargebee.http_request.httpx = _SDK_HTTPX  # see the module docstring: exact bytes
        if protocol == "http":
            Chargebee.verify_ca_certs = False  # the SDK forces https otherwise (class-wide)
        timeout = settings.sync.request_timeout_seconds
        self._cb = Chargebee(
            api_key=key,
            site=site,
            chargebee_domain=domain,
            protocol=protocol,
            connection_time_out=timeout,
            read_time_out=timeout,
            use_async_client=True,
        )
        self._cb.update_retry_config(RetryConfig(enabled=False))
        self._resources: dict[str, Any] = {
            "customer": self._cb.Customer,
            "subscription": self._cb.Subscription,
            "invoice": self._cb.Invoice,
            "transaction": self._cb.Transaction,
            "credit_note": self._cb.CreditNote,
        }

    async def _sdk(self, call: Callable[[], Awaitable[Any]]) -> httpx.Response:
        """Run one SDK call as a classified attempt; the response it read, bytes intact."""
        seen: list[httpx.Response] = []
        token = _responses.set(seen)
        try:
            await call()
        except Exception as exc:
            failure = classify(exc, seen[-1] if seen else None)
            if failure is None:
                raise
            raise retry.FailedCall(failure) from None
        finally:
            _responses.reset(token)
        if not seen:
            raise retry.Malformed("the SDK answered without an HTTP response")
        return seen[-1]

    async def list_page(
        self,
        list_name: str,
        *,
        since: int | None,
        cursor: str | None,
        cursor_created: int | None,
        want_total: bool,
    ) -> Page:
        kind = CHARGEBEE_LISTS[list_name]
        params: dict[str, Any] = {"limit": self._settings.page_size, "include_deleted": True}
        if since is not None:
            params[CHARGEBEE_SINCE_FILTER[kind]] = {"after": since - 1}  # "after" is strict
        if cursor is not None:
            params["offset"] = cursor
        resource = self._resources[kind]

        async def attempt() -> Page:
            started = time.time()
            response = await self._sdk(lambda: resource.list(dict(params)))
            page = _page.decode(response.content)
            objects = []
            for entry in page.entries:
                raw = entry.get(kind)
                if raw is None:
                    raise retry.Malformed(f"a {kind} list entry without a {kind}")
                view = _resource.decode(raw)
                objects.append(
                    Fetched(
                        kind=kind,
                        object_id=view.id,
                        raw=bytes(raw),
                        created=view.created_at or view.date,
                        resource_version=view.resource_version,
                    )
                )
            return Page(
                objects=objects,
                next_cursor=page.next_offset if objects else None,
                fetched_at=fetch_second(started, response.headers.get("date")),
                headers=response_headers(response.headers),
            )

        return await retry.call(
            attempt,
            self._settings,
            provider="chargebee",
            operation=self._operation,
            what=f"list {kind}",
            sleep=self._sleep,
        )

    async def retrieve(self, kind: str, object_id: str) -> tuple[Fetched, int, str]:
        resource = self._resources[kind]

        async def attempt() -> tuple[Fetched, int, str]:
            started = time.time()
            response = await self._sdk(lambda: resource.retrieve(object_id))
            raw = _wrapped.decode(response.content).get(kind)
            if raw is None:
                raise retry.Malformed(f"a {kind} retrieve without a {kind}")
            view = _resource.decode(raw)
            if view.id != object_id:
                raise retry.Malformed(f"asked for {kind} {object_id}, got {view.id}")
            fetched = Fetched(
                kind=kind,
                object_id=view.id,
                raw=bytes(raw),
                created=view.created_at or view.date,
                resource_version=view.resource_version,
            )
            return (
                fetched,
                fetch_second(started, response.headers.get("date")),
                response_headers(response.headers),
            )

        return await retry.call(
            attempt,
            self._settings,
            provider="chargebee",
            operation=self._operation,
            what=f"retrieve {kind}",
            sleep=self._sleep,
        )

    async def close(self) -> None:
        return None
