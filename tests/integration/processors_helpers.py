"""Building real-payload deliveries for processors tests, and running burst workers."""

from __future__ import annotations

import copy
import uuid
import warnings
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import asyncpg
import msgspec

from audit.append import Appended, NewDelivery, append_deliveries
from audit.sequencer import integrate_once, load_state
from ledgerhook.db import create_pool
from ledgerhook.settings import Settings
from ledgerhook.wakeup import arq_redis
from ledgerhook.worker import create_worker
from processors.worker import enqueue
from tests.conftest import FIXTURES, RUN_ID
from tests.integration.audit_helpers import integrate

CHARGEBEE_DERIVED = Path(__file__).resolve().parents[1] / "fixtures" / "chargebee"


def load_stripe(name: str) -> dict[str, Any]:
    data: dict[str, Any] = msgspec.json.decode((FIXTURES / "stripe" / name).read_bytes())
    return data


def load_chargebee(event_type: str) -> dict[str, Any]:
    data: dict[str, Any] = msgspec.json.decode(
        (CHARGEBEE_DERIVED / f"{event_type}.json").read_bytes()
    )
    return data


def uid(prefix: str = "") -> str:
    return prefix + uuid.uuid4().hex[:12]


def stripe_event(
    name: str,
    *,
    event_id: str | None = None,
    created: int | None = None,
    object_id: str | None = None,
    change: Callable[[dict[str, Any]], None] | None = None,
) -> dict[str, Any]:
    """A fixture event with a fresh (or given) id, and optionally its time / object id rewritten."""
    ev = copy.deepcopy(load_stripe(name))
    ev["id"] = event_id or uid("evt_")
    if created is not None:
        ev["created"] = created
    if object_id is not None:
        ev["data"]["object"]["id"] = object_id
    if change is not None:
        change(ev["data"]["object"])
    return ev


def new_delivery(
    provider: str,
    event: dict[str, Any],
    *,
    account: str = "acct_test",
    age_seconds: float = 0.0,
) -> NewDelivery:
    body = msgspec.json.encode(event)
    if provider == "stripe":
        event_type, created = event["type"], event["created"]
        object_id = event["data"]["object"].get("id")
    else:
        event_type, created = event["event_type"], event["occurred_at"]
        object_id = None
    return NewDelivery(
        received_at=datetime.now(UTC) - timedelta(seconds=age_seconds),
        provider=provider,
        endpoint="default",
        account=account,
        event_id=event["id"],
        event_type=event_type,
        event_created=created,
        object_id=object_id,
        source_address="127.0.0.1",
        content_type="application/json",
        headers='[["content-type","application/json"]]',
        verification="test",
        body=body,
    )


async def append(pool: asyncpg.Pool, deliveries: list[NewDelivery]) -> list[Appended]:
    """Append and integrate (what ingest and a running sequencer do): deliveries are applied in
    the log's leaf order, so only integrated ones reach the sweeper and the batcher's drain."""
    async with pool.acquire() as conn:
        rows = await append_deliveries(conn, deliveries)
        await integrate(conn)
        return rows


async def integrate_and_wake(settings: Settings) -> list[int]:
    """What a running sequencer does: integrate every committed delivery, then enqueue the
    wake-up job of each integrated batch (its first delivery). Returns the integrated ids."""
    pool = await create_pool(settings, min_size=1, max_size=1)
    integrated: list[int] = []
    firsts: list[int] = []
    try:
        async with pool.acquire() as conn:
            state = await load_state(conn)
            while True:
                state, batch = await integrate_once(conn, state, 5000)
                if batch is None:
                    break
                integrated += batch.delivery_ids
                firsts.append(batch.delivery_ids[0])
    finally:
        await pool.close()
    if firsts:
        redis = arq_redis(settings, timeout=5)
        try:
            await enqueue(redis, settings, firsts)
        finally:
            await redis.aclose(close_connection_pool=True)
    return integrated


async def run_burst(settings: Settings, **overrides: Any) -> None:
    """Integrate and wake (as the sequencer would), then run a real arq worker in burst mode on
    the settings' queue until it is empty.

    Cron jobs are left out (they belong to other packages' tests) unless passed in ``overrides``.
    """
    await integrate_and_wake(settings)
    options: dict[str, Any] = {"cron_jobs": [], **overrides}
    worker = create_worker(settings, burst=True, handle_signals=False, poll_delay=0.05, **options)
    try:
        await worker.main()
    finally:
        # arq 0.28 closes its Redis pool with redis-py's deprecated close(): not our warning.
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", DeprecationWarning)
            await worker.close()


async def outcome(pool: asyncpg.Pool, delivery_id: int) -> str | None:
    async with pool.acquire() as conn:
        value: str | None = await conn.fetchval(
            "SELECT outcome FROM processors.processed WHERE delivery_id = $1", delivery_id
        )
        return value


def stripe_sequence(suffix: str, t0: int = 1_760_000_000) -> list[dict[str, Any]]:
    """A realistic life of several Stripe objects, from the real fixtures, ids rewritten.

    Includes same-second events (ordered by the lifecycle tie rule) and a deletion.
    """
    sub_id, cus_id, inv_id = f"sub_{suffix}", f"cus_{suffix}", f"in_{suffix}"
    ch_id, re_id, cn_id = f"ch_{suffix}", f"re_{suffix}", f"cn_{suffix}"
    out: list[dict[str, Any]] = []

    def add(name: str, type_: str, created: int, object_id: str, **fields: Any) -> None:
        def change(obj: dict[str, Any]) -> None:
            for key, value in fields.items():
                if callable(value):
                    value(obj)
                else:
                    obj[key] = value

        ev = stripe_event(name, created=created, object_id=object_id, change=change)
        ev["type"] = type_
        out.append(ev)

    def qty(n: int, amount: int, price: str = "price_basic") -> Callable[[dict[str, Any]], None]:
        def set_items(obj: dict[str, Any]) -> None:
            it = obj["items"]["data"][0]
            it["quantity"] = n
            it["price"]["id"] = price
            it["price"]["unit_amount"] = amount
            obj["items"]["data"] = [it]
            obj["customer"] = cus_id

        return set_items

    add("customer_updated.json", "customer.created", t0, cus_id, email=None)
    add("customer_updated.json", "customer.updated", t0 + 5, cus_id, email=f"{suffix}@example.com")
    add(
        "subscription_created.json", "customer.subscription.created", t0, sub_id, items=qty(1, 1000)
    )
    add(
        "subscription_updated.json",
        "customer.subscription.updated",
        t0 + 10,
        sub_id,
        items=qty(2, 1000),
    )
    add(
        "subscription_updated.json",
        "customer.subscription.updated",
        t0 + 20,
        sub_id,
        items=qty(2, 2500, "price_pro"),
    )
    add(
        "subscription_updated.json",
        "customer.subscription.trial_will_end",
        t0 + 20,
        sub_id,
        items=qty(2, 2500, "price_pro"),
    )
    add(
        "subscription_updated.json",
        "customer.subscription.updated",
        t0 + 25,
        sub_id,
        items=qty(2, 2500, "price_pro"),
        cancel_at_period_end=True,
    )
    add(
        "subscription_deleted.json",
        "customer.subscription.deleted",
        t0 + 30,
        sub_id,
        items=qty(2, 2500, "price_pro"),
    )
    add(
        "invoice_finalized.json",
        "invoice.created",
        t0 + 10,
        inv_id,
        status="draft",
        total=2000,
        amount_due=2000,
    )
    add(
        "invoice_finalized.json",
        "invoice.finalized",
        t0 + 10,
        inv_id,
        status="open",
        total=2000,
        amount_due=2000,
    )
    add(
        "invoice_paid.json",
        "invoice.paid",
        t0 + 10,
        inv_id,
        total=2000,
        amount_paid=2000,
        amount_due=0,
    )
    add("charge_succeeded.json", "charge.succeeded", t0 + 11, ch_id, amount=2000)
    add("charge_refunded.json", "charge.refunded", t0 + 40, ch_id, amount=2000, amount_refunded=500)
    add(
        "refund_created.json",
        "refund.created",
        t0 + 40,
        re_id,
        amount=500,
        charge=ch_id,
        status="pending",
    )
    add(
        "refund_updated.json",
        "refund.updated",
        t0 + 41,
        re_id,
        amount=500,
        charge=ch_id,
        status="succeeded",
    )
    add("credit_note_created.json", "credit_note.created", t0 + 42, cn_id, invoice=inv_id)
    add(
        "credit_note_voided.json",
        "credit_note.voided",
        t0 + 43,
        cn_id,
        invoice=inv_id,
        status="void",
    )
    add("customer_deleted.json", "customer.deleted", t0 + 50, cus_id)
    add("plan_created.json", "plan.created", t0 + 1, f"plan_{suffix}")
    return out


def chargebee_sequence(suffix: str) -> list[dict[str, Any]]:
    """Every derived Chargebee event, with event ids made unique."""
    out = []
    for path in sorted(CHARGEBEE_DERIVED.glob("*.json")):
        ev = load_chargebee(path.stem)
        ev["id"] = f"{ev['id']}_{suffix}"
        out.append(ev)
    return out


def own_queue(settings: Settings, **processors: Any) -> Settings:
    """The same database with an arq queue of the test's own (never consume others' jobs)."""
    from ledgerhook.db import database_name
    from ledgerhook.settings import ProcessorSettings
    from tests.conftest import make_settings

    return make_settings(
        database_name(settings.database_url),
        processors=ProcessorSettings(queue_name=uid(f"lh-test-{RUN_ID}-proc-"), **processors),
    )
