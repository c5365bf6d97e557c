"""The webhook endpoints through Litestar's test client, against real PostgreSQL and Redis."""

from __future__ import annotations

import asyncio
import base64
import hashlib
import hmac
import time
import uuid
from collections.abc import AsyncIterator, Sequence
from contextlib import asynccontextmanager
from typing import Any

import asyncpg
import httpx
import msgspec
import pytest

from ingest.routes import routes as ingest_routes
from ledgerhook import app as app_module
from ledgerhook.app import create_app
from ledgerhook.jobs import deserialize, job_id
from ledgerhook.settings import IngestSettings, Settings
from tests.conftest import (
    CHARGEBEE_AUTH,
    REDIS_URL,
    STRIPE_SECRET,
    STRIPE_SECRET_OLD,
    fixture_bytes,
    free_port,
    stripe_fixture_names,
    with_event_id,
)

Client = httpx.AsyncClient


@asynccontextmanager
async def app_client(settings: Settings, pool: asyncpg.Pool | None = None) -> AsyncIterator[Client]:
    """The app with its lifespan run in THIS event loop (Litestar's test client runs it in a
    separate thread's loop, where the appender could not use the test's pool). Only the ingest
    routes are mounted: these tests must not depend on other packages' route modules."""
    with pytest.MonkeyPatch.context() as mp:
        mp.setattr(app_module, "route_handlers", lambda: list(ingest_routes))
        app = create_app(settings, pool=pool)
    started = asyncio.Event()
    stop = asyncio.Event()

    async def run() -> None:  # lifespan entered and exited in one task (anyio requires it)
        async with app.lifespan():
            started.set()
            await stop.wait()

    task = asyncio.create_task(run())
    await asyncio.wait([task, asyncio.create_task(started.wait())], return_when="FIRST_COMPLETED")
    if task.done():
        task.result()
    transport = httpx.ASGITransport(app=app, client=("192.0.2.7", 40000))
    try:
        async with httpx.AsyncClient(transport=transport, base_url="http://testserver") as c:
            yield c
    finally:
        stop.set()
        await task


def stripe_headers(
    body: bytes, secret: str = STRIPE_SECRET, t: int | None = None
) -> dict[str, str]:
    t = int(time.time()) if t is None else t
    sig = hmac.new(secret.encode(), f"{t}.".encode() + body, hashlib.sha256).hexdigest()
    return {"Stripe-Signature": f"t={t},v1={sig}", "Content-Type": "application/json"}


def basic(auth: str = CHARGEBEE_AUTH) -> dict[str, str]:
    token = base64.b64encode(auth.encode()).decode()
    return {"Authorization": f"Basic {token}", "Content-Type": "application/json"}


def stripe_event(event_id: str | None = None, **extra: Any) -> bytes:
    return msgspec.json.encode(
        {
            "id": event_id or f"evt_{uuid.uuid4().hex}",
            "object": "event",
            "type": "customer.updated",
            "created": 1700000000,
            "data": {"object": {"id": "cus_1", "object": "customer"}},
            **extra,
        }
    )


def chargebee_event(event_id: str | None = None) -> bytes:
    return with_event_id(
        fixture_bytes("chargebee", "event_subscription_created_retrieve.json"),
        event_id or f"ev_{uuid.uuid4().hex}",
    )


@pytest.fixture
async def client(settings: Settings, pool: asyncpg.Pool) -> AsyncIterator[Client]:
    roomy = msgspec.structs.replace(settings, ingest=IngestSettings(rejections_per_minute=10_000))
    async with app_client(roomy, pool) as c:
        yield c


async def stored(pool: asyncpg.Pool, delivery_id: int) -> asyncpg.Record:
    row = await pool.fetchrow("SELECT * FROM audit.deliveries WHERE id = $1", delivery_id)
    assert row is not None
    return row


async def rejection(pool: asyncpg.Pool, marker: str, wait: float = 5.0) -> asyncpg.Record:
    """The rejection row whose headers carry ``marker`` (recorded in the background)."""
    deadline = time.monotonic() + wait
    while True:
        row = await pool.fetchrow(
            "SELECT * FROM audit.rejections WHERE headers::text LIKE $1", f"%{marker}%"
        )
        if row is not None:
            return row
        assert time.monotonic() < deadline, f"no rejection recorded for {marker}"
        await asyncio.sleep(0.05)


@pytest.mark.parametrize("name", stripe_fixture_names())
async def test_every_stripe_fixture_is_stored_byte_for_byte(
    client: Client, pool: asyncpg.Pool, name: str
) -> None:
    body = fixture_bytes("stripe", name)
    r = await client.post("/webhooks/stripe", content=body, headers=stripe_headers(body))
    assert r.status_code == 200, r.text
    out = r.json()
    assert set(out) == {"delivery_id", "duplicate"}
    row = await stored(pool, out["delivery_id"])
    assert bytes(row["body"]) == body
    event = msgspec.json.decode(body)
    assert row["event_id"] == event["id"]
    assert row["event_type"] == event["type"]
    assert row["event_created"] == event["created"]
    assert row["object_id"] == event["data"]["object"].get("id")
    assert row["account"] == event.get("account") or "acct_test"
    assert row["verification"].startswith("stripe-v1:key=")
    assert STRIPE_SECRET not in row["verification"]
    headers = dict(msgspec.json.decode(row["headers"]))
    assert headers["stripe-signature"] == stripe_headers(body)["Stripe-Signature"] or headers[
        "stripe-signature"
    ].startswith("t=")


async def test_chargebee_fixture_is_stored_byte_for_byte(
    client: Client, pool: asyncpg.Pool
) -> None:
    inner = msgspec.json.decode(
        fixture_bytes("chargebee", "event_subscription_created_retrieve.json")
    )["event"]
    body = msgspec.json.encode(inner)
    r = await client.post("/webhooks/chargebee", content=body, headers=basic())
    assert r.status_code == 200, r.text
    row = await stored(pool, r.json()["delivery_id"])
    assert bytes(row["body"]) == body
    assert row["provider"] == "chargebee"
    assert row["account"] == "acme-test"
    assert row["event_id"] == inner["id"]
    assert row["event_type"] == "subscription_created"
    assert row["event_created"] == inner["occurred_at"]
    assert row["object_id"] == inner["content"]["subscription"]["id"]
    assert row["verification"].startswith("chargebee-basic:user=")
    headers = msgspec.json.decode(row["headers"])
    assert ["authorization", "[redacted]"] in headers
    assert "s3cret-pass" not in row["headers"]


async def test_named_endpoint_and_connect_account(client: Client, pool: asyncpg.Pool) -> None:
    body = stripe_event(account="acct_connected_9")
    r = await client.post("/webhooks/stripe/default", content=body, headers=stripe_headers(body))
    assert r.status_code == 200
    row = await stored(pool, r.json()["delivery_id"])
    assert row["account"] == "acct_connected_9"
    assert row["endpoint"] == "default"


async def test_rotated_secrets_both_accepted(client: Client, pool: asyncpg.Pool) -> None:
    verifications = set()
    for secret in (STRIPE_SECRET, STRIPE_SECRET_OLD):
        body = stripe_event()
        r = await client.post(
            "/webhooks/stripe", content=body, headers=stripe_headers(body, secret)
        )
        assert r.status_code == 200
        verifications.add((await stored(pool, r.json()["delivery_id"]))["verification"])
    assert len(verifications) == 2  # the fingerprint tells which secret signed


async def test_duplicate_is_its_own_row(client: Client, pool: asyncpg.Pool) -> None:
    body = stripe_event()
    first = await client.post("/webhooks/stripe", content=body, headers=stripe_headers(body))
    again = await client.post("/webhooks/stripe", content=body, headers=stripe_headers(body))
    assert first.json()["duplicate"] is False
    assert again.status_code == 200
    assert again.json()["duplicate"] is True
    assert again.json()["delivery_id"] != first.json()["delivery_id"]
    row = await stored(pool, again.json()["delivery_id"])
    assert row["duplicate_of"] == first.json()["delivery_id"]


def _tampered(body: bytes) -> tuple[bytes, dict[str, str]]:
    headers = stripe_headers(body)
    return body.replace(b"customer.updated", b"customer.deleted"), headers


def _stripe_case(case: str) -> tuple[bytes, dict[str, str]]:
    body = stripe_event()
    now = int(time.time())
    if case == "wrong_secret":
        return body, stripe_headers(body, "whsec_not_ours")
    if case == "tampered":
        return _tampered(body)
    if case == "stale":
        return body, stripe_headers(body, t=now - 301)
    if case == "future":
        return body, stripe_headers(body, t=now + 301)
    if case == "missing":
        return body, {"Content-Type": "application/json"}
    if case == "malformed":
        return body, {"Stripe-Signature": "v1=abc", "Content-Type": "application/json"}
    if case == "non_json":
        raw = b"this is not json"
        return raw, stripe_headers(raw)
    if case == "not_an_object":
        raw = b'["id", "type"]'
        return raw, stripe_headers(raw)
    if case == "not_an_event":
        raw = b'{"hello": "world"}'
        return raw, stripe_headers(raw)
    raise AssertionError(case)


@pytest.mark.parametrize(
    ("case", "status", "reason"),
    [
        ("wrong_secret", 400, "no_matching_signature"),
        ("tampered", 400, "no_matching_signature"),
        ("stale", 400, "timestamp_out_of_tolerance"),
        ("future", 400, "timestamp_out_of_tolerance"),
        ("missing", 400, "missing_signature"),
        ("malformed", 400, "malformed_signature"),
        ("non_json", 400, "invalid_json"),
        ("not_an_object", 400, "not_an_object"),
        ("not_an_event", 400, "missing_field"),
    ],
)
async def test_stripe_rejections_are_answered_and_recorded(
    client: Client, pool: asyncpg.Pool, case: str, status: int, reason: str
) -> None:
    body, headers = _stripe_case(case)
    marker = uuid.uuid4().hex
    before = await pool.fetchval("SELECT count(*) FROM audit.deliveries WHERE body = $1", body)
    r = await client.post("/webhooks/stripe", content=body, headers={**headers, "X-Test": marker})
    assert r.status_code == status
    assert r.json()["error"] == reason
    row = await rejection(pool, marker)
    assert (row["provider"], row["endpoint"], row["status"], row["reason"]) == (
        "stripe",
        "default",
        status,
        reason,
    )
    assert bytes(row["body_prefix"]) == body
    assert row["body_size"] == len(body)
    assert bytes(row["body_sha256"]) == hashlib.sha256(body).digest()
    assert row["source_address"]
    after = await pool.fetchval("SELECT count(*) FROM audit.deliveries WHERE body = $1", body)
    assert after == before  # never half-stored


@pytest.mark.parametrize(
    ("headers", "reason"),
    [
        ({}, "missing_credentials"),
        ({"Authorization": "Bearer abc"}, "malformed_credentials"),
        ({"Authorization": "Basic !!!"}, "malformed_credentials"),
        (basic("cbhook:wrong"), "bad_credentials"),
        (basic("someone:s3cret-pass"), "bad_credentials"),
    ],
)
async def test_chargebee_bad_credentials_401(
    client: Client, pool: asyncpg.Pool, headers: dict[str, str], reason: str
) -> None:
    marker = uuid.uuid4().hex
    r = await client.post(
        "/webhooks/chargebee", content=chargebee_event(), headers={**headers, "X-Test": marker}
    )
    assert r.status_code == 401
    assert r.headers["www-authenticate"] == 'Basic realm="ledgerhook"'
    assert r.json()["error"] == reason
    row = await rejection(pool, marker)
    assert row["reason"] == reason
    assert row["status"] == 401
    assert "s3cret-pass" not in row["headers"]
    assert "wrong" not in row["headers"]  # the Authorization value is redacted


async def test_chargebee_not_an_event_400(client: Client) -> None:
    r = await client.post("/webhooks/chargebee", content=b'{"id": "ev_1"}', headers=basic())
    assert r.status_code == 400
    assert r.json()["error"] == "missing_field"


async def test_oversized_body_413(client: Client, pool: asyncpg.Pool) -> None:
    marker = uuid.uuid4().hex
    body = stripe_event(padding="x" * (1024 * 1024))
    r = await client.post(
        "/webhooks/stripe", content=body, headers={**stripe_headers(body), "X-Test": marker}
    )
    assert r.status_code == 413
    row = await rejection(pool, marker)
    assert row["reason"] == "body_too_large"
    assert row["status"] == 413
    assert len(bytes(row["body_prefix"])) <= 4096


async def test_oversized_streamed_body_without_length_413(
    settings: Settings, pool: asyncpg.Pool
) -> None:
    small = msgspec.structs.replace(settings, ingest=IngestSettings(max_body_bytes=100))
    async with app_client(small, pool) as c:

        async def chunks() -> AsyncIterator[bytes]:
            for _ in range(10):
                yield b"x" * 50

        r = await c.post("/webhooks/stripe", content=chunks())
        assert r.status_code == 413


async def test_unknown_provider_or_endpoint_404(client: Client, pool: asyncpg.Pool) -> None:
    marker = uuid.uuid4().hex
    r = await client.post("/webhooks/paypal/default", content=b"{}", headers={"X-Test": marker})
    assert r.status_code == 404
    assert r.json()["error"] == "unknown_endpoint"
    r = await client.post("/webhooks/stripe/nope", content=b"{}")
    assert r.status_code == 404
    row = await rejection(pool, marker)
    assert (row["provider"], row["endpoint"], row["status"]) == ("paypal", "default", 404)


async def test_rejections_are_capped_per_minute(settings: Settings, pool: asyncpg.Pool) -> None:
    capped = msgspec.structs.replace(settings, ingest=IngestSettings(rejections_per_minute=3))
    marker = uuid.uuid4().hex
    async with app_client(capped, pool) as c:
        for _ in range(8):
            r = await c.post("/webhooks/chargebee", content=b"{}", headers={"X-Test": marker})
            assert r.status_code == 401
        await rejection(pool, marker)
    # the app has stopped: its rejection log is drained
    count = await pool.fetchval(
        "SELECT count(*) FROM audit.rejections WHERE headers::text LIKE $1", f"%{marker}%"
    )
    assert 1 <= count <= 3


async def test_the_sequencer_wakes_the_workers_after_integrating(
    client: Client, settings: Settings
) -> None:
    """Ingest never touches Redis; once the delivery is a leaf, the sequencer's wake-up is the
    job arq itself would have written (one per integrated batch, for its first delivery)."""
    from arq.connections import ArqRedis
    from arq.jobs import Job
    from redis.asyncio import Redis

    from audit.sequencer import Sequencer
    from ledgerhook.wakeup import Waker, arq_redis

    body = stripe_event()
    r = await client.post("/webhooks/stripe", content=body, headers=stripe_headers(body))
    delivery_id = r.json()["delivery_id"]
    redis = Redis.from_url(REDIS_URL)
    wake_redis = arq_redis(settings, timeout=1)
    woken: list[int] = []
    waker = Waker(settings, wake_redis)

    def wake(ids: Sequence[int]) -> None:
        woken.extend(ids)
        waker.wake([delivery_id] if delivery_id in ids else ids)

    sequencer = Sequencer(settings, on_integrated=wake)
    task = asyncio.create_task(sequencer.run())
    try:
        deadline = time.monotonic() + 5
        key = f"arq:job:{job_id(settings, delivery_id)}"
        while not await redis.exists(key):
            assert time.monotonic() < deadline, "no arq job enqueued"
            await asyncio.sleep(0.02)
        score = await redis.zscore(settings.processors.queue_name, job_id(settings, delivery_id))
        assert score is not None
        assert 0 < await redis.pttl(key) <= 86_400_000
        # arq itself reads the job back: same function, argument and serializer as enqueue_job
        arq = ArqRedis(redis.connection_pool, job_deserializer=deserialize)
        info = await Job(job_id(settings, delivery_id), arq, _deserializer=deserialize).info()
        assert info is not None
        assert (info.function, list(info.args), info.kwargs) == (
            "process_delivery",
            [delivery_id],
            {},
        )
        assert delivery_id in woken
    finally:
        sequencer.stop()
        await task
        await waker.drain(1)
        await wake_redis.aclose(close_connection_pool=True)
        await redis.aclose()


async def test_redis_down_still_200_and_stored(settings: Settings, pool: asyncpg.Pool) -> None:
    dead = msgspec.structs.replace(
        settings, redis_url=type(settings.redis_url)(f"redis://127.0.0.1:{free_port()}/0")
    )
    async with app_client(dead, pool) as c:
        body = stripe_event()
        r = await c.post("/webhooks/stripe", content=body, headers=stripe_headers(body))
        assert r.status_code == 200
        row = await stored(pool, r.json()["delivery_id"])
        assert bytes(row["body"]) == body
        ready = await c.get("/health/ready")
        assert ready.status_code == 200
        assert ready.json() == {"status": "ready", "postgres": "ok", "redis": "down"}


async def test_postgres_unreachable_503(settings: Settings) -> None:
    gone = msgspec.structs.replace(
        settings,
        database_url=type(settings.database_url)(
            f"postgresql://postgres@127.0.0.1:{free_port()}/x"
        ),
        ingest=IngestSettings(commit_timeout_seconds=3),
    )
    async with app_client(gone) as c:
        body = stripe_event()
        r = await c.post("/webhooks/stripe", content=body, headers=stripe_headers(body))
        assert r.status_code == 503
        assert r.headers["retry-after"]
        ready = await c.get("/health/ready")
        assert ready.status_code == 503
        assert ready.json()["postgres"] == "down"
        assert (await c.get("/health/live")).status_code == 200


async def test_health_and_metrics(client: Client) -> None:
    assert (await client.get("/health/live")).json() == {"status": "ok"}
    ready = await client.get("/health/ready")
    assert ready.status_code == 200
    assert ready.json() == {"status": "ready", "postgres": "ok", "redis": "ok"}
    body = stripe_event()
    await client.post("/webhooks/stripe", content=body, headers=stripe_headers(body))
    metrics = await client.get("/metrics")
    text = metrics.text
    # Prometheus' own content type, with its charset once (it was sent twice).
    content_type = metrics.headers["content-type"]
    assert content_type.startswith("text/plain; version=")
    assert content_type.count("charset") == 1 and content_type.endswith("charset=utf-8")
    assert (
        'ledgerhook_deliveries_received_total{endpoint="default",outcome="stored",provider="stripe"}'
        in text
    )
    assert (
        'ledgerhook_http_request_duration_seconds_count{route="/webhooks/stripe",status="2xx"}'
        in text
    )
    assert "ledgerhook_ingest_commit_batch_size_count" in text
    assert STRIPE_SECRET not in text
