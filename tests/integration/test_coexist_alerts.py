"""Each coexistence alert raised through the alert lifecycle from real payloads, and resolved
when its condition clears; the rollout gate fails while one is open and passes after."""

from __future__ import annotations

from datetime import UTC, datetime

import asyncpg
import msgspec

from alerts.coexist.gate import gate
from alerts.coexist.sweep import coexist_sweep
from ledgerhook.settings import CoexistSettings, Settings
from processors.coexist.cutover import change_authority
from processors.coexist.imports import parse_links, parse_prices
from processors.coexist.links import default_accounts, import_links
from processors.coexist.price_store import import_prices
from tests.integration.coexist_helpers import (
    CUT,
    DAY,
    apply_events,
    cb_customer,
    cb_payment,
    cb_subscription,
    links_csv,
    pair_rows,
    stripe_charge_refunded,
    stripe_customer,
    stripe_invoice_paid,
    stripe_subscription,
    tag,
)


def at(t: int) -> datetime:
    return datetime.fromtimestamp(t, UTC)


async def _open(pool: asyncpg.Pool) -> dict[tuple[str, str], dict[str, object]]:
    async with pool.acquire() as conn:
        rows = await conn.fetch(
            "SELECT id, rule, subject, severity, provider, summary, evidence::text AS evidence, "
            "delivery_ids FROM alerts.alerts WHERE status <> 'resolved' AND rule LIKE 'coexist_%'"
        )
    return {(r["rule"], r["subject"]): dict(r) for r in rows}


async def _history(pool: asyncpg.Pool, alert_id: object) -> list[tuple[str, str]]:
    async with pool.acquire() as conn:
        rows = await conn.fetch(
            "SELECT actor, to_status FROM alerts.alert_events WHERE alert_id = $1 ORDER BY id",
            alert_id,
        )
    return [(r["actor"], r["to_status"]) for r in rows]


async def test_coexistence_alerts_raise_and_resolve(
    fresh_settings: Settings, fresh_pool: asyncpg.Pool
) -> None:
    pool, t = fresh_pool, tag()
    settings = msgspec.structs.replace(
        fresh_settings,
        coexist=CoexistSettings(
            grace_seconds=DAY, orphan_grace_seconds=0, customer_metadata_key="chargebee_customer_id"
        ),
    )
    cohort = f"wave-{t}"
    v = (CUT - 10 * DAY) * 1000
    await apply_events(
        pool,
        [
            ("chargebee", cb_subscription(customer_id=f"x{t}", sub_id=f"xs{t}", version=v)),
            ("chargebee", cb_customer(customer_id=f"y{t}", version=v)),
            # a second Chargebee subscription of x that nobody migrates
            (
                "chargebee",
                cb_subscription(
                    customer_id=f"x{t}", sub_id=f"xs2{t}", version=v + 1, price="addon"
                ),
            ),
            ("stripe", stripe_customer(cus_id=f"cus_x{t}", created=CUT - 9 * DAY)),
            (
                "stripe",
                stripe_subscription(
                    sub_id=f"sub_x{t}",
                    cus_id=f"cus_x{t}",
                    created=CUT - 9 * DAY,
                    status="trialing",
                    trial_end=CUT,
                ),
            ),
            # Chargebee bills the period up to the cut-over ...
            (
                "chargebee",
                cb_payment(
                    customer_id=f"x{t}",
                    sub_id=f"xs{t}",
                    invoice_id=f"inv{t}",
                    txn_id=f"txn{t}",
                    version=v + 10,
                ),
            ),
            # ... and Stripe charges for a period overlapping it, before the cut-over
            (
                "stripe",
                stripe_invoice_paid(
                    inv_id=f"in_x{t}",
                    cus_id=f"cus_x{t}",
                    sub_id=f"sub_x{t}",
                    created=CUT - 8 * DAY,
                    period_start=CUT - 8 * DAY,
                    period_end=CUT + 22 * DAY,
                    charge=f"ch_x{t}",
                ),
            ),
        ],
    )
    rows = [
        *pair_rows(cohort, f"x{t}", f"cus_x{t}", f"xs{t}", f"sub_x{t}"),
        *pair_rows(cohort, f"y{t}", f"cus_y{t}", None, None),  # Stripe's customer never came
    ]
    async with pool.acquire() as conn:
        await import_links(
            conn,
            parse_links(links_csv(rows), "csv", default_accounts=default_accounts(settings)),
            actor="t",
            origin="cli",
            source="f",
            fmt="csv",
        )
        await import_prices(
            conn,
            parse_prices(
                b"source_provider,source_price,target_provider,target_price\nchargebee,team-EUR-monthly,stripe,price_team\n",
                "csv",
            ),
            actor="t",
            origin="cli",
            source="p",
            fmt="csv",
        )
        ba = await conn.fetchval(
            "SELECT billing_account FROM coexist.links WHERE source_id = $1", f"x{t}"
        )
        ba_y = await conn.fetchval(
            "SELECT billing_account FROM coexist.links WHERE source_id = $1", f"y{t}"
        )
    # A Stripe customer the migration tagged, naming a Chargebee customer linked elsewhere.
    await apply_events(
        pool,
        [
            (
                "stripe",
                stripe_customer(
                    cus_id=f"cus_z{t}",
                    created=CUT - 9 * DAY,
                    metadata={"chargebee_customer_id": f"x{t}"},
                ),
            )
        ],
    )

    await coexist_sweep(pool, settings, at(CUT - 7 * DAY))
    alerts = await _open(pool)
    double = alerts[("coexist_double_billing", ba)]
    assert double["severity"] == "critical"
    assert f"inv{t}" in double["summary"] and f"in_x{t}" in double["summary"]  # type: ignore[operator]
    assert msgspec.json.decode(double["evidence"])["cohort"] == cohort  # type: ignore[arg-type]
    assert ("coexist_wrong_side", f"{ba}:stripe") in alerts  # Stripe charged before the cut-over
    assert ("coexist_orphan", f"link:{await _link_id(pool, f'y{t}')}:missing_target") in alerts
    assert ("coexist_orphan", f"customer:stripe/acct_test/cus_z{t}") in alerts
    assert not any(rule == "coexist_both_active" for rule, _ in alerts)

    gated = await gate(pool, settings, cohort, actor="t", now=at(CUT - 7 * DAY))
    assert not gated.ok
    assert any("coexist_double_billing" in p for p in gated.problems)

    # The Stripe charge is refunded in full, the missing customer arrives, the tagged one is
    # deleted: those alerts resolve at the next sweep.
    await apply_events(
        pool,
        [
            (
                "stripe",
                stripe_charge_refunded(
                    charge_id=f"ch_x{t}",
                    cus_id=f"cus_x{t}",
                    inv_id=f"in_x{t}",
                    created=CUT - 7 * DAY,
                ),
            ),
            ("stripe", stripe_customer(cus_id=f"cus_y{t}", created=CUT - 7 * DAY)),
            ("stripe", _deleted(stripe_customer(cus_id=f"cus_z{t}", created=CUT - 7 * DAY + 1))),
        ],
    )
    await coexist_sweep(pool, settings, at(CUT - 6 * DAY))
    assert await _open(pool) == {}
    assert await _history(pool, double["id"]) == [("system", "open"), ("system", "resolved")]

    # The cut-over at the period boundary; Stripe bills from then on. Chargebee is not
    # cancelled, and someone changes its quantity after the cut-over.
    async with pool.acquire() as conn:
        await change_authority(
            conn, "cutover", cohort=cohort, effective_at=CUT, now=CUT + 60, actor="t", origin="cli"
        )
    await apply_events(
        pool,
        [
            (
                "stripe",
                stripe_subscription(
                    sub_id=f"sub_x{t}",
                    cus_id=f"cus_x{t}",
                    created=CUT + 60,
                    period_start=CUT,
                    period_end=CUT + 30 * DAY,
                    event_type="customer.subscription.updated",
                ),
            ),
            (
                "chargebee",
                cb_subscription(
                    customer_id=f"x{t}",
                    sub_id=f"xs{t}",
                    version=(CUT + DAY) * 1000,
                    qty=2,
                    term_start=CUT,
                    term_end=CUT + 30 * DAY - 1,
                    event_type="subscription_changed",
                ),
            ),
        ],
    )
    await coexist_sweep(pool, settings, at(CUT + 12 * 3600))  # within the grace period
    alerts = await _open(pool)
    assert set(alerts) == {
        ("coexist_wrong_side", f"{ba}:chargebee"),
        # the unmigrated subscription, left behind on Chargebee by the cut-over
        ("coexist_orphan", f"subscription:chargebee/acme-test/xs2{t}"),
    }
    assert (
        "quantity_changed chargebee/acme-test/xs"
        in alerts[("coexist_wrong_side", f"{ba}:chargebee")]["summary"]
    )  # type: ignore[operator]
    await coexist_sweep(pool, settings, at(CUT + 2 * DAY))  # past it
    alerts = await _open(pool)
    both = alerts[("coexist_both_active", f"{ba}:chargebee/acme-test/xs{t}")]
    assert both["provider"] == "chargebee"

    # Chargebee's subscriptions are cancelled: the three alerts resolve; the gate passes.
    await apply_events(
        pool,
        [
            (
                "chargebee",
                cb_subscription(
                    customer_id=f"x{t}",
                    sub_id=sub,
                    version=(CUT + 2 * DAY) * 1000,
                    price=price,
                    status="cancelled",
                    term_start=CUT - 30 * DAY,
                    term_end=CUT - 1,
                    event_type="subscription_cancelled",
                ),
            )
            for sub, price in ((f"xs{t}", "team-EUR-monthly"), (f"xs2{t}", "addon"))
        ],
    )
    report = await coexist_sweep(pool, settings, at(CUT + 2 * DAY + 60))
    assert len(report.resolved) == 3
    assert await _open(pool) == {}
    gated = await gate(pool, settings, cohort, actor="t", now=at(CUT + 2 * DAY + 120))
    assert gated.ok, gated.problems
    assert ba_y


def _deleted(ev: dict[str, object]) -> dict[str, object]:
    ev["type"] = "customer.deleted"
    return ev


async def _link_id(pool: asyncpg.Pool, source_id: str) -> int:
    async with pool.acquire() as conn:
        value: int = await conn.fetchval(
            "SELECT id FROM coexist.links WHERE source_id = $1", source_id
        )
    return value
