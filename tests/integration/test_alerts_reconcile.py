"""Reconciliation and fetch-back against respx-mocked Stripe and Chargebee APIs, on real PostgreSQL."""

from __future__ import annotations

import json
import time
from datetime import UTC, datetime
from typing import Any, cast

import asyncpg
import httpx
import msgspec
import pytest
import respx
from litestar.testing import AsyncTestClient

from alerts.errors import NotConfigured
from alerts.fetchback import run_fetch_back
from alerts.reconcile import reconcile
from audit.append import NewDelivery, append_deliveries
from audit.tokens import create_token
from ledgerhook.app import create_app
from ledgerhook.db import create_pool
from ledgerhook.settings import EndpointSettings, Secret, Settings
from processors.service import process_delivery
from tests.conftest import CHARGEBEE_AUTH, STRIPE_SECRET, fixture_bytes, make_settings
from tests.integration.audit_helpers import integrate

STRIPE_BASE = "https://stripe.test"
CHARGEBEE_BASE = "https://acme-test.chargebee.test"


def api_settings(fresh: Settings, *, fetch_back: bool = False) -> Settings:
    return make_settings(
        fresh.database_url.reveal().rsplit("/", 1)[1],
        stripe_api_key=Secret("sk_test_reconcile_key"),
        stripe_api_base=STRIPE_BASE,
        chargebee_api_key=Secret("cb_test_api_key"),
        chargebee_api_base=CHARGEBEE_BASE,
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
                fetch_back=fetch_back,
            ),
        ),
    )


def stripe_raw(fixture: str, *, event_id: str, created: int, object_id: str) -> bytes:
    """A Stripe event as the API would list it: pretty-printed, so byte-exactness is visible."""
    data = msgspec.json.decode(fixture_bytes("stripe", fixture))
    data["id"] = event_id
    data["created"] = created
    data["data"]["object"]["id"] = object_id
    return json.dumps(data, indent=2).encode()


def stripe_delivery(raw: bytes) -> NewDelivery:
    ev = msgspec.json.decode(raw)
    return NewDelivery(
        received_at=datetime.now(UTC),
        provider="stripe",
        endpoint="default",
        account="acct_test",
        event_id=ev["id"],
        event_type=ev["type"],
        event_created=ev["created"],
        object_id=ev["data"]["object"]["id"],
        source_address="127.0.0.1",
        content_type="application/json",
        headers="[]",
        verification="stripe-v1:key=test",
        body=raw,
    )


def cb_event(*, event_id: str, sub_id: str, version: int, amount: int = 11667) -> dict[str, Any]:
    ev: dict[str, Any] = msgspec.json.decode(
        fixture_bytes("chargebee", "event_subscription_created_retrieve.json")
    )["event"]
    ev["id"] = event_id
    ev["occurred_at"] = int(time.time()) - 300
    ev["content"]["subscription"]["id"] = sub_id
    ev["content"]["subscription"]["resource_version"] = version
    ev["content"]["subscription"]["subscription_items"][0]["amount"] = amount
    return ev


def cb_delivery(body: bytes, *, endpoint: str = "default") -> NewDelivery:
    ev = msgspec.json.decode(body)
    return NewDelivery(
        received_at=datetime.now(UTC),
        provider="chargebee",
        endpoint=endpoint,
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


async def store_and_apply(pool: asyncpg.Pool, deliveries: list[NewDelivery]) -> None:
    async with pool.acquire() as conn:
        for d in deliveries:
            (a,) = await append_deliveries(cast(asyncpg.Connection, conn), [d])
            await integrate(conn)
            await process_delivery(cast(asyncpg.Connection, conn), a.id)


@respx.mock(assert_all_mocked=True)
async def test_stripe_reconciliation_finds_alerts_backfills_and_applies_dropped_events(
    fresh_settings: Settings, respx_mock: respx.MockRouter
) -> None:
    settings = api_settings(fresh_settings)
    now = int(time.time())
    specs = [
        ("subscription_created.json", "sub_rec_1"),
        ("subscription_created.json", "sub_rec_2"),
        ("subscription_created.json", "sub_rec_3"),  # dropped
        ("subscription_created.json", "sub_rec_4"),
        ("invoice_paid.json", "in_rec_1"),
        ("subscription_created.json", "sub_rec_5"),
        ("invoice_finalized.json", "in_rec_2"),  # dropped
    ]
    raws = [
        stripe_raw(f, event_id=f"evt_rec_{i}", created=now - 1000 + i, object_id=obj)
        for i, (f, obj) in enumerate(specs)
    ]
    dropped = {2, 6}
    newest_first = list(reversed(raws))  # Stripe lists newest first
    pages = [newest_first[0:3], newest_first[3:6], newest_first[6:]]
    seen_params: list[dict[str, str]] = []

    def listing(request: httpx.Request) -> httpx.Response:
        params = dict(request.url.params)
        seen_params.append(params)
        assert request.headers["authorization"] == "Bearer sk_test_reconcile_key"
        if params.get("delivery_success") == "false":
            page, more = [raws[2]], False  # Stripe knows it failed to deliver this one
        else:
            after = params.get("starting_after")
            index = (
                0
                if after is None
                else next(
                    i + 1 for i, p in enumerate(pages) if msgspec.json.decode(p[-1])["id"] == after
                )
            )
            page, more = pages[index], index < len(pages) - 1
        body = (
            b'{\n  "object": "list",\n  "data": [\n'
            + b",\n".join(page)
            + b'\n  ],\n  "has_more": '
            + (b"true" if more else b"false")
            + b',\n  "url": "/v1/events"\n}'
        )
        return httpx.Response(200, content=body, headers={"content-type": "application/json"})

    respx_mock.get(host="stripe.test", path="/v1/events").mock(side_effect=listing)
    pool = await create_pool(settings)
    try:
        await store_and_apply(
            pool, [stripe_delivery(r) for i, r in enumerate(raws) if i not in dropped]
        )
        progress: list[tuple[int, int, int]] = []
        summary = await reconcile(
            pool, settings, "stripe", 7200, progress=lambda *a: progress.append(a)
        )
        assert summary.pages == 4 and summary.listed == 7 and summary.present == 5
        assert summary.missing == 2 and len(summary.backfilled) == 2 and summary.applied == 2
        assert progress[-1] == (4, 7, 2)
        assert all(int(p["created[gte]"]) >= now - 7200 - 5 for p in seen_params)
        assert [p.get("starting_after") for p in seen_params if "delivery_success" not in p] == [
            None,
            "evt_rec_4",
            "evt_rec_1",
        ]

        async with pool.acquire() as conn:
            rows = await conn.fetch(
                "SELECT id, event_id, origin, verification, body, endpoint, account "
                "FROM audit.deliveries WHERE id = ANY($1::bigint[]) ORDER BY id",
                summary.backfilled,
            )
            assert [r["event_id"] for r in rows] == ["evt_rec_2", "evt_rec_6"]  # oldest first
            for r in rows:
                assert r["origin"] == "reconciliation" and r["verification"] == "reconciliation:api"
                assert (r["endpoint"], r["account"]) == ("default", "acct_test")
                assert bytes(r["body"]) == raws[int(r["event_id"].rsplit("_", 1)[1])]  # exact bytes
            sub = await conn.fetchrow(
                "SELECT last_delivery_id FROM processors.subscriptions "
                "WHERE provider = 'stripe' AND account = 'acct_test' AND id = 'sub_rec_3'"
            )
            assert sub is not None and sub["last_delivery_id"] == rows[0]["id"]
            processed = await conn.fetch(
                "SELECT outcome FROM processors.processed WHERE delivery_id = ANY($1::bigint[])",
                summary.backfilled,
            )
            assert len(processed) == 2
            alerts = await conn.fetch(
                "SELECT id, subject, delivery_ids, evidence FROM alerts.alerts "
                "WHERE rule = 'missing_event' ORDER BY subject"
            )
        assert [a["subject"] for a in alerts] == [
            "stripe:acct_test:evt_rec_2",
            "stripe:acct_test:evt_rec_6",
        ]
        assert sorted(a["id"] for a in alerts) == sorted(summary.alerts)
        evidence = {a["subject"]: msgspec.json.decode(a["evidence"]) for a in alerts}
        assert evidence["stripe:acct_test:evt_rec_2"]["provider_reports_delivery_failed"] is True
        assert evidence["stripe:acct_test:evt_rec_6"]["provider_reports_delivery_failed"] is None
        assert [list(a["delivery_ids"]) for a in alerts] == [[i] for i in summary.backfilled]

        # A second run finds nothing missing: backfilled events are in audit.events now.
        again = await reconcile(pool, settings, "stripe", 7200)
        assert again.missing == 0 and again.backfilled == [] and again.alerts == []
        # Retention: a 90-day window is clamped to Stripe's 30 days.
        clamped = await reconcile(pool, settings, "stripe", 90 * 86400)
        assert clamped.clamped and clamped.until - clamped.since == 30 * 86400
        # Each run is on record (audit.reconciliation_runs): the console's last reconciliation.
        async with pool.acquire() as conn:
            runs = await conn.fetch(
                "SELECT listed, missing, backfilled, clamped FROM audit.reconciliation_runs "
                "WHERE provider = 'stripe' ORDER BY id"
            )
        assert [tuple(r) for r in runs] == [
            (summary.listed, 2, len(summary.backfilled), False),
            (again.listed, 0, 0, False),
            (clamped.listed, 0, 0, True),
        ]
    finally:
        await pool.close()


@respx.mock(assert_all_mocked=True)
async def test_chargebee_reconciliation_pages_with_next_offset(
    fresh_settings: Settings, respx_mock: respx.MockRouter
) -> None:
    settings = api_settings(fresh_settings)
    events = [
        cb_event(event_id=f"ev_cbrec_{i}", sub_id=f"cbsub_rec_{i}", version=1_702_645_601_000 + i)
        for i in range(3)
    ]
    bodies = [msgspec.json.encode(e) for e in events]

    def listing(request: httpx.Request) -> httpx.Response:
        assert request.headers["authorization"].startswith("Basic ")
        params = dict(request.url.params)
        assert int(params["occurred_at[after]"]) < int(time.time())
        if params.get("offset") is None:
            body = (
                b'{"list": [{"event": '
                + bodies[0]
                + b'}, {"event": '
                + bodies[1]
                + b'}], "next_offset": "[\\"1\\"]"}'
            )
        else:
            assert params["offset"] == '["1"]'
            body = b'{"list": [{"event": ' + bodies[2] + b"}]}"
        return httpx.Response(200, content=body)

    route = respx_mock.get(f"{CHARGEBEE_BASE}/api/v2/events").mock(side_effect=listing)
    pool = await create_pool(settings)
    try:
        await store_and_apply(pool, [cb_delivery(bodies[0]), cb_delivery(bodies[2])])
        summary = await reconcile(pool, settings, "chargebee", 3600)
        assert route.call_count == 2
        assert (summary.listed, summary.present, summary.missing, summary.applied) == (3, 2, 1, 1)
        async with pool.acquire() as conn:
            row = await conn.fetchrow(
                "SELECT origin, body, object_id FROM audit.deliveries WHERE id = $1",
                summary.backfilled[0],
            )
            assert row is not None and row["origin"] == "reconciliation"
            assert bytes(row["body"]) == bodies[1] and row["object_id"] == "cbsub_rec_1"
            state = await conn.fetchval(
                "SELECT last_delivery_id FROM processors.subscriptions "
                "WHERE provider = 'chargebee' AND account = 'acme-test' AND id = 'cbsub_rec_1'"
            )
            assert state == summary.backfilled[0]
            subjects = await conn.fetch(
                "SELECT subject FROM alerts.alerts WHERE rule = 'missing_event'"
            )
        assert [s["subject"] for s in subjects] == ["chargebee:acme-test:ev_cbrec_1"]
    finally:
        await pool.close()


@respx.mock(assert_all_mocked=True)
async def test_chargebee_fetch_back_flags_a_forged_delivery(
    fresh_settings: Settings, respx_mock: respx.MockRouter
) -> None:
    settings = api_settings(fresh_settings, fetch_back=True)
    genuine = cb_event(event_id="ev_fb_genuine", sub_id="cbsub_fb_1", version=1_702_645_601_001)
    original = cb_event(event_id="ev_fb_forged", sub_id="cbsub_fb_2", version=1_702_645_601_002)
    forged = cb_event(
        event_id="ev_fb_forged", sub_id="cbsub_fb_2", version=1_702_645_601_002, amount=1
    )
    api = {"ev_fb_genuine": genuine, "ev_fb_forged": original}
    down = {"flag": False}

    def retrieve(request: httpx.Request) -> httpx.Response:
        if down["flag"]:
            return httpx.Response(503)
        event_id = request.url.path.rsplit("/", 1)[1]
        if event_id not in api:
            return httpx.Response(404, json={"message": "not found"})
        return httpx.Response(
            200, content=b'{"event": ' + json.dumps(api[event_id]).encode() + b"}"
        )

    respx_mock.get(url__regex=rf"{CHARGEBEE_BASE}/api/v2/events/.+").mock(side_effect=retrieve)
    pool = await create_pool(settings)
    try:
        # key order differs from the API's copy on purpose: meaning, not bytes, is compared
        genuine_body = msgspec.json.Encoder(order="sorted").encode(genuine)
        await store_and_apply(
            pool, [cb_delivery(genuine_body), cb_delivery(msgspec.json.encode(forged))]
        )
        now = datetime.now(UTC)
        assert await run_fetch_back(pool, settings, now) == (2, 1)
        assert await run_fetch_back(pool, settings, now) == (0, 0)  # tracked: never checked twice
        async with pool.acquire() as conn:
            checks = await conn.fetch(
                "SELECT d.event_id, c.outcome FROM alerts.fetch_back_checks c "
                "JOIN audit.deliveries d ON d.id = c.delivery_id ORDER BY d.event_id"
            )
            assert [(c["event_id"], c["outcome"]) for c in checks] == [
                ("ev_fb_forged", "mismatch"),
                ("ev_fb_genuine", "match"),
            ]
            alert = await conn.fetchrow(
                "SELECT * FROM alerts.alerts WHERE rule = 'fetch_back_mismatch'"
            )
        assert alert is not None and alert["severity"] == "critical"
        assert alert["subject"] == "chargebee:default:ev_fb_forged"
        evidence = msgspec.json.decode(alert["evidence"])
        assert evidence["delivered_sha256"] != evidence["fetched_sha256"]
        assert len(evidence["delivered_sha256"]) == 64 and len(evidence["fetched_sha256"]) == 64
        assert "content.subscription differs" in evidence["differences"]

        # Chargebee down: nothing is marked checked, and it resumes where it stopped.
        unknown = cb_event(event_id="ev_fb_unknown", sub_id="cbsub_fb_3", version=1_702_645_601_003)
        await store_and_apply(pool, [cb_delivery(msgspec.json.encode(unknown))])
        down["flag"] = True
        assert await run_fetch_back(pool, settings, now) == (0, 0)
        down["flag"] = False
        assert await run_fetch_back(pool, settings, now) == (1, 1)  # the API never heard of it
        async with pool.acquire() as conn:
            outcome = await conn.fetchval(
                "SELECT c.outcome FROM alerts.fetch_back_checks c JOIN audit.deliveries d "
                "ON d.id = c.delivery_id WHERE d.event_id = 'ev_fb_unknown'"
            )
        assert outcome == "not_found"
    finally:
        await pool.close()


async def test_reconcile_without_credentials_and_the_admin_route(fresh_settings: Settings) -> None:
    pool = await create_pool(fresh_settings)
    try:
        with pytest.raises(NotConfigured):
            await reconcile(pool, fresh_settings, "stripe", 3600)
        async with pool.acquire() as conn:
            oncall = await create_token(conn, name="rec-oncall", role="oncall")
            admin = await create_token(conn, name="rec-admin", role="admin")
    finally:
        await pool.close()
    async with AsyncTestClient(create_app(fresh_settings)) as client:
        body = {"provider": "stripe", "since_seconds": 3600}
        r = await client.post(
            "/reconcile", json=body, headers={"Authorization": f"Bearer {oncall}"}
        )
        assert r.status_code == 403
        h = {"Authorization": f"Bearer {admin}"}
        assert (
            await client.post("/reconcile", json={"provider": "paypal"}, headers=h)
        ).status_code == 400
        assert (
            await client.post("/reconcile", json={**body, "since_seconds": 0}, headers=h)
        ).status_code == 400
        r = await client.post("/reconcile", json=body, headers=h)
        assert r.status_code == 400 and "LEDGERHOOK_STRIPE_API_KEY" in r.json()["detail"]
        assert r.json()["error"] == "not_configured"
