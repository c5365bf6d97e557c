"""Test fixtures: real PostgreSQL and Redis, in databases each test run creates and drops itself.

One migrated template database is built per run; every database a test needs is a fast
``CREATE DATABASE ... TEMPLATE`` copy of it. The audit log is append-only, so tests never clean
up rows: a test that needs an empty log asks for ``fresh_settings`` (its own database), the others
share ``settings`` and only look at rows they made (distinct event ids).

Redis is the machine's shared server; tests keep out of each other's way with a queue name of
their own and never flush it. Tests that stop or flush Redis start a private server
(``private_redis``).
"""

from __future__ import annotations

import os
import shutil
import socket
import subprocess
import tempfile
import time
import uuid
from collections.abc import AsyncIterator, Awaitable, Callable, Iterator
from pathlib import Path
from typing import Any

import asyncpg
import msgspec
import pytest
import pytest_asyncio

from ledgerhook.db import create_pool
from ledgerhook.migrations import migrate
from ledgerhook.settings import (
    EndpointSettings,
    ProcessorSettings,
    Secret,
    Settings,
)

PG_BASE = os.environ.get("LEDGERHOOK_TEST_PG", "postgresql://postgres@127.0.0.1:5432")
REDIS_URL = os.environ.get("LEDGERHOOK_TEST_REDIS", "redis://127.0.0.1:6379/0")
RUN_ID = uuid.uuid4().hex[:8]
FIXTURES = Path(__file__).resolve().parents[2] / "shared" / "fixtures"
if not FIXTURES.exists():  # a clone inside another folder: shared/ sits beside the repo
    FIXTURES = Path(__file__).resolve().parents[1].parent / "shared" / "fixtures"

STRIPE_SECRET = "whsec_test_primary_0123456789abcdef"
STRIPE_SECRET_OLD = "whsec_test_rotated_out_fedcba9876543210"
CHARGEBEE_AUTH = "cbhook:s3cret-pass"
# The log's Ed25519 checkpoint key in tests (seed 00..1f: not a secret), and its public key.
CHECKPOINT_KEY = "PRIVATE+KEY+ledgerhook-test+6ad2e03b+AQABAgMEBQYHCAkKCwwNDg8QERITFBUWFxgZGhscHR4f"
PUBLIC_KEY = "ledgerhook-test+6ad2e03b+AQOhB7/zzhC+HXDdGOdLwJln5NYwm6UNXx3chmQSVTG4"

# A developer's .env (written by `make run` into the checkout) must not reach the test run:
# ledgerhook processes the tests start inherit this and read no env file unless a test names one.
os.environ["LEDGERHOOK_ENV_FILE"] = ""


def pytest_addoption(parser: pytest.Parser) -> None:
    parser.addoption("--run-slow", action="store_true", help="run the long (soak) suites too")


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    if config.getoption("--run-slow"):
        return
    skip = pytest.mark.skip(reason="long suite: run with `make soak`")
    for item in items:
        if "slow" in item.keywords:
            item.add_marker(skip)


def make_settings(dbname: str, **overrides: Any) -> Settings:
    base: dict[str, Any] = {
        "database_url": Secret(f"{PG_BASE}/{dbname}"),
        "redis_url": Secret(REDIS_URL),
        "checkpoint_key": Secret(CHECKPOINT_KEY),
        "log_format": "text",
        "db_pool_min": 1,
        "db_pool_max": 8,
        "endpoints": (
            EndpointSettings(
                provider="stripe",
                name="default",
                account="acct_test",
                secrets=(Secret(STRIPE_SECRET), Secret(STRIPE_SECRET_OLD)),
            ),
            EndpointSettings(
                provider="chargebee",
                name="default",
                account="acme-test",
                basic_auth=(Secret(CHARGEBEE_AUTH),),
            ),
        ),
        "processors": ProcessorSettings(queue_name=f"lh-test-{RUN_ID}"),
    }
    base.update(overrides)
    return Settings(**base)


async def _admin() -> asyncpg.Connection:
    return await asyncpg.connect(f"{PG_BASE}/postgres")


@pytest_asyncio.fixture(scope="session", autouse=True)
async def _forget_redis_keys() -> AsyncIterator[None]:
    """Delete what this run left in the shared Redis (queues and arq job keys named after RUN_ID):
    the shared server is left as it was found."""
    yield
    from redis.asyncio import Redis

    client = Redis.from_url(REDIS_URL)
    try:
        keys = [k async for k in client.scan_iter(match=f"*lh-test-{RUN_ID}*", count=1000)]
        for i in range(0, len(keys), 1000):
            await client.delete(*keys[i : i + 1000])
    finally:
        await client.aclose()


@pytest_asyncio.fixture(scope="session")
async def template_db() -> AsyncIterator[str]:
    name = f"lht_{RUN_ID}_tmpl"
    await migrate(make_settings(name))
    yield name
    conn = await _admin()
    try:
        await conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
    finally:
        await conn.close()


@pytest_asyncio.fixture(scope="session")
async def db_factory(template_db: str) -> AsyncIterator[Callable[[], Awaitable[str]]]:
    made: list[str] = []

    async def new_db() -> str:
        name = f"lht_{RUN_ID}_{len(made)}"
        conn = await _admin()
        try:
            await conn.execute(f'CREATE DATABASE "{name}" TEMPLATE "{template_db}"')
        finally:
            await conn.close()
        made.append(name)
        return name

    yield new_db
    conn = await _admin()
    try:
        for name in made:
            await conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
    finally:
        await conn.close()


@pytest_asyncio.fixture(scope="session")
async def settings(db_factory: Callable[[], Awaitable[str]]) -> Settings:
    """A database shared by the tests of this run (never assume it is empty)."""
    return make_settings(await db_factory())


@pytest_asyncio.fixture
async def fresh_settings(db_factory: Callable[[], Awaitable[str]]) -> Settings:
    """A database of this test's own, migrated and empty."""
    return make_settings(await db_factory())


@pytest_asyncio.fixture(scope="session")
async def pool(settings: Settings) -> AsyncIterator[asyncpg.Pool]:
    p = await create_pool(settings)
    yield p
    await p.close()


@pytest_asyncio.fixture
async def fresh_pool(fresh_settings: Settings) -> AsyncIterator[asyncpg.Pool]:
    p = await create_pool(fresh_settings)
    yield p
    await p.close()


async def superuser(settings: Settings) -> asyncpg.Connection:
    """A superuser connection to the settings' database (for tampering and inspection)."""
    return await asyncpg.connect(settings.database_url.reveal())


def fixture_bytes(provider: str, name: str) -> bytes:
    return (FIXTURES / provider / name).read_bytes()


def stripe_fixture_names() -> list[str]:
    return sorted(p.name for p in (FIXTURES / "stripe").glob("*.json"))


def with_event_id(body: bytes, event_id: str) -> bytes:
    """The fixture with a distinct event id (fixture ids repeat across files)."""
    data = msgspec.json.decode(body)
    if "event" in data and isinstance(data["event"], dict):
        data = data["event"]
    data["id"] = event_id
    return msgspec.json.encode(data)


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port: int = s.getsockname()[1]
        return port


@pytest.fixture
def private_redis() -> Iterator[str]:
    """A Redis server of this test's own, on a free port, for tests that stop or flush it."""
    exe = shutil.which("redis-server")
    if exe is None:
        pytest.fail("redis-server is not installed")
    port = free_port()
    workdir = tempfile.mkdtemp(prefix="lh-redis-")
    proc = subprocess.Popen(
        [
            exe,
            "--port",
            str(port),
            "--bind",
            "127.0.0.1",
            "--save",
            "",
            "--appendonly",
            "no",
            "--dir",
            workdir,
        ],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    deadline = time.monotonic() + 10
    while time.monotonic() < deadline:
        try:
            with socket.create_connection(("127.0.0.1", port), timeout=0.2):
                break
        except OSError:
            time.sleep(0.05)
    yield f"redis://127.0.0.1:{port}/0"
    proc.kill()
    proc.wait()
    shutil.rmtree(workdir, ignore_errors=True)
