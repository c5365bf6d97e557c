"""Play the migration story (:mod:`ledgerhook.demo.migration_story`) against a running instance.

Everything an operator would do goes through the instance's API with the demo's admin token:
the signed webhooks, the link and price imports, the planned cut-over, the verification run and
its report. The coexistence sweep runs here, like the main demo runs the alerts sweep, so the
double-billing alert shows at once rather than at the next scheduled sweep.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import asyncpg
import httpx

from ledgerhook.demo.migration_story import (
    MigrationStory,
    build_migration_story,
    links_csv,
    prices_csv,
)
from ledgerhook.demo.story import basic_auth, stripe_signature
from ledgerhook.settings import Settings

__all__ = ["MigrationReport", "run_migration_story"]

Say = Callable[[str], None]


@dataclass
class MigrationReport:
    mismatched: list[str] = field(default_factory=list)
    matched_or_explained: list[str] = field(default_factory=list)
    double_billing: list[str] = field(default_factory=list)
    story: MigrationStory | None = None

    def ok(self) -> bool:
        s = self.story
        if s is None:
            return False
        return (
            s.mismatched.stripe_subscription in " ".join(self.mismatched)
            and s.matching.stripe_subscription in " ".join(self.matched_or_explained)
            and s.matching.stripe_subscription not in " ".join(self.mismatched)
            and bool(self.double_billing)
        )


def _check(resp: httpx.Response, what: str) -> Any:
    if resp.status_code != 200:
        from ledgerhook.demo.runner import DemoError  # the runner imports this module

        raise DemoError(f"{what}: HTTP {resp.status_code} {resp.text[:300]}")
    return resp.json()


async def _wait(conn: asyncpg.Connection, ids: list[int], wait_seconds: float) -> None:
    deadline = time.monotonic() + wait_seconds
    while time.monotonic() < deadline:
        n = await conn.fetchval(
            "SELECT count(*) FROM processors.processed WHERE delivery_id = ANY($1::bigint[])", ids
        )
        if n >= len(set(ids)):
            return
        await asyncio.sleep(0.25)


async def run_migration_story(
    client: httpx.AsyncClient,
    conn: asyncpg.Connection,
    settings: Settings,
    *,
    auth: dict[str, str],
    secrets: tuple[str, str],
    tag: str,
    say: Say,
    wait_seconds: float = 60.0,
) -> MigrationReport:
    story = build_migration_story(tag, int(time.time()))
    report = MigrationReport(story=story)
    say("")
    say(f"Migration story: three Chargebee customers moving to Stripe (cohort {story.cohort})")
    stripe_secret, cb_auth = secrets
    ids = []
    for ev in story.events:
        if ev.provider == "stripe":
            headers = {
                "Stripe-Signature": stripe_signature(stripe_secret, int(time.time()), ev.body)
            }
        else:
            headers = {"Authorization": basic_auth(cb_auth)}
        body = _check(
            await client.post(
                f"/webhooks/{ev.provider}",
                content=ev.body,
                headers={**headers, "Content-Type": "application/json"},
            ),
            f"{ev.provider} {ev.event_type}",
        )
        ids.append(int(body["delivery_id"]))
        say(f"  -> {ev.provider:9} {ev.event_type:32} delivery #{body['delivery_id']:<6} {ev.note}")
    await _wait(conn, ids, wait_seconds)

    csv = {**auth, "Content-Type": "text/csv"}
    linked = _check(
        await client.post("/migration/links", content=links_csv(story), headers=csv),
        "POST /migration/links",
    )
    _check(
        await client.post("/migration/prices", content=prices_csv(story), headers=csv),
        "POST /migration/prices",
    )
    say(
        f"  linked {linked['linked']} pairs, each customer and its subscription, Chargebee to "
        f"Stripe (POST /migration/links); price map {story.chargebee_price} -> {story.stripe_price}"
    )
    plan = _check(
        await client.post(
            f"/migration/cohorts/{story.cohort}/plan", json={"at": story.cutover_at}, headers=auth
        ),
        "plan",
    )
    when = time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime(plan["effective_at"]))
    say(
        f"  cut-over planned for {when}, a period boundary: Chargebee stays authoritative until then"
    )

    run = _check(
        await client.post(f"/migration/cohorts/{story.cohort}/verify", headers=auth), "verify"
    )
    s = run["summary"]
    say(
        f"  verification run {run['run_id']}: {s['pairs']} linked pairs, {s['matched']} matched, "
        f"{s['explained']} explained, {s['mismatched']} mismatched"
    )
    page = _check(
        await client.get(
            f"/migration/cohorts/{story.cohort}/report", params={"limit": 100}, headers=auth
        ),
        "report",
    )
    for item in page["items"]:
        line = f"{item['source']} -> {item['target']}"
        if item["verdict"] == "mismatch":
            report.mismatched.append(line)
            for c in item["checks"]:
                if c["verdict"] == "mismatch":
                    say(
                        f"    [mismatch] {line}: {c['kind']} {c['source']} vs {c['target']} ({c['reason']})"
                    )
        else:
            report.matched_or_explained.append(line)
            reasons = "; ".join(sorted({c["reason"] for c in item["checks"]}))
            say(f"    [explained] {line}: {reasons}")

    from alerts.coexist.sweep import coexist_sweep
    from ledgerhook.db import create_pool

    pool = await create_pool(settings, min_size=1, max_size=2)
    try:
        await coexist_sweep(pool, settings)
    finally:
        await pool.close()
    alerts = _check(
        await client.get(
            "/alerts",
            params={"status": "open", "rule": "coexist_double_billing", "limit": 200},
            headers=auth,
        ),
        "GET /alerts",
    )
    for a in alerts["items"]:
        if a["evidence"].get("cohort") == story.cohort:
            report.double_billing.append(a["summary"])
            say(f"    [{a['severity']}] {a['rule']}: {a['summary']}")
    return report
