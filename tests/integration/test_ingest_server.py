"""Ingest through a real ``ledgerhook serve`` process: signed deliveries, concurrency, the tree."""

from __future__ import annotations

import asyncio
import base64
import hashlib
import hmac
import os
import subprocess
import sys
import time
import uuid
from collections.abc import Iterator

import httpx
import msgspec
import pytest

from audit.checkpoints import log_origin
from audit.note import parse_verifier_key
from audit.verify import verify_tree
from ledgerhook.settings import Settings
from tests.conftest import (
    CHARGEBEE_AUTH,
    CHECKPOINT_KEY,
    PUBLIC_KEY,
    REDIS_URL,
    STRIPE_SECRET,
    fixture_bytes,
    free_port,
    superuser,
    with_event_id,
)
from tests.integration.audit_helpers import integrate


def signed(body: bytes) -> dict[str, str]:
    t = int(time.time())
    sig = hmac.new(STRIPE_SECRET.encode(), f"{t}.".encode() + body, hashlib.sha256).hexdigest()
    return {"Stripe-Signature": f"t={t},v1={sig}", "Content-Type": "application/json"}


@pytest.fixture
def server(fresh_settings: Settings, tmp_path: object) -> Iterator[str]:
    port = free_port()
    env = {
        **os.environ,
        "LEDGERHOOK_DATABASE_URL": fresh_settings.database_url.reveal(),
        "LEDGERHOOK_REDIS_URL": REDIS_URL,
        "LEDGERHOOK_CHECKPOINT_KEY": CHECKPOINT_KEY,
        "LEDGERHOOK_STRIPE_WEBHOOK_SECRETS": STRIPE_SECRET,
        "LEDGERHOOK_STRIPE_ACCOUNT": "acct_srv",
        "LEDGERHOOK_CHARGEBEE_BASIC_AUTH": CHARGEBEE_AUTH,
        "LEDGERHOOK_CHARGEBEE_SITE": "acme-srv",
        "LEDGERHOOK_PROCESSORS__QUEUE_NAME": fresh_settings.processors.queue_name,
        "LEDGERHOOK_LOG_FORMAT": "text",
        "LEDGERHOOK_LOG_LEVEL": "WARNING",
    }
    env.pop("PROMETHEUS_MULTIPROC_DIR", None)
    proc = subprocess.Popen(
        [sys.executable, "-m", "ledgerhook.cli", "serve", "--port", str(port), "--workers", "2"],
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
    )
    base = f"http://127.0.0.1:{port}"
    deadline = time.monotonic() + 30
    while True:
        try:
            if httpx.get(base + "/health/ready", timeout=1).status_code == 200:
                break
        except httpx.HTTPError:
            pass
        if proc.poll() is not None or time.monotonic() > deadline:
            proc.kill()
            out = proc.communicate()[0].decode(errors="replace")
            pytest.fail(f"server did not become ready:\n{out[-3000:]}")
        time.sleep(0.1)
    yield base
    proc.terminate()
    try:
        proc.wait(timeout=20)
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.wait()
    if proc.stdout is not None:
        proc.stdout.close()


async def test_real_server_concurrent_deliveries(server: str, fresh_settings: Settings) -> None:
    bodies = [
        with_event_id(fixture_bytes("stripe", "invoice_paid.json"), f"evt_srv_{uuid.uuid4().hex}")
        for _ in range(200)
    ]
    limits = httpx.Limits(max_connections=200)
    async with httpx.AsyncClient(base_url=server, limits=limits, timeout=30) as client:
        responses = await asyncio.gather(
            *(client.post("/webhooks/stripe", content=b, headers=signed(b)) for b in bodies)
        )
        assert [r.status_code for r in responses] == [200] * 200
        ids = [r.json()["delivery_id"] for r in responses]
        assert len(set(ids)) == 200

        cb = with_event_id(
            fixture_bytes("chargebee", "event_subscription_created_retrieve.json"), "ev_srv_1"
        )
        token = base64.b64encode(CHARGEBEE_AUTH.encode()).decode()
        r = await client.post(
            "/webhooks/chargebee", content=cb, headers={"Authorization": f"Basic {token}"}
        )
        assert r.status_code == 200
        bad = await client.post(
            "/webhooks/stripe", content=bodies[0], headers={"Stripe-Signature": "t=1,v1=00"}
        )
        assert bad.status_code == 400
        metrics = (await client.get("/metrics")).text
        assert "ledgerhook_deliveries_received_total" in metrics

    conn = await superuser(fresh_settings)
    try:
        rows = await conn.fetch(
            "SELECT id, body, account FROM audit.deliveries WHERE id = ANY($1::bigint[])", ids
        )
        assert sorted(bytes(r["body"]) for r in rows) == sorted(bodies)
        assert {r["account"] for r in rows} == {"acct_srv"}
        site = await conn.fetchval(
            "SELECT account FROM audit.deliveries WHERE event_id = 'ev_srv_1'"
        )
        assert site == "acme-srv"
        assert await integrate(conn) == 201
        result = await verify_tree(
            conn, verifiers=[parse_verifier_key(PUBLIC_KEY)], origin=log_origin(fresh_settings)
        )
        assert result.ok, result.describe()
        assert result.tree_size == 201
    finally:
        await conn.close()
    assert msgspec.json.decode(bodies[0])["id"].startswith("evt_srv_")
