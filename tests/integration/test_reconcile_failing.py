"""A reconciliation that cannot reach or use the provider's API is not silent: one clear log line
naming the URL, a ``reconciliation_failing`` alert (endpoint and URL, never the key), a failure
counter; the next run that works resolves the alert and sets the last-success gauge."""

from __future__ import annotations

import logging
import uuid

import asyncpg
import httpx
import msgspec
import pytest
import respx
from litestar.testing import AsyncTestClient
from prometheus_client import REGISTRY

from alerts.errors import ProviderApiError
from alerts.model import RULES
from alerts.reconcile import reconcile
from alerts.sweep import periodic_reconcile
from audit.tokens import create_token
from ledgerhook.app import create_app
from ledgerhook.db import create_pool
from ledgerhook.settings import Settings
from tests.integration.test_alerts_reconcile import api_settings

STRIPE_URL = "https://stripe.test/v1/events"
EMPTY = b'{"object": "list", "data": [], "has_more": false}'


def failures(provider: str = "stripe") -> float:
    value = REGISTRY.get_sample_value(
        "ledgerhook_reconciliation_failures_total", {"provider": provider, "endpoint": "default"}
    )
    return value or 0.0


async def _alerts(
    pool: asyncpg.Pool, rule: str = "reconciliation_failing"
) -> list[dict[str, object]]:
    async with pool.acquire() as conn:
        rows = await conn.fetch(
            "SELECT id, subject, summary, status, count, evidence, resolved_by, resolution "
            "FROM alerts.alerts WHERE rule = $1 ORDER BY id",
            rule,
        )
    return [{**dict(r), "evidence": msgspec.json.decode(r["evidence"])} for r in rows]


async def test_a_failing_periodic_reconciliation_alerts_and_recovers(
    fresh_settings: Settings, respx_mock: respx.MockRouter, caplog: pytest.LogCaptureFixture
) -> None:
    settings = api_settings(fresh_settings)
    route = respx_mock.get(host="stripe.test", path="/v1/events")
    route.mock(side_effect=httpx.ConnectError("connection refused"))
    respx_mock.get(host="acme-test.chargebee.test", path="/api/v2/events").mock(
        return_value=httpx.Response(200, json={"list": []})
    )
    caplog.set_level(logging.INFO)
    before = failures()
    pool = await create_pool(settings)
    try:
        done = await periodic_reconcile(pool, settings)
        assert [s.provider for s in done] == ["chargebee"]  # one failing provider stops no other
        errors = [r for r in caplog.records if r.levelno >= logging.WARNING]
        assert len(errors) == 1, [r.getMessage() for r in errors]
        (line,) = errors
        assert line.levelno == logging.ERROR and line.exc_info is None  # no traceback spam
        assert STRIPE_URL in line.getMessage() and "no connection" in line.getMessage()
        assert failures() == before + 1

        (alert,) = await _alerts(pool)
        assert alert["subject"] == "stripe/default" and alert["status"] == "open"
        assert STRIPE_URL in str(alert["summary"]) and "endpoint default" in str(alert["summary"])
        evidence = alert["evidence"]
        assert isinstance(evidence, dict)
        assert evidence["api_url"] == STRIPE_URL and evidence["endpoint"] == "default"
        text = str(alert) + "\n".join(r.getMessage() for r in caplog.records)
        assert "sk_test_reconcile_key" not in text and "cb_test_api_key" not in text

        # It keeps failing: the same alert counts up. A wrong key reads differently.
        route.mock(return_value=httpx.Response(401, json={"error": {"message": "bad key"}}))
        with pytest.raises(ProviderApiError, match="answered HTTP 401"):
            await reconcile(pool, settings, "stripe", 3600)
        (alert,) = await _alerts(pool)
        assert alert["count"] == 2 and alert["status"] == "open"
        assert failures() == before + 2

        # The API works again: the next run resolves the alert itself.
        route.mock(return_value=httpx.Response(200, content=EMPTY))
        await reconcile(pool, settings, "stripe", 3600)
        (alert,) = await _alerts(pool)
        assert alert["status"] == "resolved"
        assert (alert["resolved_by"], alert["resolution"]) == ("system", "auto")
        success = REGISTRY.get_sample_value(
            "ledgerhook_reconciliation_last_success_timestamp_seconds",
            {"provider": "stripe", "endpoint": "default"},
        )
        assert success is not None and success > 0
        async with pool.acquire() as conn:
            note = await conn.fetchval(
                "SELECT note FROM alerts.alert_events WHERE alert_id = $1 ORDER BY id DESC LIMIT 1",
                alert["id"],
            )
        assert note == "reconciliation succeeded again"
    finally:
        await pool.close()


async def test_reconcile_route_names_the_url_and_raises_the_alert(
    fresh_settings: Settings, respx_mock: respx.MockRouter
) -> None:
    settings = api_settings(fresh_settings)
    respx_mock.get(host="acme-test.chargebee.test", path="/api/v2/events").mock(
        side_effect=httpx.ConnectError("no route to host")
    )
    pool = await create_pool(settings)
    try:
        async with pool.acquire() as conn:
            token = await create_token(conn, name=f"rf-{uuid.uuid4().hex[:8]}", role="admin")
        async with AsyncTestClient(create_app(settings)) as client:
            r = await client.post(
                "/reconcile",
                json={"provider": "chargebee", "since_seconds": 600},
                headers={"Authorization": f"Bearer {token}"},
            )
        assert r.status_code == 502, r.text
        body = r.json()
        assert body["error"] == "provider_api_error"
        assert "https://acme-test.chargebee.test/api/v2/events" in body["detail"]
        assert "cb_test_api_key" not in r.text
        (alert,) = await _alerts(pool)
        assert alert["subject"] == "chargebee/default"
    finally:
        await pool.close()


async def test_the_database_knows_every_rule(fresh_pool: asyncpg.Pool) -> None:
    """alerts.rule_names (migration 0210) and alerts.model.RULES name the same rules."""
    async with fresh_pool.acquire() as conn:
        names = {r["name"] for r in await conn.fetch("SELECT name FROM alerts.rule_names")}
        assert names == set(RULES)
        with pytest.raises(asyncpg.ForeignKeyViolationError):
            await conn.execute(
                "INSERT INTO alerts.alerts (rule, severity, subject, summary, first_seen, last_seen) "
                "VALUES ('no_such_rule', 'warning', 's', 's', now(), now())"
            )
