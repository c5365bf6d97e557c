"""A `ledgerhook sync` process killed mid-way (SIGKILL) and run again: it resumes at its cursor,
stores every object once and applies it once.

respx cannot reach into another process, so the provider here is the local stand-in server
(ledgerhook.demo.objects_api) in a thread of the test process, slowed down so the kill lands
while pages are being read.
"""

from __future__ import annotations

import asyncio
import os
import signal
import subprocess
import sys
import time
from urllib.parse import parse_qs, urlsplit

import asyncpg
import pytest

from ledgerhook.demo.objects_api import ObjectsApi
from ledgerhook.settings import Settings
from tests.conftest import REDIS_URL
from tests.integration.sync_helpers import rows, value

COUNT = 700


def _env(settings: Settings, provider: str, url: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("LEDGERHOOK_")}
    env.update(
        LEDGERHOOK_DATABASE_URL=settings.database_url.reveal(),
        LEDGERHOOK_REDIS_URL=REDIS_URL,
        LEDGERHOOK_LOG_FORMAT="text",
        LEDGERHOOK_PROCESSORS__QUEUE_NAME=settings.processors.queue_name,
        LEDGERHOOK_SYNC__RETRY_BASE_SECONDS="0.05",
    )
    if provider == "stripe":
        env.update(
            LEDGERHOOK_STRIPE_API_KEY="sk_test_resume",
            LEDGERHOOK_STRIPE_API_BASE=url,
            LEDGERHOOK_STRIPE_ACCOUNT="acct_resume",
        )
    else:
        env.update(
            LEDGERHOOK_CHARGEBEE_API_KEY="cb_test_resume",
            LEDGERHOOK_CHARGEBEE_API_BASE=url,
            LEDGERHOOK_CHARGEBEE_SITE="acme-resume",
        )
    return env


def _sync(env: dict[str, str], provider: str) -> subprocess.Popen[str]:
    return subprocess.Popen(
        [
            sys.executable,
            "-m",
            "ledgerhook.cli",
            "sync",
            "--provider",
            provider,
            "--types",
            "customers",
        ],
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )


async def _pages_stored(pool: asyncpg.Pool) -> int:
    found = await value(pool, "SELECT coalesce(max(pages), 0) FROM processors.sync_cursors")
    return int(found)


@pytest.mark.parametrize("provider", ["stripe", "chargebee"])
async def test_a_killed_sync_resumes_where_it_stopped(
    provider: str, fresh_settings: Settings, fresh_pool: asyncpg.Pool
) -> None:
    with ObjectsApi(count=COUNT, delay=0.3) as api:
        env = _env(fresh_settings, provider, api.url)
        first = _sync(env, provider)
        try:
            deadline = time.monotonic() + 120
            while await _pages_stored(fresh_pool) < 2:
                assert first.poll() is None, first.communicate()
                assert time.monotonic() < deadline, "the sync never stored two pages"
                await asyncio.sleep(0.05)
            first.send_signal(signal.SIGKILL)
        finally:
            first.communicate(timeout=30)
        assert first.returncode == -signal.SIGKILL
        (killed,) = await rows(fresh_pool, "SELECT * FROM processors.sync_cursors")
        assert killed["status"] == "running" and 2 <= killed["pages"] < COUNT // 100
        stored_when_killed = await value(fresh_pool, "SELECT count(*) FROM audit.deliveries")
        assert stored_when_killed == killed["listed"] == killed["pages"] * 100
        requests_before = len(api.requests)

        second = _sync(env, provider)
        out, err = second.communicate(timeout=300)
        assert second.returncode == 0, (out, err)
        assert "customers: done (resumed)" in out

    # The second run started at the cursor the killed one had stored, not at the beginning.
    resumed_with = parse_qs(urlsplit(api.requests[requests_before]).query)
    cursor_param = "starting_after" if provider == "stripe" else "offset"
    assert resumed_with[cursor_param] == [killed["cursor"]]
    # Every object stored once, applied once, nothing left unprocessed.
    assert await value(fresh_pool, "SELECT count(*) FROM audit.deliveries") == COUNT
    assert (
        await value(
            fresh_pool, "SELECT count(*) FROM audit.deliveries WHERE duplicate_of IS NOT NULL"
        )
        == 0
    )
    assert await value(fresh_pool, "SELECT count(*) FROM processors.customers") == COUNT
    assert (
        await value(
            fresh_pool,
            "SELECT count(*) FROM audit.deliveries d WHERE NOT EXISTS "
            "(SELECT 1 FROM processors.processed p WHERE p.delivery_id = d.id)",
        )
        == 0
    )
    assert (
        await value(
            fresh_pool,
            "SELECT max(n) FROM (SELECT count(*) AS n FROM processors.history "
            "WHERE outcome = 'applied' GROUP BY object_id) per_object",
        )
        == 1
    )
    (done,) = await rows(fresh_pool, "SELECT * FROM processors.sync_cursors")
    assert (done["status"], done["listed"], done["pending"]) == ("done", COUNT, [])
