"""What reading a provider's objects yields, whichever provider: pages of exact object bytes.

Each provider module (:mod:`.stripe_api`, :mod:`.chargebee_api`) lists objects a page at a time
through the official SDK and retrieves one by id, with the SDK's pagination and retries and
:mod:`.retry` on top. A :class:`Fetched` object's ``raw`` is that object's bytes exactly as the
API sent them: a slice of the page (or retrieve) response body, never a re-serialisation.
"""

from __future__ import annotations

from typing import Protocol

import msgspec

from ledgerhook.settings import Settings
from processors.errors import SyncNotConfigured

__all__ = ["Fetched", "Page", "ProviderApi", "check_configured", "make_api", "response_headers"]

# Response headers kept with each synced delivery (provenance; none carries a credential).
_KEPT_HEADERS = ("date", "request-id", "stripe-version", "x-request-id", "content-type")
_headers_json = msgspec.json.Encoder()


class Fetched(msgspec.Struct, frozen=True, kw_only=True):
    kind: str
    object_id: str
    raw: bytes
    created: int | None = None
    resource_version: int | None = None


class Page(msgspec.Struct, frozen=True, kw_only=True):
    objects: list[Fetched]
    # Where the next page starts (None: this was the last page).
    next_cursor: str | None
    next_cursor_created: int | None = None
    # The second the page was read (processors.sync.identity.fetch_second).
    fetched_at: int
    # The response's provenance headers, as the JSON text a delivery's headers column holds.
    headers: str = "[]"
    # Objects the provider says the listing has, when it says (Stripe's total_count).
    total: int | None = None


class ProviderApi(Protocol):
    provider: str
    key_fingerprint: str

    async def list_page(
        self,
        list_name: str,
        *,
        since: int | None,
        cursor: str | None,
        cursor_created: int | None,
        want_total: bool,
    ) -> Page: ...

    async def retrieve(self, kind: str, object_id: str) -> tuple[Fetched, int, str]:
        """(the object, the second it was read, provenance headers); raises ObjectGone."""
        ...

    async def close(self) -> None: ...


def response_headers(items: object) -> str:
    """The kept headers of a response (any mapping or httpx.Headers), as stored JSON text."""
    get = getattr(items, "get", None)
    if get is None:
        return "[]"
    kept = []
    for name in _KEPT_HEADERS:
        value = get(name)
        if value is None:
            value = get(name.title())
        if isinstance(value, str):
            kept.append([name, value])
    return _headers_json.encode(kept).decode()


def check_configured(settings: Settings, provider: str) -> None:
    """Raise SyncNotConfigured unless the provider's API can be called (no I/O)."""
    if provider == "stripe":
        if not settings.stripe_api_key:
            raise SyncNotConfigured("LEDGERHOOK_STRIPE_API_KEY is not set")
    elif provider == "chargebee":
        from processors.sync.chargebee_api import sdk_location

        if not settings.chargebee_api_key:
            raise SyncNotConfigured("LEDGERHOOK_CHARGEBEE_API_KEY is not set")
        sdk_location(settings.chargebee_api_base, settings.chargebee_site)
    else:
        raise SyncNotConfigured("provider must be stripe or chargebee")


def make_api(settings: Settings, provider: str, *, operation: str = "sync") -> ProviderApi:
    """The provider's API client; raises SyncNotConfigured without credentials."""
    if provider == "stripe":
        from processors.sync.stripe_api import StripeApi

        return StripeApi(settings, operation=operation)
    if provider == "chargebee":
        from processors.sync.chargebee_api import ChargebeeApi

        return ChargebeeApi(settings, operation=operation)
    raise SyncNotConfigured("provider must be stripe or chargebee")
