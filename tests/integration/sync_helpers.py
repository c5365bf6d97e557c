"""Stand-ins of Stripe's and Chargebee's object APIs for respx, and the settings to reach them.

The answers come from :class:`ledgerhook.demo.objects_api.Catalog` (objects generated from the
real fixtures), the same catalog the local stand-in server serves to subprocesses. ``faults``
answers the next requests with a given response or raises a given exception (a timeout).
"""

from __future__ import annotations

from collections.abc import Sequence
from email.utils import formatdate
from typing import Any, cast

import asyncpg
import httpx
import msgspec
import respx

from ledgerhook.demo.objects_api import Catalog
from ledgerhook.settings import (
    AlertSettings,
    DriftSettings,
    EndpointSettings,
    Secret,
    Settings,
    SyncSettings,
)
from tests.conftest import CHARGEBEE_AUTH, STRIPE_SECRET, make_settings

STRIPE_BASE = "https://stripe.test"
CHARGEBEE_BASE = "https://acme-test.chargebee.test"
STRIPE_KEY = "sk_test_sync_key_0123456789"
CHARGEBEE_KEY = "cb_test_sync_key_0123456789"


def sync_settings(fresh: Settings, *, alerts: AlertSettings | None = None, **sync: Any) -> Settings:
    options: dict[str, Any] = {
        "retries": 3,
        "retry_base_seconds": 0.01,
        "retry_max_seconds": 0.05,
        "max_network_retries": 0,
        "request_timeout_seconds": 5.0,
        **sync,
    }
    return make_settings(
        fresh.database_url.reveal().rsplit("/", 1)[1],
        stripe_api_key=Secret(STRIPE_KEY),
        stripe_api_base=STRIPE_BASE,
        chargebee_api_key=Secret(CHARGEBEE_KEY),
        chargebee_api_base=CHARGEBEE_BASE,
        chargebee_site="acme-test",
        endpoints=(
            EndpointSettings(
                provider="stripe",
                name="default",
                account="acct_test",
                secrets=(Secret(STRIPE_SECRET),),
            ),
            EndpointSettings(
                provider="chargebee",
                name="default",
                account="acme-test",
                basic_auth=(Secret(CHARGEBEE_AUTH),),
            ),
        ),
        sync=SyncSettings(**options),
        # Drift checks paced for tests (the default is 30 calls a minute).
        drift=DriftSettings(calls_per_minute=6000),
        alerts=alerts or AlertSettings(),
    )


Fault = httpx.Response | Exception


class ApiStandIn:
    """Both providers' object APIs on respx, answered from a Catalog."""

    def __init__(self, mock: respx.MockRouter, count: int, *, pretty: bool = True) -> None:
        self.catalog = Catalog(count, pretty=pretty)
        self.faults: list[Fault] = []
        self.requests: list[httpx.Request] = []
        mock.route(host="stripe.test").mock(side_effect=self._answer)
        mock.route(host="acme-test.chargebee.test").mock(side_effect=self._answer)

    def _answer(self, request: httpx.Request) -> httpx.Response:
        self.requests.append(request)
        if self.faults:
            fault = self.faults.pop(0)
            if isinstance(fault, Exception):
                raise fault
            return fault
        path = request.url.raw_path.decode()
        status, body = self.catalog.answer(path, request.headers.get("authorization", ""))
        return httpx.Response(
            status,
            content=body,
            headers={"content-type": "application/json", "date": formatdate(usegmt=True)},
        )

    def params(self, path_suffix: str) -> list[dict[str, str]]:
        """The query parameters of every request whose path ends with ``path_suffix``."""
        return [dict(r.url.params) for r in self.requests if r.url.path.endswith(path_suffix)]


def stripe_error(status: int, code: str = "api_error", **headers: str) -> httpx.Response:
    body = msgspec.json.encode({"error": {"type": "api_error", "code": code, "message": code}})
    return httpx.Response(status, content=body, headers=headers)


def chargebee_error(status: int, code: str, **headers: str) -> httpx.Response:
    body = msgspec.json.encode(
        {"message": code, "type": "x", "api_error_code": code, "http_status_code": status}
    )
    return httpx.Response(status, content=body, headers=headers)


async def rows(pool: asyncpg.Pool, sql: str, *args: Any) -> list[asyncpg.Record]:
    async with pool.acquire() as conn:
        return cast(list[asyncpg.Record], await conn.fetch(sql, *args))


async def value(pool: asyncpg.Pool, sql: str, *args: Any) -> Any:
    async with pool.acquire() as conn:
        return await conn.fetchval(sql, *args)


def ids(objects: Sequence[dict[str, Any]]) -> list[str]:
    return [o["id"] for o in objects]
