"""Drift checks against respx stand-ins of the providers, on real PostgreSQL: drift found,
alerted, repaired through the pipeline, resolved; objects gone; the budgeted sweep."""

from __future__ import annotations

import json
import time
from datetime import UTC, datetime, timedelta
from typing import cast

import asyncpg
import msgspec
import respx

from alerts.drift import run_drift
from alerts.drift.check import drift_sweep
from alerts.sweep import sweep
from audit.append import NewDelivery, append_deliveries
from ledgerhook.settings import AlertSettings, DriftSettings, Settings
from processors.service import process_delivery
from processors.sync import run_sync
from tests.conftest import fixture_bytes
from tests.integration.sync_helpers import ApiStandIn, rows, stripe_error, sync_settings, value


async def _synced(pool: asyncpg.Pool, settings: Settings, provider: str, types: str) -> None:
    summary = await run_sync(pool, settings, provider, types=types)
    assert summary.ok
    # A later fetch must fall in a later second than the sync (Stripe times are whole seconds).
    time.sleep(1.05)


async def _alert(pool: asyncpg.Pool, subject: str) -> asyncpg.Record:
    (alert,) = await rows(
        pool,
        "SELECT * FROM alerts.alerts WHERE rule = 'state_drift' AND subject = $1 ORDER BY id DESC LIMIT 1",
        subject,
    )
    return alert


@respx.mock(assert_all_mocked=True, assert_all_called=False)
async def test_drift_is_found_alerted_repaired_and_resolved(
    fresh_settings: Settings, fresh_pool: asyncpg.Pool, respx_mock: respx.MockRouter
) -> None:
    settings = sync_settings(fresh_settings)
    api = ApiStandIn(respx_mock, count=5)
    await _synced(fresh_pool, settings, "stripe", "customers")
    # A change made in Stripe's dashboard that no webhook told Ledgerhook about.
    api.catalog.changes[("stripe", "customers", "cus_00000002")] = {
        "email": "changed@example.com",
        "name": "Renamed Ltd",
    }
    subject = "stripe:acct_test:customer:cus_00000002"

    found = await run_drift(fresh_pool, settings, "stripe", object_type="customer")
    assert (found.checked, found.matched, found.drifted, found.repaired) == (5, 4, 1, 0)
    alert = await _alert(fresh_pool, subject)
    assert alert["status"] == "open"
    assert alert["summary"] == (
        "customer cus_00000002 (stripe/acct_test) differs from stripe: email, name"
    )
    evidence = json.loads(alert["evidence"])
    assert evidence["fields"]["email"] == {
        "state": "customer2@example.com",
        "provider": "changed@example.com",
    }
    # Checking never edits state; checking again keeps one alert.
    await run_drift(fresh_pool, settings, "stripe", object_id="cus_00000002")
    assert (
        await value(fresh_pool, "SELECT email FROM processors.customers WHERE id = 'cus_00000002'")
        == "customer2@example.com"
    )
    assert (
        await value(fresh_pool, "SELECT count(*) FROM alerts.alerts WHERE rule = 'state_drift'")
        == 1
    )

    repaired = await run_drift(
        fresh_pool, settings, "stripe", object_id="cus_00000002", repair=True
    )
    assert (repaired.drifted, repaired.repaired) == (1, 1)
    (d,) = repaired.drifts
    assert d.repaired and d.repair_delivery_id is not None
    delivery = (
        await rows(
            fresh_pool,
            "SELECT origin, event_type, body FROM audit.deliveries WHERE id = $1",
            d.repair_delivery_id,
        )
    )[0]
    assert (delivery["origin"], delivery["event_type"]) == ("sync", "snapshot.customer")
    assert json.loads(delivery["body"])["email"] == "changed@example.com"
    assert (
        await value(fresh_pool, "SELECT email FROM processors.customers WHERE id = 'cus_00000002'")
        == "changed@example.com"
    )
    alert = await _alert(fresh_pool, subject)
    assert (alert["status"], alert["resolution"], alert["resolved_by"]) == (
        "resolved",
        "auto",
        "system",
    )
    notes = await rows(
        fresh_pool,
        "SELECT to_status, note FROM alerts.alert_events WHERE alert_id = $1 ORDER BY id",
        alert["id"],
    )
    assert [n["to_status"] for n in notes] == ["open", "resolved"]
    assert f"delivery {d.repair_delivery_id}" in notes[-1]["note"]
    assert (await run_drift(fresh_pool, settings, "stripe", object_id="cus_00000002")).matched == 1


@respx.mock(assert_all_mocked=True, assert_all_called=False)
async def test_an_alert_resolves_when_the_drift_is_gone(
    fresh_settings: Settings, fresh_pool: asyncpg.Pool, respx_mock: respx.MockRouter
) -> None:
    settings = sync_settings(fresh_settings)
    api = ApiStandIn(respx_mock, count=3)
    await _synced(fresh_pool, settings, "chargebee", "subscriptions")
    rv = api.catalog.chargebee_object("subscriptions", 1)["resource_version"]
    api.catalog.changes[("chargebee", "subscriptions", "subs_00000001")] = {
        "status": "cancelled",
        "resource_version": rv + 5,
    }
    report = await run_drift(fresh_pool, settings, "chargebee", object_type="subscription")
    assert report.drifted == 1
    alert = await _alert(fresh_pool, "chargebee:acme-test:subscription:subs_00000001")
    assert "status" in json.loads(alert["evidence"])["fields"]
    # Whoever changed it changes it back: the next check finds no drift and resolves the alert.
    del api.catalog.changes[("chargebee", "subscriptions", "subs_00000001")]
    report = await run_drift(fresh_pool, settings, "chargebee", object_id="subs_00000001")
    assert (report.matched, report.resolved) == (1, [alert["id"]])
    alert = await _alert(fresh_pool, "chargebee:acme-test:subscription:subs_00000001")
    assert alert["status"] == "resolved"


@respx.mock(assert_all_mocked=True, assert_all_called=False)
async def test_objects_the_provider_deleted(
    fresh_settings: Settings, fresh_pool: asyncpg.Pool, respx_mock: respx.MockRouter
) -> None:
    settings = sync_settings(fresh_settings)
    api = ApiStandIn(respx_mock, count=3)
    await run_sync(fresh_pool, settings, "stripe", types="customers,invoices")
    time.sleep(1.05)
    api.catalog.deleted.add(("stripe", "invoices", "in_00000001"))  # a deleted draft: 404
    api.catalog.deleted.add(("stripe", "customers", "cus_00000001"))  # {"deleted": true}

    report = await run_drift(fresh_pool, settings, "stripe", repair=True)
    assert (report.gone, report.drifted, report.repaired) == (1, 2, 1)
    gone = await _alert(fresh_pool, "stripe:acct_test:invoice:in_00000001")
    assert gone["status"] == "open"  # nothing to append: on-call decides
    assert gone["summary"].endswith("is in the billing state but stripe no longer has it")
    # The deleted customer: the tombstone kept its fields and marked it deleted.
    (customer,) = await rows(
        fresh_pool, "SELECT deleted, email FROM processors.customers WHERE id = 'cus_00000001'"
    )
    assert (customer["deleted"], customer["email"]) == (True, "customer1@example.com")
    assert (await _alert(fresh_pool, "stripe:acct_test:customer:cus_00000001"))[
        "status"
    ] == "resolved"


@respx.mock(assert_all_mocked=True, assert_all_called=False)
async def test_objects_about_to_change_or_newer_than_the_fetch_are_skipped(
    fresh_settings: Settings, fresh_pool: asyncpg.Pool, respx_mock: respx.MockRouter
) -> None:
    settings = sync_settings(fresh_settings)
    api = ApiStandIn(respx_mock, count=2)
    await _synced(fresh_pool, settings, "stripe", "customers")
    api.catalog.changes[("stripe", "customers", "cus_00000000")] = {"email": "x@example.com"}
    api.catalog.changes[("stripe", "customers", "cus_00000001")] = {"email": "y@example.com"}

    def webhook(object_id: str, created: int, email: str) -> NewDelivery:
        ev = json.loads(fixture_bytes("stripe", "customer_updated.json"))
        ev.update(id=f"evt_drift_{object_id}", created=created)
        ev["data"]["object"].update(id=object_id, email=email)
        return NewDelivery(
            received_at=datetime.now(UTC),
            provider="stripe",
            endpoint="default",
            account="acct_test",
            event_id=ev["id"],
            event_type="customer.updated",
            event_created=created,
            object_id=object_id,
            source_address="127.0.0.1",
            content_type="application/json",
            headers="[]",
            verification="stripe-v1:key=test",
            body=msgspec.json.encode(ev),
        )

    async with fresh_pool.acquire() as conn:
        # cus_0: a webhook stored but not applied yet; cus_1: an event newer than any fetch now.
        await append_deliveries(cast(asyncpg.Connection, conn), [webhook("cus_00000000", 1, "z@z")])
        (newer,) = await append_deliveries(
            cast(asyncpg.Connection, conn),
            [webhook("cus_00000001", int(time.time()) + 3600, "w@example.com")],
        )
        await process_delivery(conn, newer.id)
    report = await run_drift(fresh_pool, settings, "stripe", object_type="customer")
    assert (report.checked, report.skipped, report.drifted) == (2, 2, 0)
    assert await value(fresh_pool, "SELECT count(*) FROM alerts.alerts") == 0


@respx.mock(assert_all_mocked=True, assert_all_called=False)
async def test_the_sweep_covers_the_state_a_budget_at_a_time_and_reports_a_failing_api(
    fresh_settings: Settings, fresh_pool: asyncpg.Pool, respx_mock: respx.MockRouter
) -> None:
    base = sync_settings(
        fresh_settings,
        alerts=AlertSettings(provider_api_failures_threshold=1, auto_resolve_after_seconds=0),
    )
    # 90 calls a minute over a 2-second interval: 3 objects per run, 0.67 s apart.
    settings = msgspec.structs.replace(
        base, drift=DriftSettings(interval_seconds=2, calls_per_minute=90)
    )
    api = ApiStandIn(respx_mock, count=4)
    await _synced(fresh_pool, settings, "stripe", "customers,subscriptions")  # 8 objects

    seen: list[str] = []
    for _ in range(3):
        before = len(api.requests)
        (report,) = await drift_sweep(fresh_pool, settings, ["stripe"])
        assert report.error is None
        seen += [r.url.path.rsplit("/", 1)[1] for r in api.requests[before:]]
    assert seen == [
        "cus_00000000",
        "cus_00000001",
        "cus_00000002",
        "cus_00000003",
        "sub_00000000",
        "sub_00000001",
        "sub_00000002",
        "sub_00000003",
    ]
    (pos,) = await rows(fresh_pool, "SELECT * FROM alerts.drift_positions")
    assert (pos["passes"], pos["object_type"], pos["last_id"], pos["checked"]) == (1, "", "", 8)

    api.faults = [stripe_error(500)] * 10
    (failed,) = await drift_sweep(fresh_pool, settings, ["stripe"])
    assert failed.error is not None and "server_error" in failed.error
    (pos,) = await rows(fresh_pool, "SELECT * FROM alerts.drift_positions")
    assert pos["consecutive_failures"] == 1 and (pos["object_type"], pos["last_id"]) == ("", "")
    await sweep(fresh_pool, settings, datetime.now(UTC))
    assert (
        await value(fresh_pool, "SELECT subject FROM alerts.alerts WHERE rule = 'provider_api'")
        == "stripe:drift"
    )

    api.faults = []
    await drift_sweep(fresh_pool, settings, ["stripe"])
    await sweep(fresh_pool, settings, datetime.now(UTC) + timedelta(seconds=1))
    assert (
        await value(fresh_pool, "SELECT status FROM alerts.alerts WHERE rule = 'provider_api'")
        == "resolved"
    )
