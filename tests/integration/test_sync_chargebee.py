"""`ledgerhook sync` through Chargebee's own SDK, respx standing in for its API (the SDK is on
httpx), on real PostgreSQL; and synced snapshots ordered against webhooks end to end."""

from __future__ import annotations

import json
import time
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, cast

import asyncpg
import httpx
import respx

from audit.append import NewDelivery, append_deliveries
from ingest.providers.base import fingerprint
from ledgerhook.settings import Settings
from processors.service import process_delivery
from processors.sync import run_sync
from tests.integration.sync_helpers import (
    CHARGEBEE_KEY,
    ApiStandIn,
    chargebee_error,
    rows,
    sync_settings,
    value,
)

CB_DIR = Path(__file__).resolve().parents[1] / "fixtures" / "chargebee"
BASE = 1_700_000_000


@respx.mock(assert_all_mocked=True, assert_all_called=False)
async def test_pages_follow_next_offset_keep_exact_bytes_and_deleted_resources(
    fresh_settings: Settings, fresh_pool: asyncpg.Pool, respx_mock: respx.MockRouter
) -> None:
    settings = sync_settings(fresh_settings)
    api = ApiStandIn(respx_mock, count=230)
    api.catalog.deleted.add(("chargebee", "customers", "cust_00000005"))

    summary = await run_sync(
        fresh_pool, settings, "chargebee", types="customers,subscriptions", since=BASE - 500
    )

    assert [(s.object_type, s.status, s.pages, s.stored) for s in summary.lists] == [
        ("customers", "done", 3, 230),
        ("subscriptions", "done", 3, 230),
    ]
    params = api.params("/api/v2/customers")
    assert [p.get("offset") for p in params] == [None, "100", "200"]
    assert params[0] == {
        "limit": "100",
        "include_deleted": "true",
        "created_at[after]": str(BASE - 501),
    }
    for request in api.requests:
        assert request.headers["authorization"].startswith("Basic ")  # the SDK's own auth
    # Each delivery is the resource object exactly as served, not its list entry.
    body, verification = (
        await rows(
            fresh_pool,
            "SELECT body, verification FROM audit.deliveries WHERE object_id = 'subs_00000002'",
        )
    )[0]
    entry = api.catalog.chargebee_entry("subscriptions", 2)  # {"subscription":..., "customer":...}
    served = json.dumps(entry, indent=2).encode()
    assert bytes(body) in served and bytes(body).startswith(b'{\n    "id": "subs_00000002"')
    assert json.loads(bytes(body)) == entry["subscription"]
    assert verification == f"fetched from the API with key {fingerprint(CHARGEBEE_KEY)}"
    assert (
        await value(
            fresh_pool, "SELECT event_id FROM audit.deliveries WHERE object_id = 'subs_00000002'"
        )
        == f"sync:subscription:subs_00000002:{(BASE - 2) * 1000}"
    )
    # A deleted resource is listed (include_deleted) and applied as deleted.
    assert (
        await value(
            fresh_pool, "SELECT deleted FROM processors.customers WHERE id = 'cust_00000005'"
        )
        is True
    )
    assert await value(fresh_pool, "SELECT count(*) FROM processors.subscriptions") == 230
    assert (
        await value(
            fresh_pool, "SELECT count(*) FROM processors.processed WHERE outcome = 'applied'"
        )
        == 460
    )

    again = await run_sync(fresh_pool, settings, "chargebee", types="customers", since=BASE - 500)
    assert (again.lists[0].stored, again.lists[0].duplicates) == (0, 230)


@respx.mock(assert_all_mocked=True, assert_all_called=False)
async def test_429_waits_the_retry_after_the_sdk_would_ignore(
    fresh_settings: Settings, fresh_pool: asyncpg.Pool, respx_mock: respx.MockRouter
) -> None:
    settings = sync_settings(fresh_settings)
    api = ApiStandIn(respx_mock, count=20)
    api.faults = [chargebee_error(429, "api_request_limit_exceeded", **{"Retry-After": "1"})]
    started = time.monotonic()
    summary = await run_sync(fresh_pool, settings, "chargebee", types="invoices")
    assert time.monotonic() - started >= 1.0
    assert summary.ok and summary.lists[0].stored == 20
    assert len(api.params("/api/v2/invoices")) == 2


@respx.mock(assert_all_mocked=True, assert_all_called=False)
async def test_5xx_timeouts_and_unreadable_answers_are_retried(
    fresh_settings: Settings, fresh_pool: asyncpg.Pool, respx_mock: respx.MockRouter
) -> None:
    settings = sync_settings(fresh_settings, retries=4)
    api = ApiStandIn(respx_mock, count=20)
    api.faults = [
        chargebee_error(500, "internal_error"),
        httpx.ConnectTimeout("slow"),
        httpx.Response(200, content=b"<html>maintenance</html>"),
        httpx.Response(503, content=b"Service Unavailable"),
    ]
    summary = await run_sync(fresh_pool, settings, "chargebee", types="transactions")
    assert summary.ok and summary.lists[0].stored == 20
    assert len(api.params("/api/v2/transactions")) == 5  # four failures, then the page
    assert await value(fresh_pool, "SELECT count(*) FROM processors.payments") == 20


def _event(event_type: str, sub: dict[str, Any], event_id: str) -> bytes:
    ev: dict[str, Any] = json.loads((CB_DIR / "subscription_changed.json").read_bytes())
    ev.update(id=event_id, event_type=event_type, occurred_at=sub["resource_version"] // 1000)
    ev["content"] = {"subscription": sub}
    return json.dumps(ev).encode()


async def _deliver(pool: asyncpg.Pool, body: bytes) -> str:
    ev = json.loads(body)
    d = NewDelivery(
        received_at=datetime.now(UTC),
        provider="chargebee",
        endpoint="default",
        account="acme-test",
        event_id=ev["id"],
        event_type=ev["event_type"],
        event_created=ev["occurred_at"],
        object_id=ev["content"]["subscription"]["id"],
        source_address="127.0.0.1",
        content_type="application/json",
        headers="[]",
        verification="chargebee-basic:test",
        body=body,
    )
    async with pool.acquire() as conn:
        (a,) = await append_deliveries(cast(asyncpg.Connection, conn), [d])
        return await process_delivery(conn, a.id)


@respx.mock(assert_all_mocked=True, assert_all_called=False)
async def test_webhooks_older_than_a_synced_snapshot_are_stale_newer_ones_apply(
    fresh_settings: Settings, fresh_pool: asyncpg.Pool, respx_mock: respx.MockRouter
) -> None:
    settings = sync_settings(fresh_settings)
    api = ApiStandIn(respx_mock, count=3)
    await run_sync(fresh_pool, settings, "chargebee", types="subscriptions")
    snap = api.catalog.chargebee_object("subscriptions", 1)
    version = snap["resource_version"]

    older = {**snap, "resource_version": version - 1, "status": "in_trial"}
    assert await _deliver(fresh_pool, _event("subscription_changed", older, "ev_old")) == "stale"
    assert (
        await value(
            fresh_pool, "SELECT status FROM processors.subscriptions WHERE id = 'subs_00000001'"
        )
        == "active"
    )
    newer = {**snap, "resource_version": version + 1, "status": "cancelled"}
    assert (
        await _deliver(fresh_pool, _event("subscription_cancelled", newer, "ev_new")) == "applied"
    )
    assert (
        await value(
            fresh_pool, "SELECT status FROM processors.subscriptions WHERE id = 'subs_00000001'"
        )
        == "canceled"
    )
    # The stale webhook is recorded against the snapshot's version, as out of order.
    assert (
        await value(
            fresh_pool,
            "SELECT count(*) FROM processors.anomalies WHERE object_id = 'subs_00000001' "
            "AND kind = 'out_of_order'",
        )
        == 1
    )
    # Syncing again now lists the canceled subscription: same version as the webhook, unchanged.
    api.catalog.changes[("chargebee", "subscriptions", "subs_00000001")] = {
        "resource_version": version + 1,
        "status": "cancelled",
    }
    again = await run_sync(fresh_pool, settings, "chargebee", types="subscriptions")
    assert again.lists[0].stored == 1
    assert (
        await value(
            fresh_pool,
            "SELECT h.outcome FROM processors.history h JOIN audit.deliveries d ON d.id = h.delivery_id "
            "WHERE d.origin = 'sync' AND h.object_id = 'subs_00000001' ORDER BY h.id DESC LIMIT 1",
        )
        == "unchanged"
    )
