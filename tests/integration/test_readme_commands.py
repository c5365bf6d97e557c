"""Every README shell block marked runnable (```` ```sh runnable ````) runs as written and exits 0.

As a new user would: a checkout (symlinks to this one) whose ``.env`` is what ``make run`` writes,
pointed at a fresh database of this test's own (created by ``ledgerhook run``, dropped at the end)
and at this run's Redis queue; ``ledgerhook run`` serving it; each block run by bash from a plain
shell (no ``LEDGERHOOK_*`` variable) in that checkout, in README order, so a block may use what
an earlier one made. The only change to a block: ``127.0.0.1:8000``/``localhost:8000`` become the
test server's address. See tests/readme_blocks.py for the marker.
"""

from __future__ import annotations

import asyncio
import os
import shutil
import signal
import subprocess
import time
import urllib.request
from collections.abc import Iterator
from pathlib import Path

import asyncpg
import pytest

from tests.conftest import PG_BASE, REDIS_URL, RUN_ID, free_port
from tests.readme_blocks import README, runnable_blocks

REPO = README.parent
DBNAME = f"lht_{RUN_ID}_readme"
LOCAL = ("127.0.0.1:8000", "localhost:8000")


def _plain_shell() -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("LEDGERHOOK_", "PROMETHEUS_"))}
    env["PATH"] = f"{REPO / '.venv' / 'bin'}:{env.get('PATH', '')}"
    return env


def _drop_database() -> None:
    async def drop() -> None:
        conn = await asyncpg.connect(f"{PG_BASE}/postgres")
        try:
            await conn.execute(f'DROP DATABASE IF EXISTS "{DBNAME}" WITH (FORCE)')
        finally:
            await conn.close()

    asyncio.run(drop())


@pytest.fixture
def checkout(tmp_path: Path) -> Iterator[Path]:
    """A working copy of this checkout (symlinks) with the .env `make run` writes, retargeted."""
    for entry in REPO.iterdir():
        if entry.name not in {
            ".env",
            ".ledgerhook",
            "log.jsonl",
            "log.pub",
            "delivery.proof.json",
            "body.bin",
        }:
            (tmp_path / entry.name).symlink_to(entry)
    made = subprocess.run(
        ["make", "-s", "-f", str(REPO / "Makefile"), ".env"],
        cwd=tmp_path,
        env=_plain_shell(),
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert made.returncode == 0, made.stderr
    with (tmp_path / ".env").open("a") as env_file:  # later lines win
        env_file.write(
            "# test run: its own database and queue\n"
            f"LEDGERHOOK_DATABASE_URL={PG_BASE}/{DBNAME}\n"
            f"LEDGERHOOK_REDIS_URL={REDIS_URL}\n"
            f"LEDGERHOOK_PROCESSORS__QUEUE_NAME=lh-test-{RUN_ID}-readme\n"
            "LEDGERHOOK_LOG_LEVEL=WARNING\n"
        )
    _drop_database()
    try:
        yield tmp_path
    finally:
        _drop_database()


@pytest.mark.skipif(shutil.which("make") is None, reason="make is not installed")
def test_runnable_readme_blocks_exit_zero(checkout: Path) -> None:
    blocks = runnable_blocks(README.read_text(encoding="utf-8"))
    assert len(blocks) >= 3, "README has no runnable blocks: is the marker still ```sh runnable?"
    port = free_port()
    log = checkout / "run.log"
    with log.open("wb") as out:
        server = subprocess.Popen(
            [str(checkout / ".venv" / "bin" / "ledgerhook"), "run", "--port", str(port)],
            cwd=checkout,
            env=_plain_shell(),
            stdout=out,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
    try:
        deadline = time.monotonic() + 90
        while True:
            assert server.poll() is None, log.read_text(errors="replace")
            try:
                with urllib.request.urlopen(f"http://127.0.0.1:{port}/health/ready", timeout=1):
                    break
            except OSError:
                assert time.monotonic() < deadline, log.read_text(errors="replace")
                time.sleep(0.3)

        failures = []
        for block in blocks:
            script = block.body
            for address in LOCAL:
                script = script.replace(address, f"127.0.0.1:{port}")
            ran = subprocess.run(
                ["bash", "-e", "-o", "pipefail", "-c", script],
                cwd=checkout,
                env=_plain_shell(),
                capture_output=True,
                text=True,
                timeout=180,
                check=False,
            )
            if ran.returncode != 0:
                failures.append(
                    f"README.md:{block.line}: exit {ran.returncode}\n{block.body}"
                    f"--- stdout\n{ran.stdout[-2000:]}--- stderr\n{ran.stderr[-2000:]}"
                )
        assert not failures, "\n\n".join(failures) + "\n--- server\n" + log.read_text()[-3000:]
    finally:
        if server.poll() is None:
            os.killpg(server.pid, signal.SIGTERM)
            try:
                server.wait(30)
            except subprocess.TimeoutExpired:
                os.killpg(server.pid, signal.SIGKILL)
                server.wait()
