"""The alert sweep end to end on real PostgreSQL: rules, dedup, lifecycle, API, notifiers, integrity."""

from __future__ import annotations

import asyncio
import random
from datetime import UTC, datetime, timedelta
from typing import Any, cast

import asyncpg
import httpx
import msgspec
import pytest
import respx
from litestar.testing import AsyncTestClient
from prometheus_client import REGISTRY

from alerts import lifecycle, notify
from alerts.model import Finding
from alerts.sweep import integrity_check, sweep
from audit.append import NewDelivery, append_deliveries
from audit.checkpoints import create_checkpoint, log_origin
from audit.tokens import create_token
from ledgerhook.app import create_app
from ledgerhook.log_gauges import read_state
from ledgerhook.settings import AlertSettings, EndpointSettings, Secret, Settings
from processors.service import process_delivery
from tests.conftest import CHARGEBEE_AUTH, STRIPE_SECRET, fixture_bytes, make_settings, superuser
from tests.integration.audit_helpers import integrate, log_signer

T0 = datetime(2026, 3, 1, 12, 0, tzinfo=UTC)
SUB_SEQUENCE = (
    ("subscription_created.json", "customer.subscription.created", 0),
    ("subscription_updated.json", "customer.subscription.updated", 10),
    ("subscription_updated.json", "customer.subscription.updated", 20),
    ("subscription_deleted.json", "customer.subscription.deleted", 30),
)


def stripe_event(fixture: str, *, event_id: str, type_: str, created: int, object_id: str) -> bytes:
    data = msgspec.json.decode(fixture_bytes("stripe", fixture))
    data["id"] = event_id
    data["type"] = type_
    data["created"] = created
    data["data"]["object"]["id"] = object_id
    return msgspec.json.encode(data)


def stripe_delivery(body: bytes, received_at: datetime | None = None) -> NewDelivery:
    ev = msgspec.json.decode(body)
    return NewDelivery(
        received_at=received_at or datetime.now(UTC),
        provider="stripe",
        endpoint="default",
        account="acct_test",
        event_id=ev["id"],
        event_type=ev["type"],
        event_created=ev["created"],
        object_id=ev["data"]["object"]["id"],
        source_address="127.0.0.1",
        content_type="application/json",
        headers='[["content-type","application/json"]]',
        verification="stripe-v1:key=test",
        body=body,
    )


async def deliver_and_process(pool: asyncpg.Pool, bodies: list[bytes]) -> list[int]:
    ids = []
    async with pool.acquire() as conn:
        for body in bodies:  # one append per delivery: arrival order = leaf order
            (a,) = await append_deliveries(cast(asyncpg.Connection, conn), [stripe_delivery(body)])
            ids.append(a.id)
            await integrate(conn)
            await process_delivery(cast(asyncpg.Connection, conn), a.id)
    return ids


async def open_alerts(pool: asyncpg.Pool, rule: str) -> dict[str, asyncpg.Record]:
    async with pool.acquire() as conn:
        rows = await conn.fetch(
            "SELECT * FROM alerts.alerts WHERE rule = $1 AND status <> 'resolved'", rule
        )
    return {r["subject"]: r for r in rows}


def gauge(rule: str, severity: str) -> float | None:
    return REGISTRY.get_sample_value("ledgerhook_alerts_open", {"rule": rule, "severity": severity})


@pytest.mark.parametrize("seed", [1, 7, 42])
async def test_shuffled_fixture_sequences_raise_exactly_the_expected_out_of_order_alerts(
    fresh_settings: Settings, fresh_pool: asyncpg.Pool, seed: int
) -> None:
    rng = random.Random(seed)
    base = 1_770_000_000
    events: list[tuple[str, int, bytes]] = []
    for s in range(4):
        sub = f"sub_ooo_{seed}_{s}"
        for i, (fixture, type_, offset) in enumerate(SUB_SEQUENCE):
            body = stripe_event(
                fixture,
                event_id=f"evt_ooo_{seed}_{s}_{i}",
                type_=type_,
                created=base + offset,
                object_id=sub,
            )
            events.append((sub, base + offset, body))
    rng.shuffle(events)

    # Expected from first principles: an event older than the newest already applied is stale.
    expected: dict[str, int] = {}
    newest: dict[str, int] = {}
    for sub, created, _ in events:
        if sub in newest and created < newest[sub]:
            expected[f"stripe:acct_test:subscription:{sub}"] = (
                expected.get(f"stripe:acct_test:subscription:{sub}", 0) + 1
            )
        newest[sub] = max(newest.get(sub, created), created)
    assert expected, "the shuffle should produce at least one out-of-order event"

    await deliver_and_process(fresh_pool, [b for _, _, b in events])
    # Two sweeps at once (two workers): each anomaly is claimed by one of them only.
    r1, r2 = await asyncio.gather(
        sweep(fresh_pool, fresh_settings, now=datetime.now(UTC)),
        sweep(fresh_pool, fresh_settings, now=datetime.now(UTC)),
    )
    opened = r1.opened + r2.opened
    alerts = await open_alerts(fresh_pool, "out_of_order")
    assert {s: r["count"] for s, r in alerts.items()} == expected
    assert sorted(opened) == sorted(r["id"] for r in alerts.values())
    for r in alerts.values():
        assert r["severity"] == "warning" and r["status"] == "open"
        assert len(r["delivery_ids"]) == r["count"]

    # A second sweep sees nothing new: no new alerts, counts unchanged.
    again = await sweep(fresh_pool, fresh_settings, now=datetime.now(UTC))
    assert [a for a in again.opened if a in {r["id"] for r in alerts.values()}] == []
    assert {
        s: r["count"] for s, r in (await open_alerts(fresh_pool, "out_of_order")).items()
    } == expected

    # Another stale event for the same object updates the open alert (dedup), count + 1.
    subject, row = sorted(alerts.items())[0]
    sub = subject.rsplit(":", 1)[1]
    late = stripe_event(
        "subscription_updated.json",
        event_id=f"evt_ooo_{seed}_late",
        type_="customer.subscription.updated",
        created=base + 5,
        object_id=sub,
    )
    await deliver_and_process(fresh_pool, [late])
    await sweep(fresh_pool, fresh_settings, now=datetime.now(UTC))
    after = await open_alerts(fresh_pool, "out_of_order")
    assert after[subject]["id"] == row["id"]
    assert after[subject]["count"] == row["count"] + 1
    async with fresh_pool.acquire() as conn:
        n = await conn.fetchval("SELECT count(*) FROM alerts.alerts WHERE rule = 'out_of_order'")
    assert n == len(expected)


async def test_missing_predecessor_waits_for_the_grace_period(
    fresh_settings: Settings, fresh_pool: asyncpg.Pool
) -> None:
    body = stripe_event(
        "subscription_updated.json",
        event_id="evt_mp_1",
        type_="customer.subscription.updated",
        created=1_770_000_100,
        object_id="sub_mp_1",
    )
    await deliver_and_process(fresh_pool, [body])
    now = datetime.now(UTC)
    await sweep(fresh_pool, fresh_settings, now=now)
    assert await open_alerts(fresh_pool, "missing_predecessor") == {}
    grace = fresh_settings.alerts.missing_predecessor_grace_seconds
    await sweep(fresh_pool, fresh_settings, now=now + timedelta(seconds=grace + 5))
    alerts = await open_alerts(fresh_pool, "missing_predecessor")
    assert list(alerts) == ["stripe:acct_test:subscription:sub_mp_1"]


def silent_settings(dbname: str, **alerts: Any) -> Settings:
    return make_settings(
        dbname,
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
                silence_after_seconds=60,
            ),
        ),
        alerts=AlertSettings(auto_resolve_after_seconds=100, **alerts),
    )


def chargebee_delivery(event_id: str, received_at: datetime) -> NewDelivery:
    ev = msgspec.json.decode(
        fixture_bytes("chargebee", "event_subscription_created_retrieve.json")
    )["event"]
    ev["id"] = event_id
    return NewDelivery(
        received_at=received_at,
        provider="chargebee",
        endpoint="default",
        account="acme-test",
        event_id=event_id,
        event_type=ev["event_type"],
        event_created=ev["occurred_at"],
        object_id=ev["content"]["subscription"]["id"],
        source_address="127.0.0.1",
        content_type="application/json",
        headers="[]",
        verification="chargebee-basic:test",
        body=msgspec.json.encode(ev),
    )


async def test_silence_fires_dedups_and_auto_resolves_with_history(
    fresh_settings: Settings,
) -> None:
    settings = silent_settings(fresh_settings.database_url.reveal().rsplit("/", 1)[1])
    from ledgerhook.db import create_pool

    pool = await create_pool(settings)
    try:
        await sweep(pool, settings, now=T0)  # starts watching the endpoint
        assert await open_alerts(pool, "silence") == {}
        r1 = await sweep(pool, settings, now=T0 + timedelta(seconds=120))
        alerts = await open_alerts(pool, "silence")
        assert list(alerts) == ["chargebee/default"]
        first = alerts["chargebee/default"]
        assert first["id"] in r1.opened
        assert gauge("silence", "warning") == 1

        # Still silent: the same alert is updated, not duplicated; count stays a state.
        r2 = await sweep(pool, settings, now=T0 + timedelta(seconds=180))
        assert r2.opened == []
        again = (await open_alerts(pool, "silence"))["chargebee/default"]
        assert again["id"] == first["id"] and again["count"] == 1
        assert again["last_seen"] == T0 + timedelta(seconds=180)

        # Deliveries resume; the alert resolves itself only after the quiet period.
        async with pool.acquire() as conn:
            await append_deliveries(
                cast(asyncpg.Connection, conn),
                [chargebee_delivery("ev_silence_1", T0 + timedelta(seconds=230))],
            )
        r3 = await sweep(pool, settings, now=T0 + timedelta(seconds=240))
        assert r3.resolved == []
        r4 = await sweep(pool, settings, now=T0 + timedelta(seconds=285))
        assert r4.resolved == [first["id"]]
        async with pool.acquire() as conn:
            alert = await lifecycle.get_alert(conn, first["id"])
            hist = await lifecycle.history(conn, first["id"])
        assert (
            alert.status == "resolved"
            and alert.resolution == "auto"
            and alert.resolved_by == "system"
        )
        assert [(h.actor, h.from_status, h.to_status) for h in hist] == [
            ("system", None, "open"),
            ("system", "open", "resolved"),
        ]
        assert gauge("silence", "warning") == 0
    finally:
        await pool.close()


async def test_alert_history_is_append_only(
    fresh_settings: Settings, fresh_pool: asyncpg.Pool
) -> None:
    async with fresh_pool.acquire() as conn:
        await lifecycle.apply_findings(
            conn,
            [
                Finding(
                    rule="rejections",
                    severity="warning",
                    provider="stripe",
                    subject="x",
                    summary="x",
                )
            ],
            T0,
        )
        for sql in (
            "UPDATE alerts.alert_events SET actor = 'me'",
            "DELETE FROM alerts.alert_events",
        ):
            with pytest.raises(asyncpg.PostgresError):
                await conn.execute(sql)
    admin = await superuser(fresh_settings)
    try:
        with pytest.raises(asyncpg.PostgresError, match="append-only"):
            await admin.execute("TRUNCATE alerts.alert_events CASCADE")
    finally:
        await admin.close()


async def test_api_ack_resolve_with_actor_history_and_409(
    fresh_settings: Settings, fresh_pool: asyncpg.Pool
) -> None:
    async with fresh_pool.acquire() as conn:
        tokens = {
            role: await create_token(conn, name=f"alice-{role}", role=role)  # type: ignore[arg-type]
            for role in ("auditor", "oncall", "admin")
        }
        fired = await lifecycle.apply_findings(
            conn,
            [
                Finding(
                    rule="silence",
                    severity="warning",
                    provider="chargebee",
                    subject="chargebee/default",
                    summary="quiet",
                    accumulate=False,
                ),
                Finding(
                    rule="processing",
                    severity="critical",
                    provider="stripe",
                    subject="dead_letter:stripe",
                    summary="dead",
                    delivery_ids=(3, 4),
                ),
            ],
            T0,
        )
    silence_id, dead_id = fired[0].alert_id, fired[1].alert_id

    def auth(role: str) -> dict[str, str]:
        return {"Authorization": f"Bearer {tokens[role]}"}

    async with AsyncTestClient(create_app(fresh_settings)) as client:
        assert (await client.get("/alerts")).status_code == 401
        r = await client.get("/alerts", headers=auth("auditor"))
        assert r.status_code == 200
        assert [a["id"] for a in r.json()["items"]] == [dead_id, silence_id]
        r = await client.get("/alerts?severity=critical", headers=auth("auditor"))
        assert [a["id"] for a in r.json()["items"]] == [dead_id]
        r = await client.get("/alerts?limit=1", headers=auth("auditor"))
        page1 = r.json()
        assert len(page1["items"]) == 1 and page1["next_cursor"]
        r = await client.get(
            f"/alerts?limit=1&cursor={page1['next_cursor']}", headers=auth("auditor")
        )
        assert [a["id"] for a in r.json()["items"]] == [silence_id] and r.json()[
            "next_cursor"
        ] is None
        for bad in (
            "/alerts?status=bogus",
            "/alerts?cursor=!!",
            "/alerts?colour=red",
            "/alerts?rule=nope",
        ):
            r = await client.get(bad, headers=auth("auditor"))
            assert r.status_code == 400, bad
        assert (await client.get("/alerts/999999", headers=auth("auditor"))).status_code == 404

        # auditors read; only on-call may change status
        assert (
            await client.post(f"/alerts/{silence_id}/ack", headers=auth("auditor"))
        ).status_code == 403
        r = await client.post(
            f"/alerts/{silence_id}/ack", headers=auth("oncall"), json={"note": "looking"}
        )
        assert r.status_code == 200 and r.json()["status"] == "acknowledged"
        assert r.json()["acknowledged_by"] == "alice-oncall"
        assert (
            await client.post(f"/alerts/{silence_id}/ack", headers=auth("oncall"))
        ).status_code == 409
        r = await client.post(
            f"/alerts/{silence_id}/resolve", headers=auth("admin"), json={"note": "fixed secret"}
        )
        assert r.status_code == 200 and r.json()["resolution"] == "manual"
        assert (
            await client.post(f"/alerts/{silence_id}/resolve", headers=auth("oncall"))
        ).status_code == 409
        assert (
            await client.post(f"/alerts/{silence_id}/ack", headers=auth("oncall"))
        ).status_code == 409
        r = await client.post(
            f"/alerts/{dead_id}/ack", headers=auth("oncall"), content=b'{"nope": 1}'
        )
        assert r.status_code == 400
        r = await client.post(
            f"/alerts/{dead_id}/resolve", headers=auth("oncall")
        )  # no body: no note
        assert r.status_code == 200

        r = await client.get(f"/alerts/{silence_id}", headers=auth("auditor"))
        detail = r.json()
        assert detail["alert"]["status"] == "resolved"
        assert [
            (h["actor"], h["from_status"], h["to_status"], h["note"]) for h in detail["history"]
        ] == [
            ("system", None, "open", "quiet"),
            ("alice-oncall", "open", "acknowledged", "looking"),
            ("alice-admin", "acknowledged", "resolved", "fixed secret"),
        ]
        r = await client.get("/alerts?status=resolved", headers=auth("auditor"))
        assert {a["id"] for a in r.json()["items"]} == {silence_id, dead_id}

    # Resolved means the same subject firing again opens a NEW alert.
    async with fresh_pool.acquire() as conn:
        (again,) = await lifecycle.apply_findings(
            conn,
            [
                Finding(
                    rule="silence",
                    severity="warning",
                    provider="chargebee",
                    subject="chargebee/default",
                    summary="quiet again",
                    accumulate=False,
                )
            ],
            T0 + timedelta(hours=1),
        )
    assert again.opened and again.alert_id not in (silence_id, dead_id)


SLACK = "https://hooks.slack.test/services/T000/B000/secretpart"
PAGERDUTY = "https://events.pagerduty.test/v2/enqueue"


@respx.mock(assert_all_mocked=True)
async def test_notifier_failures_retry_with_backoff_and_never_block_the_sweep(
    fresh_settings: Settings, respx_mock: respx.MockRouter
) -> None:
    dbname = fresh_settings.database_url.reveal().rsplit("/", 1)[1]
    settings = make_settings(
        dbname,
        endpoints=(
            EndpointSettings(
                provider="stripe",
                name="default",
                account="acct_test",
                secrets=(Secret(STRIPE_SECRET),),
                silence_after_seconds=30,
            ),
        ),
        alerts=AlertSettings(
            slack_webhook_url=Secret(SLACK),
            pagerduty_routing_key=Secret("rk_test_routing_key"),
            pagerduty_url=PAGERDUTY,
            auto_resolve_after_seconds=60,
        ),
    )
    slack = respx_mock.post(SLACK).mock(
        side_effect=[
            httpx.Response(500),
            httpx.Response(500),
            httpx.Response(200, text="ok"),
            httpx.Response(200, text="ok"),
        ]
    )
    pd = respx_mock.post(PAGERDUTY).mock(
        side_effect=[
            httpx.Response(500),
            httpx.Response(202, json={"status": "success"}),
            httpx.Response(202, json={"status": "success"}),
        ]
    )
    assert notify.channels(settings) == ("slack", "pagerduty")
    from ledgerhook.db import create_pool

    pool = await create_pool(settings)
    try:
        await sweep(pool, settings, now=T0)
        report = await sweep(pool, settings, now=T0 + timedelta(seconds=60))  # silent: opens
        assert len(report.opened) == 1 and report.notify_failed == 2 and report.notified == 0
        alert_id = report.opened[0]

        async def rows() -> dict[str, asyncpg.Record]:
            async with pool.acquire() as conn:
                rs = await conn.fetch(
                    "SELECT * FROM alerts.notifications WHERE alert_id = $1 AND action = 'trigger'",
                    alert_id,
                )
            return {r["channel"]: r for r in rs}

        first = await rows()
        assert {c: r["attempts"] for c, r in first.items()} == {"slack": 1, "pagerduty": 1}
        for r in first.values():
            assert (
                r["delivered_at"] is None and r["last_error"] == f"{r['channel']} answered HTTP 500"
            )
            assert "secretpart" not in r["last_error"]
        # Not due yet: nothing is sent before the backoff.
        assert await notify.deliver_due(pool, settings, T0 + timedelta(seconds=61)) == (0, 0)
        assert await notify.deliver_due(pool, settings, T0 + timedelta(seconds=91)) == (1, 1)
        assert await notify.deliver_due(pool, settings, T0 + timedelta(seconds=91 + 61)) == (1, 0)
        done = await rows()
        assert done["slack"]["attempts"] == 3 and done["slack"]["delivered_at"] is not None
        assert done["pagerduty"]["attempts"] == 2 and done["pagerduty"]["delivered_at"] is not None
        trigger = msgspec.json.decode(pd.calls[-1].request.content)
        assert trigger["event_action"] == "trigger" and trigger["dedup_key"] == str(alert_id)
        assert trigger["routing_key"] == "rk_test_routing_key"
        assert "OPEN" in msgspec.json.decode(slack.calls[-1].request.content)["text"]

        # Manual resolve: PagerDuty gets "resolve" with the same dedup key.
        async with pool.acquire() as conn:
            await lifecycle.resolve(
                conn,
                alert_id,
                actor="bob",
                now=T0 + timedelta(seconds=200),
                channels=notify.channels(settings),
            )
        assert await notify.deliver_due(pool, settings, T0 + timedelta(seconds=201)) == (2, 0)
        resolve = msgspec.json.decode(pd.calls[-1].request.content)
        assert resolve["event_action"] == "resolve" and resolve["dedup_key"] == str(alert_id)
    finally:
        await pool.close()


async def test_notifications_give_up_after_max_tries(fresh_settings: Settings) -> None:
    dbname = fresh_settings.database_url.reveal().rsplit("/", 1)[1]
    settings = make_settings(
        dbname,
        alerts=AlertSettings(
            slack_webhook_url=Secret("http://127.0.0.1:9/hook"), notify_max_tries=2
        ),
    )
    from ledgerhook.db import create_pool

    pool = await create_pool(settings)
    try:
        async with pool.acquire() as conn:
            await lifecycle.apply_findings(
                conn,
                [
                    Finding(
                        rule="rejections",
                        severity="warning",
                        provider="stripe",
                        subject="s",
                        summary="x",
                    )
                ],
                T0,
                notify.channels(settings),
            )
        assert await notify.deliver_due(pool, settings, T0) == (0, 1)  # connection refused
        assert await notify.deliver_due(pool, settings, T0 + timedelta(hours=1)) == (0, 1)
        assert await notify.deliver_due(pool, settings, T0 + timedelta(hours=3)) == (0, 0)
        async with pool.acquire() as conn:
            row = await conn.fetchrow("SELECT attempts, last_error FROM alerts.notifications")
        assert row is not None and row["attempts"] == 2 and row["last_error"] == "ConnectError"
    finally:
        await pool.close()


async def test_integrity_check_records_runs_and_alerts_on_tampering(
    fresh_settings: Settings, fresh_pool: asyncpg.Pool
) -> None:
    bodies = [
        stripe_event(
            "subscription_updated.json",
            event_id=f"evt_int_{i}",
            type_="customer.subscription.updated",
            created=1_770_000_000 + i,
            object_id="sub_int",
        )
        for i in range(3)
    ]
    origin = log_origin(fresh_settings)
    async with fresh_pool.acquire() as conn:
        await append_deliveries(
            cast(asyncpg.Connection, conn), [stripe_delivery(b) for b in bodies]
        )
        await integrate(conn)
        assert await create_checkpoint(conn, log_signer(), origin)
    status = await integrity_check(fresh_pool, fresh_settings, now=T0)
    assert status.ok and status.tree_size == 3
    async with fresh_pool.acquire() as conn:
        state = await read_state(conn)
        assert state.verification_ok is True and state.tree_size == 3
        added = await append_deliveries(
            cast(asyncpg.Connection, conn),
            [stripe_delivery(bodies[0].replace(b"evt_int_0", b"evt_int_9"))],
        )
        await integrate(conn)
    admin = await superuser(fresh_settings)
    try:
        await admin.execute("SET session_replication_role = replica")
        await admin.execute(
            "UPDATE audit.deliveries SET event_type = 'forged' WHERE id = $1", added[0].id
        )
    finally:
        await admin.close()
    status = await integrity_check(fresh_pool, fresh_settings, now=T0 + timedelta(hours=1))
    assert not status.ok and status.first_bad == f"leaf 3 (delivery {added[0].id})"
    async with fresh_pool.acquire() as conn:
        assert (await read_state(conn)).verification_ok is False  # what /metrics reports
    alerts = await open_alerts(fresh_pool, "integrity")
    assert list(alerts) == ["audit.log"]
    assert alerts["audit.log"]["severity"] == "critical"
    async with fresh_pool.acquire() as conn:  # no checkpoint blesses the tampered log
        assert await create_checkpoint(conn, log_signer(), origin) is None
        assert await conn.fetchval("SELECT max(tree_size) FROM audit.tree_checkpoints") == 3
    # A later sweep keeps it open: integrity alerts are resolved by people, never by time.
    await sweep(fresh_pool, fresh_settings, now=T0 + timedelta(days=2))
    assert list(await open_alerts(fresh_pool, "integrity")) == ["audit.log"]


async def test_processing_and_rejection_facts_from_real_tables(fresh_settings: Settings) -> None:
    dbname = fresh_settings.database_url.reveal().rsplit("/", 1)[1]
    settings = make_settings(
        dbname,
        alerts=AlertSettings(
            rejections_threshold=3, rejections_window_seconds=300, lag_threshold_seconds=60
        ),
    )
    from ledgerhook.db import create_pool

    pool = await create_pool(settings)
    try:
        now = datetime.now(UTC)
        bad = msgspec.json.encode(
            {
                "id": "evt_dead_1",
                "type": "customer.subscription.updated",
                "created": 1_770_000_000,
                "data": {"object": {"id": "sub_dead", "items": "not-a-list"}},
            }
        )
        await deliver_and_process(pool, [bad])
        old = stripe_event(
            "subscription_created.json",
            event_id="evt_lag_1",
            type_="customer.subscription.created",
            created=1_770_000_001,
            object_id="sub_lag",
        )
        async with pool.acquire() as conn:
            outcome = await conn.fetchval("SELECT outcome FROM processors.processed")
            assert outcome == "dead_letter"
            (lagging,) = await append_deliveries(
                cast(asyncpg.Connection, conn),
                [stripe_delivery(old, received_at=now - timedelta(seconds=120))],
            )
            await integrate(conn)
            for i in range(4):
                await conn.execute(
                    "INSERT INTO audit.rejections (received_at, provider, endpoint, status, reason, "
                    "headers, body_prefix, body_size, body_sha256) "
                    "VALUES ($1, 'stripe', 'default', 400, 'bad_signature', '[]', '', 0, '')",
                    now - timedelta(seconds=10 * i),
                )
        await sweep(pool, settings, now=now)
        processing = await open_alerts(pool, "processing")
        assert set(processing) == {"dead_letter:stripe", "lag"}
        assert processing["dead_letter:stripe"]["severity"] == "critical"
        assert list(processing["lag"]["delivery_ids"]) == [lagging.id]
        rejections = await open_alerts(pool, "rejections")
        assert rejections["stripe/default"]["count"] == 4
        assert msgspec.json.decode(rejections["stripe/default"]["evidence"])["reasons"] == {
            "bad_signature": 4
        }

        # The lagging delivery gets processed: lag stops firing (the low-water mark moves past it).
        async with pool.acquire() as conn:
            await process_delivery(cast(asyncpg.Connection, conn), lagging.id)
        report = await sweep(
            pool,
            settings,
            now=now + timedelta(seconds=settings.alerts.auto_resolve_after_seconds + 1),
        )
        assert processing["lag"]["id"] in report.resolved
        assert processing["dead_letter:stripe"]["id"] not in report.resolved  # still dead-lettered
        async with pool.acquire() as conn:
            low = await conn.fetchval(
                "SELECT position FROM alerts.cursors WHERE name = 'processed_low_water'"
            )
        assert low == lagging.id
    finally:
        await pool.close()


async def test_api_refuses_out_of_range_ids_with_400(
    fresh_settings: Settings, fresh_pool: asyncpg.Pool
) -> None:
    async with fresh_pool.acquire() as conn:
        token = await create_token(conn, name="range-oncall", role="oncall")
    h = {"Authorization": f"Bearer {token}"}
    async with AsyncTestClient(create_app(fresh_settings)) as client:
        for path in ("/alerts/142524879392688046080", "/alerts/0"):
            assert (await client.get(path, headers=h)).status_code == 400
        r = await client.post("/alerts/345112886323411882269198696579072/ack", headers=h)
        assert r.status_code == 400
        assert (await client.get("/alerts?cursor=", headers=h)).status_code == 400


@respx.mock(assert_all_mocked=True)
async def test_a_resolve_never_overtakes_its_failed_trigger(
    fresh_settings: Settings, respx_mock: respx.MockRouter
) -> None:
    dbname = fresh_settings.database_url.reveal().rsplit("/", 1)[1]
    settings = make_settings(
        dbname,
        alerts=AlertSettings(pagerduty_routing_key=Secret("rk_order"), pagerduty_url=PAGERDUTY),
    )
    pd = respx_mock.post(PAGERDUTY).mock(
        side_effect=[httpx.Response(500), httpx.Response(202), httpx.Response(202)]
    )
    from ledgerhook.db import create_pool

    pool = await create_pool(settings)
    try:
        channels = notify.channels(settings)
        async with pool.acquire() as conn:
            (fired,) = await lifecycle.apply_findings(
                conn,
                [
                    Finding(
                        rule="rejections",
                        severity="warning",
                        provider="stripe",
                        subject="o",
                        summary="x",
                    )
                ],
                T0,
                channels,
            )
        assert await notify.deliver_due(pool, settings, T0) == (0, 1)  # trigger fails
        async with pool.acquire() as conn:
            await lifecycle.resolve(
                conn,
                fired.alert_id,
                actor="carol",
                now=T0 + timedelta(seconds=1),
                channels=channels,
            )
        # Both are due now, but the resolve waits for its trigger.
        assert await notify.deliver_due(pool, settings, T0 + timedelta(seconds=31)) == (1, 0)
        assert await notify.deliver_due(pool, settings, T0 + timedelta(seconds=31)) == (1, 0)
        actions = [msgspec.json.decode(c.request.content)["event_action"] for c in pd.calls]
        assert actions == ["trigger", "trigger", "resolve"]
    finally:
        await pool.close()
