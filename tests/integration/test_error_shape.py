"""Every error answer has one shape, ``{"status_code", "detail", "error"}``, Litestar's own included,
and ``error`` is a short machine code, never the sentence in ``detail``."""

from __future__ import annotations

import re
import uuid
from datetime import UTC, datetime
from typing import Any

import asyncpg
import httpx
import msgspec
from litestar.testing import AsyncTestClient

from alerts import lifecycle
from alerts.model import Finding
from audit.tokens import create_token
from ledgerhook.app import create_app
from ledgerhook.http_errors import CODES
from ledgerhook.settings import ApiSettings, Settings

CODE = re.compile(r"^[a-z][a-z_]{2,40}$")


def assert_shape(r: httpx.Response, status: int, error: str) -> dict[str, Any]:
    body: dict[str, Any] = r.json()
    assert r.status_code == status, r.text
    assert r.headers["content-type"].startswith("application/json")
    assert {"status_code", "detail", "error"} <= set(body), body
    assert set(body) <= {"status_code", "detail", "error", "extra"}, body
    assert body["status_code"] == status
    assert body["error"] == error, body
    assert CODE.match(body["error"]) and body["error"] != body["detail"], body
    assert isinstance(body["detail"], str) and body["detail"]
    return body


async def _token(pool: asyncpg.Pool, role: str) -> dict[str, str]:
    async with pool.acquire() as conn:
        token = await create_token(conn, name=f"shape-{uuid.uuid4().hex[:8]}", role=role)  # type: ignore[arg-type]
    return {"Authorization": f"Bearer {token}"}


async def test_litestar_errors_have_our_shape(settings: Settings, pool: asyncpg.Pool) -> None:
    auditor = await _token(pool, "auditor")
    async with AsyncTestClient(create_app(settings)) as client:
        assert_shape(await client.get("/no/such/route"), 404, "not_found")
        r = await client.delete("/alerts", headers=auditor)
        body = assert_shape(r, 405, "method_not_allowed")
        assert "GET" in r.headers["allow"] and "DELETE" in body["detail"]
        r = await client.get("/alerts", params={"status": "bogus"}, headers=auditor)
        body = assert_shape(r, 400, "invalid_parameter")
        assert "status" in body["detail"]
        assert body["extra"] == [
            {"message": "Invalid enum value 'bogus'", "key": "status", "source": "query"}
        ]
        r = await client.get("/audit/deliveries", params={"limit": "many"}, headers=auditor)
        assert "limit" in assert_shape(r, 400, "invalid_parameter")["detail"]
        r = await client.get(f"/alerts/{2**70}", headers=auditor)
        assert_shape(r, 400, "invalid_parameter")


async def test_api_refusals_carry_codes_not_sentences(
    settings: Settings, pool: asyncpg.Pool
) -> None:
    auditor = await _token(pool, "auditor")
    oncall = await _token(pool, "oncall")
    async with pool.acquire() as conn:
        fired = await lifecycle.apply_findings(
            conn,
            [
                Finding(
                    rule="silence",
                    severity="warning",
                    provider="stripe",
                    subject=f"stripe/shape-{uuid.uuid4().hex[:8]}",
                    summary="error shape test",
                )
            ],
            datetime.now(UTC),
        )
        await lifecycle.resolve(
            conn, fired[0].alert_id, actor="test", now=datetime.now(UTC), note=None
        )
    async with AsyncTestClient(create_app(settings)) as client:
        assert_shape(await client.get("/alerts"), 401, "unauthenticated")
        r = await client.get("/alerts", headers={"Authorization": "Bearer lh_bogus"})
        assert_shape(r, 401, "unauthenticated")
        r = await client.post(f"/alerts/{fired[0].alert_id}/ack", headers=auditor)
        assert_shape(r, 403, "forbidden")
        r = await client.post(f"/alerts/{fired[0].alert_id}/ack", headers=oncall)
        assert "resolved" in assert_shape(r, 409, "conflict")["detail"]
        assert_shape(await client.get("/alerts/999999999", headers=auditor), 404, "not_found")
        r = await client.get("/audit/deliveries/999999999", headers=auditor)
        assert_shape(r, 404, "not_found")
        r = await client.get("/audit/deliveries", params={"colour": "red"}, headers=auditor)
        assert "colour" in assert_shape(r, 400, "invalid_parameter")["detail"]
        r = await client.post(
            f"/alerts/{fired[0].alert_id}/resolve", content=b"{not json", headers=oncall
        )
        assert_shape(r, 400, "invalid_parameter")


async def test_too_many_attempts(settings: Settings) -> None:
    strict = msgspec.structs.replace(settings, api=ApiSettings(auth_failures_per_minute=2))
    async with AsyncTestClient(create_app(strict)) as client:
        for _ in range(3):
            r = await client.get("/alerts", headers={"Authorization": "Bearer lh_wrong"})
        assert_shape(r, 429, "too_many_attempts")
        assert int(r.headers["retry-after"]) > 0


async def test_webhook_refusals_keep_their_reason_codes(settings: Settings) -> None:
    async with AsyncTestClient(create_app(settings)) as client:
        r = await client.post("/webhooks/stripe", content=b"{}")
        assert_shape(r, 400, "missing_signature")
        r = await client.post("/webhooks/paypal/x", content=b"{}")
        assert_shape(r, 404, "unknown_endpoint")
        r = await client.post("/webhooks/chargebee", content=b"{}")
        assert_shape(r, 401, "missing_credentials")


def test_every_code_is_a_code() -> None:
    assert all(CODE.match(c) for c in CODES.values())
