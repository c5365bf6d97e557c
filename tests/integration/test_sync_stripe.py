"""`ledgerhook sync` against respx standing in for Stripe's object APIs, on real PostgreSQL.

Objects come from the real fixtures (ledgerhook/demo/objects_api.Catalog), indented as an API may
send them, so that "stored exactly" means something: the stored body is the served slice.
"""

from __future__ import annotations

import json
import time
from datetime import UTC, datetime

import asyncpg
import httpx
import pytest
import respx

from alerts.sweep import sweep
from ingest.providers.base import fingerprint
from ledgerhook.settings import AlertSettings, Settings
from processors.replay import compare, rebuild
from processors.sync import run_sync
from tests.integration.sync_helpers import (
    STRIPE_KEY,
    ApiStandIn,
    rows,
    stripe_error,
    sync_settings,
    value,
)


def counter(name: str, **labels: str) -> float:
    from prometheus_client import REGISTRY

    return REGISTRY.get_sample_value(name, labels) or 0.0


@respx.mock(assert_all_mocked=True, assert_all_called=False)
async def test_pages_are_stored_exactly_applied_once_and_an_unchanged_refetch_is_a_duplicate(
    fresh_settings: Settings, fresh_pool: asyncpg.Pool, respx_mock: respx.MockRouter
) -> None:
    settings = sync_settings(fresh_settings)
    api = ApiStandIn(respx_mock, count=250)
    stored_before = counter(
        "ledgerhook_sync_objects_total",
        provider="stripe",
        object_type="customers",
        outcome="stored",
    )
    seen: list[int] = []

    summary = await run_sync(
        fresh_pool, settings, "stripe", types="customers", progress=lambda p: seen.append(p.listed)
    )

    (s,) = summary.lists
    assert (s.status, s.pages, s.listed, s.stored, s.duplicates, s.applied) == (
        "done",
        3,
        250,
        250,
        0,
        250,
    )
    assert s.total == 250 and seen == [100, 200, 250]
    # Stripe's pagination: the first page asks the total, the next ones start after the last id.
    params = api.params("/v1/customers")
    assert params[0] == {"limit": "100", "include[0]": "total_count"}
    assert [p.get("starting_after") for p in params] == [None, "cus_00000099", "cus_00000199"]
    # Every object is a delivery holding its exact bytes (indented as served), verified by key.
    deliveries = await rows(
        fresh_pool,
        "SELECT object_id, body, origin, event_type, event_created, verification, headers::text "
        "FROM audit.deliveries ORDER BY object_id",
    )
    assert len(deliveries) == 250
    first = deliveries[0]
    assert (
        bytes(first["body"])
        == json.dumps(api.catalog.stripe_object("customers", 0), indent=2).encode()
    )
    assert (first["origin"], first["event_type"]) == ("sync", "snapshot.customer")
    assert first["verification"] == f"fetched from the API with key {fingerprint(STRIPE_KEY)}"
    assert STRIPE_KEY not in first["verification"] and STRIPE_KEY not in first["headers"]
    assert first["event_created"] <= int(time.time())
    assert [h[0] for h in json.loads(first["headers"])] == ["date", "content-type"]
    # Applied as state, no anomalies, no "created" business changes for objects that existed.
    assert await value(fresh_pool, "SELECT count(*) FROM processors.customers") == 250
    assert (
        await value(fresh_pool, "SELECT email FROM processors.customers WHERE id = 'cus_00000007'")
        == "customer7@example.com"
    )
    assert await value(fresh_pool, "SELECT count(*) FROM processors.anomalies") == 0
    assert (
        await value(
            fresh_pool, "SELECT count(*) FROM processors.processed WHERE outcome = 'applied'"
        )
        == 250
    )
    cursor = (await rows(fresh_pool, "SELECT * FROM processors.sync_cursors"))[0]
    assert (cursor["status"], cursor["cursor"], cursor["pending"]) == ("done", None, [])
    assert (
        counter(
            "ledgerhook_sync_objects_total",
            provider="stripe",
            object_type="customers",
            outcome="stored",
        )
        == stored_before + 250
    )

    history = await value(fresh_pool, "SELECT count(*) FROM processors.history")
    again = await run_sync(fresh_pool, settings, "stripe", types="customers")
    (s2,) = again.lists
    assert (s2.stored, s2.duplicates, s2.applied) == (0, 250, 250)
    assert await value(fresh_pool, "SELECT count(*) FROM processors.history") == history
    assert (
        await value(
            fresh_pool, "SELECT count(*) FROM processors.processed WHERE outcome = 'duplicate'"
        )
        == 250
    )

    # A changed object is a new state (fetched in a later second: one fetch per object and
    # second is what Stripe's one-second times can order); the replay gives the live state.
    time.sleep(max(0.0, first["event_created"] + 1.05 - time.time()))
    api.catalog.changes[("stripe", "customers", "cus_00000003")] = {"email": "new@example.com"}
    third = await run_sync(fresh_pool, settings, "stripe", types="customers")
    assert (third.lists[0].stored, third.lists[0].duplicates) == (1, 249)
    assert (
        await value(fresh_pool, "SELECT email FROM processors.customers WHERE id = 'cus_00000003'")
        == "new@example.com"
    )
    async with fresh_pool.acquire() as conn:
        await rebuild(conn)
        assert await compare(conn) == []


@respx.mock(assert_all_mocked=True, assert_all_called=False)
async def test_429_waits_the_retry_after_it_was_given(
    fresh_settings: Settings, fresh_pool: asyncpg.Pool, respx_mock: respx.MockRouter
) -> None:
    settings = sync_settings(fresh_settings)
    api = ApiStandIn(respx_mock, count=30)
    api.faults = [stripe_error(429, "rate_limit", **{"Retry-After": "1"})]
    before = counter(
        "ledgerhook_provider_api_errors_total",
        provider="stripe",
        operation="sync",
        kind="rate_limited",
    )
    started = time.monotonic()
    summary = await run_sync(fresh_pool, settings, "stripe", types="customers")
    assert time.monotonic() - started >= 1.0  # not the 0.01 s backoff base
    assert summary.ok and summary.lists[0].stored == 30
    assert len(api.params("/v1/customers")) == 2
    assert (
        counter(
            "ledgerhook_provider_api_errors_total",
            provider="stripe",
            operation="sync",
            kind="rate_limited",
        )
        == before + 1
    )


@respx.mock(assert_all_mocked=True, assert_all_called=False)
async def test_500s_are_retried_by_the_sdk_then_by_ledgerhook(
    fresh_settings: Settings, fresh_pool: asyncpg.Pool, respx_mock: respx.MockRouter
) -> None:
    settings = sync_settings(fresh_settings, max_network_retries=1)
    api = ApiStandIn(respx_mock, count=30)
    # The SDK tries twice (one retry of its own) per call; Ledgerhook calls again after backoff.
    api.faults = [stripe_error(500), stripe_error(500), stripe_error(503)]
    summary = await run_sync(fresh_pool, settings, "stripe", types="customers")
    assert summary.ok and summary.lists[0].stored == 30
    assert len(api.params("/v1/customers")) == 4


@respx.mock(assert_all_mocked=True, assert_all_called=False)
async def test_timeouts_and_unreadable_answers_are_retried(
    fresh_settings: Settings, fresh_pool: asyncpg.Pool, respx_mock: respx.MockRouter
) -> None:
    settings = sync_settings(fresh_settings)
    api = ApiStandIn(respx_mock, count=30)
    api.faults = [
        httpx.ReadTimeout("slow"),
        httpx.Response(200, content=b'{"object": "list", "data": [{"id": '),  # cut short
        httpx.Response(200, content=b'{"object": "list", "data": "not a list"}'),
    ]
    summary = await run_sync(fresh_pool, settings, "stripe", types="customers")
    assert summary.ok and summary.lists[0].stored == 30
    assert await value(fresh_pool, "SELECT count(*) FROM audit.deliveries") == 30


@respx.mock(assert_all_mocked=True, assert_all_called=False)
async def test_a_provider_that_keeps_failing_stops_the_run_which_resumes_later(
    fresh_settings: Settings, fresh_pool: asyncpg.Pool, respx_mock: respx.MockRouter
) -> None:
    settings = sync_settings(
        fresh_settings,
        alerts=AlertSettings(provider_api_failures_threshold=2, auto_resolve_after_seconds=0),
    )
    api = ApiStandIn(respx_mock, count=250)
    original = api._answer
    broken = {"on": False}

    def flaky(request: httpx.Request) -> httpx.Response:
        if broken["on"] and request.url.params.get("starting_after"):
            api.requests.append(request)
            return stripe_error(500)
        return original(request)

    respx_mock.routes.clear()
    respx_mock.route(host="stripe.test").mock(side_effect=flaky)
    broken["on"] = True
    for run in (1, 2):
        summary = await run_sync(fresh_pool, settings, "stripe", types="customers")
        (s,) = summary.lists
        assert s.status == "failed" and "server_error" in (s.error or "")
        cursor = (await rows(fresh_pool, "SELECT * FROM processors.sync_cursors"))[0]
        assert (cursor["status"], cursor["cursor"]) == ("failed", "cus_00000099")
        assert cursor["consecutive_failures"] == run
    # Never half-applied: the first page is in the log and applied; nothing after it.
    assert await value(fresh_pool, "SELECT count(*) FROM audit.deliveries") == 100
    assert await value(fresh_pool, "SELECT count(*) FROM processors.customers") == 100
    # Two failed runs in a row: on-call hears about it.
    now = datetime.now(UTC)
    await sweep(fresh_pool, settings, now)
    alert = await rows(fresh_pool, "SELECT * FROM alerts.alerts WHERE rule = 'provider_api'")
    assert len(alert) == 1 and alert[0]["status"] == "open"
    assert "stripe's API failed 2 sync runs" in alert[0]["summary"]

    broken["on"] = False
    resumed = await run_sync(fresh_pool, settings, "stripe", types="customers")
    (s,) = resumed.lists
    assert (s.status, s.resumed, s.listed, s.stored, s.duplicates) == ("done", True, 150, 150, 0)
    resumed_params = api.params("/v1/customers")[-2:]
    assert [p.get("starting_after") for p in resumed_params] == ["cus_00000099", "cus_00000199"]
    assert await value(fresh_pool, "SELECT count(*) FROM audit.deliveries") == 250
    await sweep(fresh_pool, settings, datetime.now(UTC))
    assert (
        await value(fresh_pool, "SELECT status FROM alerts.alerts WHERE rule = 'provider_api'")
        == "resolved"
    )


@respx.mock(assert_all_mocked=True, assert_all_called=False)
async def test_a_deleted_cursor_object_continues_from_its_second(
    fresh_settings: Settings, fresh_pool: asyncpg.Pool, respx_mock: respx.MockRouter
) -> None:
    settings = sync_settings(fresh_settings)
    api = ApiStandIn(respx_mock, count=250)
    # The first run stops after the first page: the provider fails.
    first_pages = {"n": 0}
    original = api._answer

    def first_page_then_500(request: httpx.Request) -> httpx.Response:
        first_pages["n"] += 1
        if first_pages["n"] > 1:
            return stripe_error(500)
        return original(request)

    respx_mock.routes.clear()
    route = respx_mock.route(host="stripe.test").mock(side_effect=first_page_then_500)
    failed = await run_sync(fresh_pool, settings, "stripe", types="customers")
    assert failed.lists[0].status == "failed"
    # The object the cursor names is deleted meanwhile: Stripe refuses starting_after.
    api.catalog.deleted.add(("stripe", "customers", "cus_00000099"))
    route.mock(side_effect=original)
    summary = await run_sync(fresh_pool, settings, "stripe", types="customers")
    (s,) = summary.lists
    assert s.status == "done"
    params = api.params("/v1/customers")
    assert params[-3]["starting_after"] == "cus_00000099"  # refused (resource_missing)
    assert params[-2]["created[lte]"] == str(1_700_000_000 - 99)  # from the cursor's second
    assert (
        await value(fresh_pool, "SELECT count(DISTINCT object_id) FROM audit.deliveries") == 250
    )  # 0-99 by the first run (99 included), 100-249 by the resumed one
    assert (
        await value(fresh_pool, "SELECT count(*) FROM audit.deliveries WHERE duplicate_of IS NULL")
        == 250
    )


@respx.mock(assert_all_mocked=True, assert_all_called=False)
async def test_since_lists_only_newer_objects_and_subscriptions_include_canceled(
    fresh_settings: Settings, fresh_pool: asyncpg.Pool, respx_mock: respx.MockRouter
) -> None:
    settings = sync_settings(fresh_settings)
    api = ApiStandIn(respx_mock, count=50)
    summary = await run_sync(
        fresh_pool, settings, "stripe", types="subscriptions", since=1_700_000_000 - 9
    )
    assert summary.lists[0].stored == 10
    (params,) = api.params("/v1/subscriptions")
    assert params["created[gte]"] == str(1_700_000_000 - 9) and params["status"] == "all"
    assert await value(fresh_pool, "SELECT count(*) FROM processors.subscriptions") == 10


async def test_a_second_sync_of_the_same_endpoint_is_refused(
    fresh_settings: Settings, fresh_pool: asyncpg.Pool
) -> None:
    from processors.errors import SyncBusy
    from processors.sync.runner import _lock_key, target

    settings = sync_settings(fresh_settings)
    key = _lock_key(target(settings, "stripe", None))
    async with fresh_pool.acquire() as conn:
        await conn.execute("SELECT pg_advisory_lock(hashtextextended($1, 0))", key)
        try:
            with pytest.raises(SyncBusy):
                await run_sync(fresh_pool, settings, "stripe", types="customers")
        finally:
            await conn.execute("SELECT pg_advisory_unlock(hashtextextended($1, 0))", key)
