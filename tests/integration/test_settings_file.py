"""The settings file: `make run` writes .env, and every ledgerhook command run beside it reads it.

So the README's commands (`ledgerhook token create ...`, `verify`, `export`, `replay`) work from a
plain shell after `make run`, with nothing exported.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from ledgerhook.settings import Settings, load_settings
from tests.conftest import CHECKPOINT_KEY

REPO = Path(__file__).resolve().parents[2]
LEDGERHOOK = Path(sys.executable).with_name("ledgerhook")


def plain_shell_env() -> dict[str, str]:
    """A shell with no LEDGERHOOK_* variable at all (not even the test run's LEDGERHOOK_ENV_FILE)."""
    return {k: v for k, v in os.environ.items() if not k.startswith(("LEDGERHOOK_", "PROMETHEUS_"))}


@pytest.mark.skipif(shutil.which("make") is None, reason="make is not installed")
def test_make_writes_the_development_settings_the_demo_needs(tmp_path: Path) -> None:
    out = subprocess.run(
        ["make", "-s", "-f", str(REPO / "Makefile"), ".env"],
        cwd=tmp_path,
        env=plain_shell_env(),
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert out.returncode == 0, out.stderr
    s = load_settings({}, cwd=tmp_path)
    assert s.database_url.reveal() == "postgresql://postgres@127.0.0.1:5432/ledgerhook"
    stripe = s.endpoint("stripe", "default")
    chargebee = s.endpoint("chargebee", "default")
    assert stripe is not None and stripe.secrets and stripe.account_id == "acct_demo"
    assert chargebee is not None and chargebee.basic_auth
    # The demo's stand-in Stripe Events API listens on 12111 by default.
    assert s.stripe_api_key is not None and s.stripe_api_base == "http://127.0.0.1:12111"
    # ... which runs only during the demo: no periodic reconciliation failing every 15 minutes.
    assert s.reconcile.interval_seconds == 0
    assert s.environment == "development"

    again = subprocess.run(
        ["make", "-s", "-f", str(REPO / "Makefile"), ".env"],
        cwd=tmp_path,
        env=plain_shell_env(),
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert again.returncode == 0 and "wrote" not in again.stderr  # an existing .env is kept


def test_cli_commands_read_the_env_file_of_the_working_directory(
    fresh_settings: Settings, tmp_path: Path
) -> None:
    (tmp_path / ".env").write_text(
        f"LEDGERHOOK_DATABASE_URL={fresh_settings.database_url.reveal()}\n"
        f"LEDGERHOOK_CHECKPOINT_KEY={CHECKPOINT_KEY}\n"
        "LEDGERHOOK_LOG_LEVEL=WARNING\n"
    )

    def cli(*args: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            [str(LEDGERHOOK), *args],
            cwd=tmp_path,
            env=plain_shell_env(),
            capture_output=True,
            text=True,
            timeout=120,
            check=False,
        )

    created = cli("token", "create", "--role", "auditor", "--name", "alice")
    assert created.returncode == 0, created.stderr
    assert created.stdout.strip().startswith("lh_")
    listed = cli("token", "list")
    assert listed.returncode == 0 and "alice" in listed.stdout
    verified = cli("verify")
    assert verified.returncode == 0, verified.stderr
    exported = cli("export", "--output", "log.jsonl")
    assert exported.returncode == 0, exported.stderr
    assert (tmp_path / "log.jsonl").exists()
    replayed = cli("replay", "--dead-letters")
    assert replayed.returncode == 0, replayed.stderr


def test_without_a_settings_file_the_error_says_where_settings_go(tmp_path: Path) -> None:
    out = subprocess.run(
        [str(LEDGERHOOK), "token", "list"],
        cwd=tmp_path,
        env=plain_shell_env(),
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert out.returncode == 2
    assert "LEDGERHOOK_DATABASE_URL is required" in out.stderr and ".env" in out.stderr
