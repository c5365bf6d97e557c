"""Data for console tests: real fixture deliveries applied by the real processors, a hostile
delivery, alerts, and a token per role; plus small helpers to read forms out of pages."""

from __future__ import annotations

import html
import os
import re
import subprocess
import sys
import time
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

import asyncpg
import httpx
import msgspec

from alerts.lifecycle import apply_findings
from alerts.model import Finding
from audit.append import NewDelivery
from audit.checkpoints import create_checkpoint
from audit.tokens import Role, create_token
from ledgerhook.settings import Settings
from processors.service import process_delivery
from tests.conftest import CHECKPOINT_KEY, REDIS_URL, free_port
from tests.integration.audit_helpers import log_signer
from tests.integration.processors_helpers import append, new_delivery, stripe_event, stripe_sequence
from tests.integration.run_helpers import REPO

# What a hostile payload would do if it ever ran: set this flag, or open a dialog.
HOSTILE_SCRIPT = "<script>window.__lh_pwned = 1; alert('pwned')</script>"
HOSTILE_URL = "javascript:window.__lh_pwned=1"
HOSTILE_IMG = '<img src=x onerror="window.__lh_pwned=1">'


@dataclass
class Seeded:
    suffix: str
    tokens: dict[str, str]
    names: dict[str, str]
    subscription_id: str
    customer_id: str
    delivery_ids: list[int]
    hostile_delivery_id: int
    hostile_object_id: str
    unprocessed_delivery_id: int
    replay_delivery_id: int
    dead_letter_delivery_id: int
    alert_id: int
    hostile_alert_id: int
    extra: dict[str, Any] = field(default_factory=dict)


def _hostile_event(suffix: str, object_id: str) -> dict[str, Any]:
    ev = stripe_event("customer_updated.json", object_id=object_id)
    obj = ev["data"]["object"]
    obj["name"] = f"Mallory {HOSTILE_SCRIPT}"
    obj["email"] = f"mallory-{suffix}@example.com"
    obj["description"] = HOSTILE_IMG
    obj["metadata"] = {
        "homepage": HOSTILE_URL,
        "note": "</pre><script>window.__lh_pwned=1</script>",
    }
    return ev


def _hostile_delivery(suffix: str, object_id: str) -> NewDelivery:
    d = new_delivery("stripe", _hostile_event(suffix, object_id))
    headers = [
        ["content-type", "application/json"],
        ["user-agent", f"Stripe/1.0 {HOSTILE_SCRIPT}"],
        ["x-link", HOSTILE_URL],
    ]
    return msgspec.structs.replace(d, headers=msgspec.json.encode(headers).decode())


async def seed(pool: asyncpg.Pool, suffix: str | None = None) -> Seeded:
    suffix = suffix or uuid.uuid4().hex[:10]
    events = stripe_sequence(suffix)
    appended = await append(pool, [new_delivery("stripe", e) for e in events])
    ids = [a.id for a in appended]
    hostile_object = f"cus_{suffix}_<script>x</script>"
    (hostile,) = await append(pool, [_hostile_delivery(suffix, hostile_object)])
    bad = stripe_event("subscription_updated.json", object_id=f"sub_dead{suffix}")
    bad["data"]["object"]["items"] = "not-a-list"
    (dead,) = await append(pool, [new_delivery("stripe", bad)])
    waiting, to_replay = await append(
        pool,
        [
            new_delivery(
                "stripe", stripe_event("customer_updated.json", object_id=f"cus_w{suffix}")
            ),
            new_delivery(
                "stripe", stripe_event("customer_updated.json", object_id=f"cus_r{suffix}")
            ),
        ],
    )
    async with pool.acquire() as conn:
        for delivery_id in [*ids, hostile.id, dead.id]:
            await process_delivery(conn, delivery_id)
        # A signed checkpoint over everything so far: delivery pages offer their proof bundle.
        origin = f"ledgerhook/{await conn.fetchval('SELECT current_database()')}"
        assert await create_checkpoint(conn, log_signer(), origin)
        now = datetime.now(UTC)
        fired = await apply_findings(
            conn,
            [
                Finding(
                    rule="out_of_order",
                    severity="warning",
                    provider="stripe",
                    subject=f"stripe/acct_test/subscription/sub_{suffix}",
                    summary=f"1 event(s) older than the applied state of subscription sub_{suffix}",
                    delivery_ids=(ids[0],),
                    evidence={"object_id": f"sub_{suffix}", "events": 1},
                ),
                Finding(
                    rule="missing_event",
                    severity="critical",
                    provider="stripe",
                    subject=f"stripe/acct_test/evt_{suffix}_<b>",
                    summary=f"event {HOSTILE_SCRIPT} was never delivered {HOSTILE_IMG}",
                    delivery_ids=(hostile.id,),
                    evidence={"url": HOSTILE_URL, "html": HOSTILE_SCRIPT},
                ),
            ],
            now,
        )
        tokens: dict[str, str] = {}
        names: dict[str, str] = {}
        for role in ("auditor", "oncall", "admin"):
            name = f"console-{role}-{suffix}"
            role_: Role = role  # type: ignore[assignment]
            tokens[role] = await create_token(conn, name=name, role=role_)
            names[role] = name
    return Seeded(
        suffix=suffix,
        tokens=tokens,
        names=names,
        subscription_id=f"sub_{suffix}",
        customer_id=f"cus_{suffix}",
        delivery_ids=ids,
        hostile_delivery_id=hostile.id,
        hostile_object_id=hostile_object,
        unprocessed_delivery_id=waiting.id,
        replay_delivery_id=to_replay.id,
        dead_letter_delivery_id=dead.id,
        alert_id=fired[0].alert_id,
        hostile_alert_id=fired[1].alert_id,
    )


_CSRF = re.compile(r'name="csrf" value="([^"]*)"')


def csrf_of(page: str) -> str:
    """The first CSRF token in a page's forms."""
    match = _CSRF.search(page)
    assert match, "no CSRF field in the page"
    return html.unescape(match.group(1))


@contextmanager
def console_server(settings: Settings, **env: str) -> Iterator[str]:
    """A real ``ledgerhook serve`` (uvicorn, one process) on a free port, against the settings'
    database, until the block ends; yields its base URL. ``env``: extra LEDGERHOOK_* values."""
    port = free_port()
    environ = {
        k: v for k, v in os.environ.items() if not k.startswith(("LEDGERHOOK_", "PROMETHEUS_"))
    }
    environ.update(
        LEDGERHOOK_DATABASE_URL=settings.database_url.reveal(),
        LEDGERHOOK_REDIS_URL=REDIS_URL,
        LEDGERHOOK_CHECKPOINT_KEY=CHECKPOINT_KEY,
        LEDGERHOOK_PROCESSORS__QUEUE_NAME=settings.processors.queue_name,
        LEDGERHOOK_LOG_FORMAT="text",
        LEDGERHOOK_LOG_LEVEL="WARNING",
        LEDGERHOOK_DB_POOL_MIN="1",
        LEDGERHOOK_DB_POOL_MAX="4",
        **env,
    )
    proc = subprocess.Popen(
        [sys.executable, "-m", "ledgerhook.cli", "serve", "--port", str(port), "--workers", "1"],
        env=environ,
        cwd=REPO,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
    )
    base = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 60
        while True:
            try:
                if httpx.get(base + "/health/live", timeout=1).status_code == 200:
                    break
            except httpx.HTTPError:
                pass
            if proc.poll() is not None or time.monotonic() > deadline:
                proc.kill()
                out = proc.communicate()[0].decode(errors="replace")
                raise AssertionError(f"console server did not start:\n{out[-3000:]}")
            time.sleep(0.1)
        yield base
    finally:
        proc.terminate()
        try:
            proc.wait(timeout=20)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()
        if proc.stdout is not None:
            proc.stdout.close()
