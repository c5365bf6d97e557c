"""A real ``ledgerhook run`` in a subprocess, on free ports, with a database of its own."""

from __future__ import annotations

import asyncio
import json
import os
import re
import signal
import subprocess
import sys
import tempfile
import time
import urllib.request
from collections.abc import Iterator
from contextlib import contextmanager, suppress
from dataclasses import dataclass
from pathlib import Path

import asyncpg

from tests.conftest import (
    CHARGEBEE_AUTH,
    CHECKPOINT_KEY,
    PG_BASE,
    REDIS_URL,
    RUN_ID,
    STRIPE_SECRET,
    free_port,
)

REPO = Path(__file__).resolve().parents[2]


@dataclass
class Running:
    proc: subprocess.Popen[bytes]
    url: str
    env: dict[str, str]
    log: Path
    database_url: str

    def output(self) -> str:
        return self.log.read_text(errors="replace")

    def messages(self) -> list[tuple[str, str]]:
        """(logger, message) of every log line (JSON, as the helper configures)."""
        return [(e["logger"], e["msg"]) for e in map(json.loads, self.output().splitlines())]

    def child_pids(self) -> list[int]:
        return [int(p) for p in re.findall(r"started \w+ \(pid (\d+)\)", self.output())]


def _drop(dbname: str) -> None:
    async def drop() -> None:
        conn = await asyncpg.connect(f"{PG_BASE}/postgres")
        try:
            await conn.execute(f'DROP DATABASE IF EXISTS "{dbname}" WITH (FORCE)')
        finally:
            await conn.close()

    asyncio.run(drop())


def wait_outcome(database_url: str, delivery_id: int, seconds: float = 30) -> str | None:
    """The delivery's processing outcome, waiting for the worker up to ``seconds``."""

    async def poll() -> str | None:
        conn = await asyncpg.connect(database_url)
        try:
            deadline = time.monotonic() + seconds
            while time.monotonic() < deadline:
                outcome: str | None = await conn.fetchval(
                    "SELECT outcome FROM processors.processed WHERE delivery_id = $1", delivery_id
                )
                if outcome is not None:
                    return outcome
                await asyncio.sleep(0.2)
            return None
        finally:
            await conn.close()

    return asyncio.run(poll())


def demo_env(name: str, *, standin_port: int) -> dict[str, str]:
    dbname = f"lht_{RUN_ID}_{name}"
    env = {k: v for k, v in os.environ.items() if not k.startswith(("LEDGERHOOK_", "PROMETHEUS_"))}
    env.update(
        LEDGERHOOK_ENV_FILE="",  # never a developer's .env
        LEDGERHOOK_DATABASE_URL=f"{PG_BASE}/{dbname}",
        LEDGERHOOK_REDIS_URL=REDIS_URL,
        LEDGERHOOK_PROCESSORS__QUEUE_NAME=f"lh-test-{RUN_ID}-{name}",
        LEDGERHOOK_STRIPE_WEBHOOK_SECRETS=STRIPE_SECRET,
        LEDGERHOOK_STRIPE_ACCOUNT="acct_test",
        LEDGERHOOK_CHARGEBEE_BASIC_AUTH=CHARGEBEE_AUTH,
        LEDGERHOOK_CHARGEBEE_SITE="acme-test",
        LEDGERHOOK_STRIPE_API_KEY="sk_test_demo",
        LEDGERHOOK_STRIPE_API_BASE=f"http://127.0.0.1:{standin_port}",
        LEDGERHOOK_CHECKPOINT_KEY=CHECKPOINT_KEY,
        LEDGERHOOK_LOG_FORMAT="json",
        LEDGERHOOK_DB_POOL_MIN="1",
        LEDGERHOOK_DB_POOL_MAX="4",
    )
    return env


@contextmanager
def ledgerhook_run(name: str, *, standin_port: int = 0, **extra: str) -> Iterator[Running]:
    """``ledgerhook run`` until the block ends (then SIGKILLed if still alive), database dropped.

    ``extra`` adds or overrides environment variables."""
    env = demo_env(name, standin_port=standin_port or free_port())
    env.update(extra)
    port = free_port()
    fd, log_name = tempfile.mkstemp(prefix=f"lh-run-{name}-", suffix=".log")
    log = Path(log_name)
    with os.fdopen(fd, "wb") as out:
        proc = subprocess.Popen(
            [sys.executable, "-m", "ledgerhook.cli", "run", "--port", str(port)],
            env=env,
            cwd=REPO,
            stdout=out,
            stderr=subprocess.STDOUT,
        )
    running = Running(proc, f"http://127.0.0.1:{port}", env, log, env["LEDGERHOOK_DATABASE_URL"])
    try:
        deadline = time.monotonic() + 60
        while True:
            assert proc.poll() is None, running.output()
            try:
                with urllib.request.urlopen(running.url + "/health/ready", timeout=1) as resp:
                    if resp.status == 200:
                        break
            except OSError:
                pass
            assert time.monotonic() < deadline, "not ready in 60 s:\n" + running.output()
            time.sleep(0.2)
        yield running
    finally:
        if proc.poll() is None:
            proc.send_signal(signal.SIGTERM)
            try:
                proc.wait(20)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait()
        for pid in running.child_pids():
            with suppress(ProcessLookupError):
                os.kill(pid, signal.SIGKILL)
        _drop(env["LEDGERHOOK_DATABASE_URL"].rsplit("/", 1)[1])
        log.unlink(missing_ok=True)
