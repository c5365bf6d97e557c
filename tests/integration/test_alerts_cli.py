"""``ledgerhook reconcile`` as an operator runs it, against a local stand-in for Stripe's API."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import ClassVar
from urllib.parse import parse_qs, urlsplit

import asyncpg
import msgspec
import pytest

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
