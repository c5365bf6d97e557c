"""The brute-force brake on real Redis: shared by real server processes, keyed by the client
behind trusted proxies, and failing open (never a 500, never a hang) when Redis is down or silent;
and the same client address recorded for webhook deliveries.

The servers bind 127.0.0.1 and trust 127.0.0.2 as their reverse proxy; a test "proxy" connects
from 127.0.0.2 (all of 127/8 is loopback on Linux) and an untrusted sender from 127.0.0.3, so
the addresses the brake counts are this module's own.
"""

from __future__ import annotations

import asyncio
import socket
import time
import uuid
from collections.abc import AsyncIterator, Iterator
from contextlib import asynccontextmanager

import asyncpg
import httpx
import msgspec
import pytest
import pytest_asyncio
from litestar.testing import AsyncTestClient
from prometheus_client import REGISTRY
from redis.asyncio import Redis

from audit.brake import Brake, open_brake
from audit.tokens import create_token
from ledgerhook.app import create_app
from ledgerhook.settings import ApiSettings, ProcessorSettings, Secret, Settings
from tests.conftest import REDIS_URL, RUN_ID, STRIPE_SECRET
from tests.faults.services import Service, free_port
from tests.faults.stream import stripe_signature
from tests.fuzz.live import base_url, start_server

BUDGET = 5
PROXY = "127.0.0.2"
STRANGER = "127.0.0.3"


def _queue() -> str:
    return f"lh-test-{RUN_ID}-brake-{uuid.uuid4().hex[:8]}"


def _client_ip() -> str:
    """A documentation-range address no other test uses."""
    n = uuid.uuid4().int
    return f"198.51.{n % 200}.{(n >> 8) % 250 + 1}"


@pytest_asyncio.fixture(scope="module")
async def auditor(pool: asyncpg.Pool) -> str:
    async with pool.acquire() as conn:
        return await create_token(conn, name=f"brake-{uuid.uuid4().hex[:8]}", role="auditor")


@pytest.fixture(scope="module")
def servers(settings: Settings) -> Iterator[tuple[Service, Service]]:
    """Two ``ledgerhook serve`` processes, one Redis, one brake namespace."""
    env = {
        "LEDGERHOOK_PROCESSORS__QUEUE_NAME": _queue(),
        "LEDGERHOOK_API__AUTH_FAILURES_PER_MINUTE": str(BUDGET),
        "LEDGERHOOK_API__TRUSTED_PROXIES": f"{PROXY}/32",
        "LEDGERHOOK_LOG_LEVEL": "WARNING",
    }
    started: list[Service] = []
    try:
        started.append(start_server(settings, **env))
        started.append(start_server(settings, **env))
        yield started[0], started[1]
    finally:
        for service in started:
            service.stop()


@asynccontextmanager
async def _from(local_address: str) -> AsyncIterator[httpx.AsyncClient]:
    transport = httpx.AsyncHTTPTransport(local_address=local_address)
    async with httpx.AsyncClient(transport=transport, timeout=10) as client:
        yield client


async def _get(
    client: httpx.AsyncClient, server: Service, token: str, forwarded_for: str | None = None
) -> httpx.Response:
    headers = {"Authorization": f"Bearer {token}"}
    if forwarded_for is not None:
        headers["X-Forwarded-For"] = forwarded_for
    return await client.get(f"{base_url(server)}/audit/checkpoints", headers=headers)


def _bad() -> str:
    return f"lh_guess{uuid.uuid4().hex}"


async def test_two_processes_share_one_budget(
    servers: tuple[Service, Service], auditor: str
) -> None:
    a, b = servers
    me = _client_ip()
    async with _from(PROXY) as client:
        codes = [(await _get(client, s, _bad(), me)).status_code for s in (a, b, a, b, a)]
        assert codes == [401] * BUDGET
        for server in (b, a):
            r = await _get(client, server, _bad(), me)
            assert r.status_code == 429, server.port
            assert 1 <= int(r.headers["retry-after"]) <= 60
        for server in (a, b):
            assert (await _get(client, server, auditor, me)).status_code == 200


async def test_clients_behind_a_trusted_proxy_are_limited_separately(
    servers: tuple[Service, Service], auditor: str, pool: asyncpg.Pool
) -> None:
    a, _ = servers
    first, second = _client_ip(), _client_ip()
    async with _from(PROXY) as client:
        codes = [(await _get(client, a, _bad(), first)).status_code for _ in range(BUDGET + 2)]
        assert codes == [401] * BUDGET + [429] * 2
        # The other client behind the same proxy still has its whole budget, and what a client
        # writes left of the proxy's entry does not change whose budget it spends.
        r = await _get(client, a, _bad(), f"{first}, {second}")
        assert r.status_code == 401
        assert (await _get(client, a, auditor, first)).status_code == 200
        # The proxy connecting without the header is a client of its own.
        assert (await _get(client, a, _bad())).status_code == 401
    async with pool.acquire() as conn:
        rows = await conn.fetch(
            """
            SELECT source_address, decision FROM audit.access_log
            WHERE source_address IN ($1, $2) ORDER BY id
            """,
            first,
            second,
        )
    assert [(r["source_address"], r["decision"]) for r in rows] == [
        *[(first, "unauthenticated")] * BUDGET,
        (second, "unauthenticated"),
        (first, "allowed"),
    ]


async def test_an_untrusted_senders_forwarded_for_is_ignored(
    servers: tuple[Service, Service], auditor: str, pool: asyncpg.Pool
) -> None:
    a, b = servers
    claimed = [_client_ip() for _ in range(8)]
    async with _from(STRANGER) as client:
        codes = [
            (await _get(client, server, _bad(), claimed[i])).status_code
            for i, server in enumerate((a, b, a, b, a, b, a))
        ]
        assert codes == [401] * BUDGET + [429] * 2
        assert (await _get(client, a, auditor, claimed[7])).status_code == 200
    async with pool.acquire() as conn:
        rows = await conn.fetch(
            """
            SELECT source_address, decision FROM audit.access_log
            WHERE source_address = ANY($1::text[]) ORDER BY id
            """,
            [STRANGER, *claimed],
        )
    assert [(r["source_address"], r["decision"]) for r in rows] == [
        *[(STRANGER, "unauthenticated")] * BUDGET,
        (STRANGER, "allowed"),
    ]


async def test_brake_counts_per_address_and_namespace_in_a_window() -> None:
    redis = Redis.from_url(REDIS_URL)
    try:
        ns = _queue()
        brake = Brake(redis, namespace=ns, limit=2, timeout=1.0, window_seconds=1.0)
        other = Brake(redis, namespace=_queue(), limit=2, timeout=1.0, window_seconds=1.0)
        assert await brake.check("192.0.2.1") is None
        assert await brake.record_failure("192.0.2.1") is None
        assert await brake.record_failure("192.0.2.1") is None
        assert await brake.check("192.0.2.1") == 1
        assert await brake.record_failure("192.0.2.1") == 1
        assert await brake.check("192.0.2.2") is None
        assert await brake.check(None) is None
        assert await other.check("192.0.2.1") is None
        assert brake.key("192.0.2.1") == f"{ns}:auth-brake:192.0.2.1"
        assert 0 < await redis.pttl(brake.key("192.0.2.1")) <= 1000
        await asyncio.sleep(1.2)
        assert await brake.check("192.0.2.1") is None
        assert await brake.record_failure("192.0.2.1") is None
        assert 0 < await redis.pttl(brake.key("192.0.2.1")) <= 1000
    finally:
        await redis.aclose()


@pytest.fixture
def silent_redis() -> Iterator[str]:
    """A TCP port that accepts connections (kernel backlog) and never answers: a hung Redis."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        s.listen(64)
        yield f"redis://127.0.0.1:{s.getsockname()[1]}/0"


def _errors() -> float:
    return REGISTRY.get_sample_value("ledgerhook_auth_brake_errors_total") or 0.0


@pytest.mark.parametrize("where", ["refused", "silent"])
async def test_brake_fails_open_without_waiting(where: str, silent_redis: str) -> None:
    url = silent_redis if where == "silent" else f"redis://127.0.0.1:{free_port()}/0"
    settings = Settings(
        database_url=Secret("postgresql://unused/x"),
        redis_url=Secret(url),
        processors=ProcessorSettings(queue_name=_queue()),
        api=ApiSettings(auth_failures_per_minute=1, brake_timeout_seconds=0.2),
    )
    before = _errors()
    async with open_brake(settings) as brake:
        for _ in range(3):
            started = time.monotonic()
            assert await brake.record_failure("192.0.2.9") is None
            assert await brake.check("192.0.2.9") is None
            assert time.monotonic() - started < 1.5
    assert _errors() >= before + 6


async def _redis_outage_app_checks(client: AsyncTestClient[object], token: str) -> None:
    for _ in range(3):
        started = time.monotonic()
        r = await client.get("/audit/checkpoints", headers={"Authorization": f"Bearer {_bad()}"})
        assert r.status_code == 401, r.text
        assert time.monotonic() - started < 3
        r = await client.get("/audit/checkpoints", headers={"Authorization": f"Bearer {token}"})
        assert r.status_code == 200, r.text
    assert (await client.get("/audit/checkpoints")).status_code == 401


async def test_redis_down_valid_tokens_pass_bad_ones_get_401(
    settings: Settings, auditor: str, private_redis: str
) -> None:
    own = msgspec.structs.replace(
        settings,
        redis_url=Secret(private_redis),
        api=ApiSettings(auth_failures_per_minute=2),
    )
    bad = {"Authorization": f"Bearer {_bad()}"}
    async with AsyncTestClient(create_app(own), raise_server_exceptions=False) as client:
        codes = [
            (await client.get("/audit/checkpoints", headers=bad)).status_code for _ in range(3)
        ]
        assert codes == [401, 401, 429]  # the brake is live on this Redis
        admin = Redis.from_url(private_redis)
        await admin.shutdown(nosave=True)
        await admin.aclose()
        await _redis_outage_app_checks(client, auditor)


async def test_silent_redis_valid_tokens_pass_bad_ones_get_401(
    settings: Settings, auditor: str, silent_redis: str
) -> None:
    own = msgspec.structs.replace(settings, redis_url=Secret(silent_redis))
    async with AsyncTestClient(create_app(own), raise_server_exceptions=False) as client:
        await _redis_outage_app_checks(client, auditor)


def _event() -> bytes:
    return msgspec.json.encode(
        {
            "id": f"evt_proxy_{uuid.uuid4().hex}",
            "object": "event",
            "type": "customer.updated",
            "created": int(time.time()),
            "data": {"object": {"id": "cus_proxy", "object": "customer"}},
        }
    )


def _signed(body: bytes, forwarded_for: str, secret: str = STRIPE_SECRET) -> dict[str, str]:
    return {
        "stripe-signature": stripe_signature(body, int(time.time()), secret),
        "content-type": "application/json",
        "x-forwarded-for": forwarded_for,
    }


async def test_webhook_source_address_is_the_client_behind_a_trusted_proxy(
    servers: tuple[Service, Service], pool: asyncpg.Pool
) -> None:
    a, _ = servers
    provider = _client_ip()
    forwarded = f"203.0.113.66, {provider}"  # a spoofed entry, then the proxy's own
    ids = {}
    for local in (PROXY, STRANGER):
        body = _event()
        async with _from(local) as client:
            r = await client.post(
                f"{base_url(a)}/webhooks/stripe", content=body, headers=_signed(body, forwarded)
            )
        assert r.status_code == 200, r.text
        ids[local] = r.json()["delivery_id"]
    body = _event()
    async with _from(PROXY) as client:
        r = await client.post(
            f"{base_url(a)}/webhooks/stripe",
            content=body,
            headers=_signed(body, forwarded, "whsec_not_the_right_one"),
        )
    assert r.status_code == 400
    async with pool.acquire() as conn:
        stored = {
            r["id"]: (r["source_address"], msgspec.json.decode(r["headers"]))
            for r in await conn.fetch(
                "SELECT id, source_address, headers FROM audit.deliveries WHERE id = ANY($1)",
                list(ids.values()),
            )
        }
        deadline = time.monotonic() + 15
        rejected = None
        while rejected is None and time.monotonic() < deadline:
            rejected = await conn.fetchrow(
                "SELECT source_address, headers FROM audit.rejections WHERE source_address = $1",
                provider,
            )
            await asyncio.sleep(0.2)
    # Through the trusted proxy: the provider's address, the proxy kept as the last header.
    address, headers = stored[ids[PROXY]]
    assert address == provider
    assert ["x-forwarded-for", forwarded] in headers
    assert headers[-1] == ["x-ledgerhook-peer", PROXY]
    # From an untrusted sender: its own address, headers exactly as received.
    address, headers = stored[ids[STRANGER]]
    assert address == STRANGER
    assert ["x-forwarded-for", forwarded] in headers
    assert all(name != "x-ledgerhook-peer" for name, _ in headers)
    # Refused deliveries are recorded under the same address.
    assert rejected is not None, "the rejection was not recorded"
    assert msgspec.json.decode(rejected["headers"])[-1] == ["x-ledgerhook-peer", PROXY]
