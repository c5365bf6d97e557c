"""The alerts CLI as an operator runs it: ``ledgerhook reconcile`` against a local stand-in for
Stripe's API, and ``ledgerhook alerts list|show|ack|resolve`` for on-call at a terminal."""

from __future__ import annotations

import getpass
import json
import os
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from datetime import UTC, datetime
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import ClassVar
from urllib.parse import parse_qs, urlsplit

import asyncpg
import msgspec
import pytest
from litestar.testing import AsyncTestClient

from alerts import lifecycle
from alerts.model import Finding
from audit.tokens import create_token
from ledgerhook.app import create_app
from ledgerhook.settings import Settings
from tests.conftest import CHECKPOINT_KEY, fixture_bytes

NOW = int(time.time())
EVENTS = [
    json.dumps(
        {
            **msgspec.json.decode(fixture_bytes("stripe", "subscription_created.json")),
            "id": f"evt_cli_{i}",
            "created": NOW - 600 + i,
        },
        indent=1,
    ).encode()
    for i in range(3)
]


class StripeStandIn(BaseHTTPRequestHandler):
    requests: ClassVar[list[dict[str, list[str]]]] = []

    def do_GET(self) -> None:
        url = urlsplit(self.path)
        params = parse_qs(url.query)
        StripeStandIn.requests.append(params)
        if url.path != "/v1/events" or self.headers.get("Authorization") != "Bearer sk_test_cli":
            self.send_response(401)
            self.end_headers()
            return
        if params.get("delivery_success") == ["false"]:
            page, more = [], False
        elif "starting_after" not in params:
            page, more = EVENTS[2:0:-1], True  # newest first
        else:
            page, more = EVENTS[:1], False
        body = (
            b'{"object": "list", "data": ['
            + b",".join(page)
            + b'], "has_more": '
            + (b"true" if more else b"false")
            + b"}"
        )
        self.send_response(200)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, *args: object) -> None:
        pass


@pytest.fixture
def stand_in() -> Iterator[str]:
    server = ThreadingHTTPServer(("127.0.0.1", 0), StripeStandIn)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{server.server_address[1]}"
    server.shutdown()
    server.server_close()


async def test_reconcile_cli_backfills_and_prints_a_summary(
    fresh_settings: Settings, stand_in: str
) -> None:
    env = {
        **os.environ,
        "LEDGERHOOK_DATABASE_URL": fresh_settings.database_url.reveal(),
        "LEDGERHOOK_STRIPE_API_KEY": "sk_test_cli",
        "LEDGERHOOK_STRIPE_API_BASE": stand_in,
        "LEDGERHOOK_STRIPE_ACCOUNT": "acct_cli",
        "LEDGERHOOK_CHECKPOINT_KEY": CHECKPOINT_KEY,
        "LEDGERHOOK_LOG_FORMAT": "text",
    }
    cmd = [
        sys.executable,
        "-m",
        "ledgerhook.cli",
        "reconcile",
        "--provider",
        "stripe",
        "--since",
        "2h",
    ]
    out = subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=120, check=False)
    assert out.returncode == 0, out.stderr
    assert "listed 3 events in 3 pages; 0 already in the audit log" in out.stdout
    assert "missing 3; backfilled 3; applied 3" in out.stdout
    assert "pages" in out.stderr and "events listed" in out.stderr  # progress counts
    assert "sk_test_cli" not in out.stdout + out.stderr
    since = int(StripeStandIn.requests[0]["created[gte]"][0])
    assert abs(since - (int(time.time()) - 7200)) < 60

    conn = await asyncpg.connect(fresh_settings.database_url.reveal())
    try:
        rows = await conn.fetch(
            "SELECT event_id, origin, account, body FROM audit.deliveries ORDER BY id"
        )
    finally:
        await conn.close()
    assert [r["event_id"] for r in rows] == ["evt_cli_0", "evt_cli_1", "evt_cli_2"]
    assert {(r["origin"], r["account"]) for r in rows} == {("reconciliation", "acct_cli")}
    assert [bytes(r["body"]) for r in rows] == EVENTS

    again = subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=120, check=False)
    assert again.returncode == 0 and "missing 0; backfilled 0; applied 0" in again.stdout

    bad = subprocess.run(
        [*cmd[:-2], "--since", "2 weeks"],
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert bad.returncode == 2 and "positive duration" in bad.stderr


def _alerts_cli(settings: Settings, *args: str) -> subprocess.CompletedProcess[str]:
    env = {
        **os.environ,
        "LEDGERHOOK_DATABASE_URL": settings.database_url.reveal(),
        "LEDGERHOOK_LOG_FORMAT": "text",
        "COLUMNS": "160",
    }
    return subprocess.run(
        [sys.executable, "-m", "ledgerhook.cli", "alerts", *args],
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )


async def test_on_call_lists_shows_acknowledges_and_resolves_at_a_terminal(
    fresh_settings: Settings, fresh_pool: asyncpg.Pool
) -> None:
    now = datetime.now(UTC)
    findings = [
        Finding(
            rule="out_of_order",
            severity="warning",
            provider="stripe",
            subject="stripe:acct:subscription:sub_cli",
            summary="2 event(s) older than the applied state of subscription sub_cli",
            count=2,
            delivery_ids=(11, 12),
        ),
        Finding(
            rule="processing",
            severity="critical",
            provider="chargebee",
            subject="dead_letter:chargebee",
            summary="3 chargebee deliveries are dead-lettered (failed to apply)",
            count=3,
        ),
    ]
    async with fresh_pool.acquire() as conn:
        fired = await lifecycle.apply_findings(conn, findings, now)
        token = await create_token(conn, name="cli-compare", role="auditor")
    warning, critical = (f.alert_id for f in fired)

    listed = _alerts_cli(fresh_settings, "list")
    assert listed.returncode == 0, listed.stderr
    header, *rows = listed.stdout.splitlines()
    assert header.split()[:4] == ["ID", "STATUS", "SEVERITY", "RULE"] and "SUMMARY" in header
    assert [r.split()[0] for r in rows] == [str(critical), str(warning)]  # newest first
    assert "dead-lettered" in rows[0] and "critical" in rows[0]

    only = _alerts_cli(fresh_settings, "list", "--severity", "critical", "--status", "open")
    assert [r.split()[0] for r in only.stdout.splitlines()[1:]] == [str(critical)]
    as_json = _alerts_cli(fresh_settings, "list", "--json")
    async with AsyncTestClient(create_app(fresh_settings)) as client:
        api = (await client.get("/alerts", headers={"Authorization": f"Bearer {token}"})).json()
    assert msgspec.json.decode(as_json.stdout) == api  # the API's own body
    assert _alerts_cli(fresh_settings, "list", "--rule", "nonsense").returncode == 2

    acked = _alerts_cli(fresh_settings, "ack", str(warning), "--note", "looking", "--as", "alice")
    assert acked.returncode == 0, acked.stderr
    assert f"alert {warning} is acknowledged" in acked.stdout
    again = _alerts_cli(fresh_settings, "ack", str(warning))
    assert again.returncode == 1 and "only an open alert can be acknowledged" in again.stderr
    resolved = _alerts_cli(fresh_settings, "resolve", str(warning), "--note", "replayed")
    assert resolved.returncode == 0, resolved.stderr
    twice = _alerts_cli(fresh_settings, "resolve", str(warning))
    assert twice.returncode == 1 and "already resolved" in twice.stderr

    shown = _alerts_cli(fresh_settings, "show", str(warning))
    assert shown.returncode == 0, shown.stderr
    assert "out_of_order (warning), resolved" in shown.stdout
    assert "deliveries 11, 12" in shown.stdout
    history = [line.split() for line in shown.stdout.splitlines() if "->" in line]
    assert [h[2] for h in history] == ["system", "cli:alice", f"cli:{getpass.getuser()}"]
    assert "looking" in shown.stdout and "replayed" in shown.stdout
    detail = msgspec.json.decode(_alerts_cli(fresh_settings, "show", str(warning), "--json").stdout)
    assert detail["alert"]["acknowledged_by"] == "cli:alice"
    assert [e["note"] for e in detail["history"]][1:] == ["looking", "replayed"]

    missing = _alerts_cli(fresh_settings, "show", "999999")
    assert missing.returncode == 1 and "does not exist" in missing.stderr
