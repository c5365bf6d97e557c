"""Sync and drift started by API (admin): queued as arq jobs, run by a real worker (burst) against
respx stand-ins, never inside the request; GET /sync shows where each list stands."""

from __future__ import annotations

import uuid

import asyncpg
import msgspec
import respx
from arq.connections import ArqRedis
from litestar.testing import AsyncTestClient

from audit.tokens import create_token
from ledgerhook.app import create_app
from ledgerhook.jobs import CHECK_DRIFT, SYNC_OBJECTS
from ledgerhook.settings import ProcessorSettings, Settings
from ledgerhook.wakeup import arq_redis
from tests.conftest import RUN_ID
from tests.integration.processors_helpers import run_burst
from tests.integration.sync_helpers import ApiStandIn, rows, sync_settings, value


def _settings(fresh: Settings) -> Settings:
    queue = f"lh-test-{RUN_ID}-sync-{uuid.uuid4().hex[:6]}"
    return msgspec.structs.replace(
        sync_settings(fresh), processors=ProcessorSettings(queue_name=queue)
    )


async def _tokens(pool: asyncpg.Pool) -> dict[str, str]:
    async with pool.acquire() as conn:
        return {
            role: await create_token(conn, name=f"sync-{role}", role=role)  # type: ignore[arg-type]
            for role in ("auditor", "admin")
        }


async def _queued(settings: Settings) -> list[str]:
    redis: ArqRedis = arq_redis(settings, timeout=5)
    try:
        return [
            j.function for j in await redis.queued_jobs(queue_name=settings.processors.queue_name)
        ]
    finally:
        await redis.aclose(close_connection_pool=True)


@respx.mock(assert_all_mocked=False, assert_all_called=False)
async def test_a_sync_and_a_drift_check_started_by_api_run_in_the_worker(
    fresh_settings: Settings, fresh_pool: asyncpg.Pool, respx_mock: respx.MockRouter
) -> None:
    respx_mock.route(host="testserver.local").pass_through()
    settings = _settings(fresh_settings)
    api = ApiStandIn(respx_mock, count=120)
    tokens = await _tokens(fresh_pool)
    admin = {"Authorization": f"Bearer {tokens['admin']}"}
    auditor = {"Authorization": f"Bearer {tokens['auditor']}"}
    async with AsyncTestClient(create_app(settings)) as client:
        body = {"provider": "stripe", "types": ["subscriptions", "customers"]}
        assert (await client.post("/sync", json=body, headers=auditor)).status_code == 403
        r = await client.post("/sync", json=body, headers=admin)
        assert r.status_code == 202, r.text
        started = r.json()
        assert started["types"] == ["customers", "subscriptions"]  # sync order
        assert started["job_id"].startswith(f"{settings.processors.queue_name}:{SYNC_OBJECTS}:")
        # Queued, not run: nothing was read from the provider during the request.
        assert api.requests == []
        assert await _queued(settings) == [SYNC_OBJECTS]

        await run_burst(settings)
        assert await value(fresh_pool, "SELECT count(*) FROM processors.customers") == 120
        assert await value(fresh_pool, "SELECT count(*) FROM processors.subscriptions") == 120

        r = await client.get("/sync", headers=auditor)
        assert r.status_code == 200
        lists = {x["object_type"]: x for x in r.json()["lists"]}
        assert {k: (v["status"], v["listed"], v["stored"]) for k, v in lists.items()} == {
            "customers": ("done", 120, 120),
            "subscriptions": ("done", 120, 120),
        }

        api.catalog.changes[("stripe", "customers", "cus_00000004")] = {"email": "d@example.com"}
        r = await client.post(
            "/drift",
            json={"provider": "stripe", "type": "customer", "object_id": "cus_00000004"},
            headers=admin,
        )
        assert r.status_code == 202, r.text
        assert await _queued(settings) == [CHECK_DRIFT]
        await run_burst(settings)
    (alert,) = await rows(fresh_pool, "SELECT rule, subject, status FROM alerts.alerts")
    assert tuple(alert) == ("state_drift", "stripe:acct_test:customer:cus_00000004", "open")


async def test_requests_the_worker_could_not_run_are_refused_up_front(
    fresh_settings: Settings, fresh_pool: asyncpg.Pool
) -> None:
    tokens = await _tokens(fresh_pool)
    admin = {"Authorization": f"Bearer {tokens['admin']}"}
    with_keys = _settings(fresh_settings)
    async with AsyncTestClient(create_app(with_keys)) as client:
        for body, reason in [
            ({"provider": "stripe", "types": ["transactions"]}, "unknown stripe type"),
            ({"provider": "stripe", "endpoint": "nope"}, "no stripe endpoint named 'nope'"),
            ({"provider": "paypal"}, "body:"),
            ({"provider": "stripe", "since": "yesterday"}, "body:"),
            ({"provider": "stripe", "surprise": 1}, "body:"),
        ]:
            r = await client.post("/sync", json=body, headers=admin)
            assert r.status_code == 400 and reason in r.json()["detail"], (body, r.text)
        r = await client.post("/drift", json={"provider": "stripe", "type": "plan"}, headers=admin)
        assert r.status_code == 400
    without_keys = msgspec.structs.replace(with_keys, stripe_api_key=None)
    async with AsyncTestClient(create_app(without_keys)) as client:
        for path in ("/sync", "/drift"):
            r = await client.post(path, json={"provider": "stripe"}, headers=admin)
            assert r.status_code == 400 and "LEDGERHOOK_STRIPE_API_KEY" in r.json()["detail"]
    assert await _queued(with_keys) == []
