"""The worker outlives Redis and PostgreSQL outages: it is rebuilt, not exited (no I/O)."""

from __future__ import annotations

import asyncio
from typing import Any

import asyncpg
import pytest
import redis.exceptions

import ledgerhook.worker as worker_mod
from tests.conftest import make_settings


class _FlakyWorker:
    """Raises ``exc`` from its run loop once, then runs to completion."""

    runs = 0

    def __init__(self, exc: BaseException) -> None:
        self._exc = exc
        self.on_shutdown = None
        self.ctx: dict[str, Any] = {}

    async def async_run(self) -> None:
        type(self).runs += 1
        if type(self).runs == 1:
            raise self._exc

    async def close(self) -> None:
        return None


@pytest.mark.parametrize(
    "exc",
    [
        # What the fault suite saw: Redis stopped while arq enqueued a cron job.
        redis.exceptions.WatchError(
            "A ConnectionError occurred on while watching one or more keys"
        ),
        redis.exceptions.BusyLoadingError("Redis is loading the dataset in memory"),
        redis.exceptions.ConnectionError("Connection refused"),
        asyncpg.exceptions.CannotConnectNowError("the database system is starting up"),
        ConnectionRefusedError(111, "Connection refused"),
    ],
    ids=lambda e: type(e).__name__,
)
async def test_an_outage_error_rebuilds_the_worker(
    exc: BaseException, monkeypatch: pytest.MonkeyPatch
) -> None:
    _FlakyWorker.runs = 0
    monkeypatch.setattr(worker_mod, "create_worker", lambda *a, **k: _FlakyWorker(exc))
    real_sleep = asyncio.sleep
    monkeypatch.setattr(worker_mod.asyncio, "sleep", lambda s: real_sleep(0))
    assert await worker_mod.run_supervised(make_settings("x")) == 0
    assert _FlakyWorker.runs == 2


async def test_a_programming_error_is_not_swallowed(monkeypatch: pytest.MonkeyPatch) -> None:
    _FlakyWorker.runs = 0
    monkeypatch.setattr(
        worker_mod, "create_worker", lambda *a, **k: _FlakyWorker(KeyError("settings"))
    )
    with pytest.raises(KeyError):
        await worker_mod.run_supervised(make_settings("x"))
