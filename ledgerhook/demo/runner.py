"""Run the demo story against a running instance and report what Ledgerhook made of it.

Sending is plain HTTP to the instance's webhook endpoints, signed with the secrets the instance
is configured with (the demo reads the same settings). Reading back uses the instance's API with
an admin token the demo creates and revokes at the end (alerts, reconcile, processing outcomes,
chain verification), and the database for what the API does not list (billing state summaries).
The counts it prints are those of every delivery the story made, the backfilled one included:
what the API shows for them.
"""

from __future__ import annotations

import asyncio
import logging
import time
import uuid
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import asyncpg
import httpx

from audit.errors import AuditError
from audit.note import parse_verifier_key
from audit.proofs import verify_bundle
from audit.tokens import create_token, revoke_token
from ledgerhook.db import connect
from ledgerhook.demo.migration import MigrationReport, run_migration_story
from ledgerhook.demo.standin import EventsApi
from ledgerhook.demo.story import Story, basic_auth, build_story, stripe_signature
from ledgerhook.settings import Settings

__all__ = ["DemoError", "DemoReport", "run_demo"]

log = logging.getLogger(__name__)

Say = Callable[[str], None]


class DemoError(Exception):
    """The demo cannot run (instance down, endpoint not configured); the message says what to do."""


@dataclass
class DemoReport:
    stored: int = 0
    duplicates: int = 0
    processed: dict[str, int] = field(default_factory=dict)
    backfilled: int = 0
    reconciled: bool = False
    alerts: list[dict[str, Any]] = field(default_factory=list)
    chain_ok: bool = False
    # "delivery N is leaf i of the signed tree of n leaves", checked with the public key alone.
    proof: str = ""
    subscription: dict[str, Any] = field(default_factory=dict)
    migration: MigrationReport | None = None

    def alert_rules(self) -> set[str]:
        return {a["rule"] for a in self.alerts}

    def ok(self) -> bool:
        wanted = {"out_of_order"} | ({"missing_event"} if self.reconciled else set())
        migrated = self.migration is not None and self.migration.ok()
        return (
            self.chain_ok
            and bool(self.proof)
            and self.duplicates >= 1
            and wanted <= self.alert_rules()
            and migrated
        )


def _secrets(settings: Settings) -> tuple[str, str]:
    stripe = settings.endpoint("stripe", "default")
    chargebee = settings.endpoint("chargebee", "default")
    if stripe is None or not stripe.secrets or chargebee is None or not chargebee.basic_auth:
        raise DemoError(
            "the demo signs with the instance's secrets: set LEDGERHOOK_STRIPE_WEBHOOK_SECRETS and "
            "LEDGERHOOK_CHARGEBEE_BASIC_AUTH (the same values the instance runs with)"
        )
    return stripe.secrets[0].reveal(), chargebee.basic_auth[0].reveal()


def _money(minor: int | None, currency: str | None) -> str:
    if minor is None:
        return "-"
    return f"{minor // 100}.{minor % 100:02d} {(currency or '').upper()}"


async def _send(
    client: httpx.AsyncClient,
    conn: asyncpg.Connection,
    story: Story,
    secrets: tuple[str, str],
    *,
    say: Say,
    wait_seconds: float,
) -> list[int]:
    """Send in story order, each after the previous one was applied: the worker applies
    concurrently, so only this makes "delivered late" mean late for the state too."""
    stripe_secret, cb_auth = secrets
    ids = []
    for step in story.deliveries:
        ev = step.event
        if ev.provider == "stripe":
            headers = {
                "Stripe-Signature": stripe_signature(stripe_secret, int(time.time()), ev.body)
            }
        else:
            headers = {"Authorization": basic_auth(cb_auth)}
        headers["Content-Type"] = "application/json"
        resp = await client.post(f"/webhooks/{ev.provider}", content=ev.body, headers=headers)
        if resp.status_code != 200:
            raise DemoError(
                f"{ev.provider} {ev.event_type}: HTTP {resp.status_code} {resp.text[:200]}"
            )
        body = resp.json()
        ids.append(int(body["delivery_id"]))
        dup = "  (duplicate of an earlier delivery)" if body.get("duplicate") else ""
        say(
            f"  -> {ev.provider:9} {ev.event_type:32} delivery #{body['delivery_id']:<6} {step.label}{dup}"
        )
        await _wait_processed(conn, ids[-1:], wait_seconds)
    return ids


async def _wait_processed(
    conn: asyncpg.Connection, ids: list[int], wait_seconds: float
) -> dict[str, int]:
    deadline = time.monotonic() + wait_seconds
    while True:
        rows = await conn.fetch(
            "SELECT outcome, count(*) AS n FROM processors.processed WHERE delivery_id = ANY($1::bigint[]) GROUP BY outcome",
            ids,
        )
        outcomes = {r["outcome"]: r["n"] for r in rows}
        if sum(outcomes.values()) >= len(set(ids)) or time.monotonic() > deadline:
            return outcomes
        await asyncio.sleep(0.25)


async def _outcomes(
    client: httpx.AsyncClient, auth: dict[str, str], delivery_ids: list[int]
) -> dict[str, int]:
    """Processing outcomes of the deliveries, counted from ``GET /audit/deliveries/{id}``."""
    counts: dict[str, int] = {}
    for delivery_id in sorted(set(delivery_ids)):
        resp = await client.get(f"/audit/deliveries/{delivery_id}", headers=auth)
        resp.raise_for_status()
        processing = resp.json().get("processing") or {}
        outcome = processing.get("outcome") or "unprocessed"
        counts[outcome] = counts.get(outcome, 0) + 1
    return counts


async def run_demo(
    settings: Settings, url: str, *, standin_port: int, say: Say, wait_seconds: float = 60.0
) -> DemoReport:
    stripe_secret, cb_auth = _secrets(settings)
    tag = uuid.uuid4().hex[:6]
    story = build_story(tag, int(time.time()))
    report = DemoReport()
    standin_url = f"http://127.0.0.1:{standin_port}"
    reconcile = settings.stripe_api_key is not None and settings.stripe_api_base.rstrip("/") in {
        standin_url,
        f"http://localhost:{standin_port}",
    }
    conn = await connect(settings.database_url)
    token_name = f"demo-{tag}"
    try:
        token = await create_token(conn, name=token_name, role="admin")
        auth = {"Authorization": f"Bearer {token}"}
        async with httpx.AsyncClient(base_url=url.rstrip("/"), timeout=30) as client:
            try:
                ready = await client.get("/health/ready")
            except httpx.HTTPError as exc:
                raise DemoError(
                    f"no Ledgerhook at {url} ({type(exc).__name__}): start it with `make run`"
                ) from None
            if ready.status_code != 200:
                raise DemoError(
                    f"{url}/health/ready answered {ready.status_code}: {ready.text[:200]}"
                )
            say(f"Demo run {tag}: sending {len(story.deliveries)} signed webhooks to {url}")
            ids = await _send(
                client, conn, story, (stripe_secret, cb_auth), say=say, wait_seconds=wait_seconds
            )
            report.stored = len(set(ids))
            report.duplicates = (
                len(ids)
                - len(set(ids))
                + await conn.fetchval(
                    "SELECT count(*) FROM audit.deliveries WHERE id = ANY($1::bigint[]) AND duplicate_of IS NOT NULL",
                    ids,
                )
            )
            say(
                f"  (not sent: {story.withheld.event_type} {story.withheld.event_id} — {story.withheld.note})"
            )
            await _wait_processed(conn, ids, wait_seconds)
            backfilled: list[int] = []

            if reconcile:
                with EventsApi(
                    story.stripe_api_events,
                    frozenset({story.withheld.event_id}),
                    "127.0.0.1",
                    standin_port,
                ):
                    say(f"Reconciling against the stand-in Stripe Events API at {standin_url} ...")
                    resp = await client.post(
                        "/reconcile",
                        headers=auth,
                        json={"provider": "stripe", "since_seconds": 3600},
                    )
                if resp.status_code != 200:
                    raise DemoError(f"POST /reconcile: HTTP {resp.status_code} {resp.text[:300]}")
                summary = resp.json()
                report.reconciled = True
                report.backfilled = len(summary.get("backfilled", []))
                say(
                    f"  listed {summary['listed']} events, {summary['missing']} missing, "
                    f"backfilled {report.backfilled}"
                )
                backfilled = [int(i) for i in summary.get("backfilled", [])]
                if backfilled:
                    await _wait_processed(conn, backfilled, wait_seconds)
            else:
                say(
                    "Reconciliation skipped: run the instance with LEDGERHOOK_STRIPE_API_KEY=sk_test_demo "
                    f"and LEDGERHOOK_STRIPE_API_BASE={standin_url} to see a missed event recovered."
                )

            # Raise alerts now rather than at the next scheduled sweep.
            from alerts.sweep import sweep
            from ledgerhook.db import create_pool

            pool = await create_pool(settings, min_size=1, max_size=2)
            try:
                await sweep(pool, settings)
            finally:
                await pool.close()
            alerts = await client.get(
                "/alerts", headers=auth, params={"status": "open", "limit": 200}
            )
            alerts.raise_for_status()
            mine = (story.customer_id, story.subscription_id, story.chargebee_subscription_id, tag)
            report.alerts = [
                a
                for a in alerts.json()["items"]
                if any(m in (a["subject"] + a["summary"] + str(a["evidence"])) for m in mine)
                or set(a["delivery_ids"]) & set(ids)
            ]
            # Outcomes of every delivery of the story, the backfilled one included, as the API
            # shows them (counting only the webhooks sent printed one "applied" fewer).
            report.processed = await _outcomes(client, auth, [*ids, *backfilled])
            verify = await client.get("/audit/verify", headers=auth)
            verify.raise_for_status()
            chain = verify.json()
            report.chain_ok = bool(chain["ok"])
            report.proof = await _prove(client, auth, ids[0])
            report.migration = await run_migration_story(
                client,
                conn,
                settings,
                auth=auth,
                secrets=(stripe_secret, cb_auth),
                tag=tag,
                say=say,
            )
        row = await conn.fetchrow(
            "SELECT status, mrr, currency, data->'plan'->>'id' AS plan FROM processors.subscriptions WHERE provider = 'stripe' AND id = $1",
            story.subscription_id,
        )
        report.subscription = dict(row) if row else {}
        cb = await conn.fetchrow(
            "SELECT status, mrr, currency FROM processors.subscriptions WHERE provider = 'chargebee' AND id = $1",
            story.chargebee_subscription_id,
        )
        email = await conn.fetchval(
            "SELECT email FROM processors.customers WHERE provider = 'stripe' AND id = $1",
            story.customer_id,
        )
    finally:
        try:
            # An admin token must not outlive the demo that needed it.
            await revoke_token(conn, token_name)
        except Exception:  # never created (the database refused): nothing to revoke
            log.debug("demo token %s was not revoked", token_name, exc_info=True)
        await conn.close()

    say("")
    say("What Ledgerhook did")
    say(
        f"  deliveries stored      {report.stored} (+{report.backfilled} backfilled by reconciliation), "
        f"{report.duplicates} recognised as duplicate"
    )
    say(
        "  processing outcomes    "
        + ", ".join(f"{k} {v}" for k, v in sorted(report.processed.items()))
    )
    sub = report.subscription
    say(
        f"  stripe subscription    {story.subscription_id}: {sub.get('status', '?')}, "
        f"MRR {_money(sub.get('mrr'), sub.get('currency'))}"
    )
    if cb:
        say(
            f"  chargebee subscription {story.chargebee_subscription_id}: {cb['status']}, "
            f"MRR {_money(cb['mrr'], cb['currency'])}"
        )
    say(f"  customer email         {email or '?'}")
    say(f"  alerts raised          {len(report.alerts)}")
    for a in report.alerts:
        say(f"    [{a['severity']}] {a['rule']}: {a['summary']}")
    say(
        f"  audit log              {'verified' if report.chain_ok else 'BROKEN'}: {chain['summary']}"
    )
    say(f"  proof of inclusion     {report.proof or 'NOT CHECKED'}")
    return report


async def _prove(client: httpx.AsyncClient, auth: dict[str, str], delivery_id: int) -> str:
    """Sign a checkpoint now (admin), fetch a delivery's proof bundle and check it the way an
    outside auditor would: with nothing but the log's public key."""
    signed = await client.post("/audit/checkpoints", headers=auth)
    signed.raise_for_status()
    public_key = (await client.get("/audit/public-key")).text.strip()
    bundle = await client.get(f"/audit/deliveries/{delivery_id}/proof", headers=auth)
    bundle.raise_for_status()
    try:
        proved = verify_bundle(bundle.json(), parse_verifier_key(public_key))
    except AuditError as exc:
        return f"REFUSED: {exc}"
    return (
        f"delivery {proved.delivery_id} is leaf {proved.leaf_index} of the signed tree of "
        f"{proved.tree_size} leaves, checked with the public key {public_key}"
    )
