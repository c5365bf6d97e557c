"""A cohort migrated Chargebee -> Stripe, verified side by side at every step: before the
cut-over, after a fix, after the cut-over, after a rollback; each run kept and diffed with the
previous one; the same report computed from the state rebuilt from the audit log; cut-over and
rollback histories; bad authority changes refused with a 4xx and nothing written."""

from __future__ import annotations

import asyncpg
import pytest
from litestar.testing import AsyncTestClient

from audit.tokens import create_token
from ledgerhook.app import create_app
from ledgerhook.settings import Settings
from processors.coexist.cutover import change_authority
from processors.coexist.errors import AuthorityConflict, InvalidChange, MigrationNotFound
from processors.coexist.imports import parse_links, parse_prices
from processors.coexist.links import default_accounts, import_links
from processors.coexist.price_store import import_prices
from processors.coexist.queries import account_detail, cohort_detail, iter_results
from processors.coexist.verify import RunReport, run_verification
from processors.replay import rebuild
from tests.integration.coexist_helpers import (
    CUT,
    DAY,
    apply_events,
    cb_subscription,
    links_csv,
    pair_rows,
    stripe_customer,
    stripe_subscription,
    tag,
)

PRICES = b"source_provider,source_price,target_provider,target_price\nchargebee,team-EUR-monthly,stripe,price_team\n"


async def _results(pool: asyncpg.Pool, run_id: int) -> dict[str, tuple[str, list[tuple[str, str]]]]:
    async with pool.acquire() as conn:
        return {
            r.target: (r.verdict, [(c.kind, c.verdict) for c in r.checks])
            async for r in iter_results(conn, run_id)
        }


async def _verify(pool: asyncpg.Pool, cohort: str, now: int, **kw: object) -> RunReport:
    async with pool.acquire() as conn:
        return await run_verification(conn, cohort, now=now, actor="test", page_size=2, **kw)  # type: ignore[arg-type]


async def test_cohort_migration_verified_side_by_side(
    fresh_settings: Settings, fresh_pool: asyncpg.Pool
) -> None:
    pool, t = fresh_pool, tag()
    cohort = f"wave-{t}"
    v = CUT * 1000 - 10 * DAY * 1000
    # a: migrated with a matching subscription (Stripe trialing until the cut-over)
    # b: migrated with the wrong price; c: the Stripe customer never arrived
    await apply_events(
        pool,
        [
            ("chargebee", cb_subscription(customer_id=f"a{t}", sub_id=f"as{t}", version=v)),
            ("chargebee", cb_subscription(customer_id=f"b{t}", sub_id=f"bs{t}", version=v)),
            ("chargebee", cb_subscription(customer_id=f"c{t}", sub_id=f"cs{t}", version=v)),
            ("stripe", stripe_customer(cus_id=f"cus_a{t}", created=CUT - 9 * DAY)),
            ("stripe", stripe_customer(cus_id=f"cus_b{t}", created=CUT - 9 * DAY)),
            *(
                (
                    "stripe",
                    stripe_subscription(
                        sub_id=f"sub_{x}{t}",
                        cus_id=f"cus_{x}{t}",
                        created=CUT - 9 * DAY,
                        status="trialing",
                        trial_end=CUT,
                        period_start=CUT - 9 * DAY,
                        amount=amount,
                    ),
                )
                for x, amount in (("a", 9_900), ("b", 8_900))
            ),
        ],
    )
    rows = [
        *pair_rows(cohort, f"a{t}", f"cus_a{t}", f"as{t}", f"sub_a{t}"),
        *pair_rows(cohort, f"b{t}", f"cus_b{t}", f"bs{t}", f"sub_b{t}"),
        *pair_rows(cohort, f"c{t}", f"cus_c{t}", None, None),
    ]
    async with pool.acquire() as conn:
        await import_links(
            conn,
            parse_links(links_csv(rows), "csv", default_accounts=default_accounts(fresh_settings)),
            actor="t",
            origin="cli",
            source="links.csv",
            fmt="csv",
        )
        await import_prices(
            conn, parse_prices(PRICES, "csv"), actor="t", origin="cli", source="p.csv", fmt="csv"
        )
        plan = await change_authority(
            conn,
            "plan",
            cohort=cohort,
            effective_at=CUT,
            now=CUT - 8 * DAY,
            actor="alice",
            origin="cli",
        )
    assert plan.action == "plan"

    # 1. before the cut-over: a matches (explained), b's price, c's missing customer
    first = await _verify(pool, cohort, CUT - 7 * DAY)
    assert first.authority.phase == "planned" and first.authority.planned_at == CUT
    assert (first.summary.pairs, first.summary.mismatched) == (5, 2)
    assert first.changes.previous_run_id is None and first.changes.new == 3
    got = await _results(pool, first.run_id)
    assert got[f"stripe/acct_test/sub_a{t}"] == (
        "explained",
        [("status", "explained"), ("trial_end", "explained")],
    )
    assert got[f"stripe/acct_test/sub_b{t}"][0] == "mismatch"
    assert ("amount", "mismatch") in got[f"stripe/acct_test/sub_b{t}"][1]
    assert ("mrr", "mismatch") in got[f"stripe/acct_test/sub_b{t}"][1]
    assert got[f"stripe/acct_test/cus_c{t}"] == ("mismatch", [("missing_target", "mismatch")])
    eur = first.summary.totals[0]
    assert (eur.currency, eur.source_count, eur.target_count) == ("EUR", 2, 2)
    assert (eur.source_priced_mrr, eur.target_priced_mrr) == (19_800, 18_800)
    assert (eur.source_mrr, eur.target_mrr) == (19_800, 0)  # Stripe is trialing: bills nothing yet

    # 2. b's price fixed on Stripe: the next run says what changed
    await apply_events(
        pool,
        [
            (
                "stripe",
                stripe_subscription(
                    sub_id=f"sub_b{t}",
                    cus_id=f"cus_b{t}",
                    created=CUT - 6 * DAY,
                    status="trialing",
                    trial_end=CUT,
                    period_start=CUT - 9 * DAY,
                    event_type="customer.subscription.updated",
                ),
            )
        ],
    )
    second = await _verify(pool, cohort, CUT - 6 * DAY)
    assert second.changes.previous_run_id == first.run_id
    assert (
        second.changes.new,
        second.changes.resolved,
        second.changes.changed,
        second.changes.unchanged,
    ) == (0, 0, 1, 4)
    assert second.changes.samples["changed"] == [f"subscription:chargebee/acme-test/bs{t}"]
    assert second.summary.mismatched == 1  # only c

    # 3. the cut-over happens; Chargebee's subscriptions are cancelled, Stripe's bill
    await apply_events(
        pool,
        [
            *(
                (
                    "chargebee",
                    cb_subscription(
                        customer_id=f"{x}{t}",
                        sub_id=f"{x}s{t}",
                        version=CUT * 1000 + 5,
                        status="cancelled",
                        event_type="subscription_cancelled",
                    ),
                )
                for x in "ab"
            ),
            *(
                (
                    "stripe",
                    stripe_subscription(
                        sub_id=f"sub_{x}{t}",
                        cus_id=f"cus_{x}{t}",
                        created=CUT + 60,
                        status="active",
                        trial_end=CUT,
                        period_start=CUT,
                        period_end=CUT + 30 * DAY,
                        event_type="customer.subscription.updated",
                    ),
                )
                for x in "ab"
            ),
        ],
    )
    after = await _verify(pool, cohort, CUT + 3 * DAY)
    assert (after.authority.phase, after.authority.side, after.authority.since) == (
        "cut_over",
        "target",
        CUT,
    )
    got = await _results(pool, after.run_id)
    assert got[f"stripe/acct_test/sub_a{t}"] == (
        "explained",
        [("status", "explained"), ("period_end", "explained"), ("trial_end", "explained")],
    )
    eur = after.summary.totals[0]
    assert (eur.source_mrr, eur.target_mrr, eur.source_priced_mrr, eur.target_priced_mrr) == (
        0,
        19_800,
        19_800,
        19_800,
    )

    # 4. rolled back: the report shows the source authoritative again, and the mismatches that
    # brings (Stripe still billing, Chargebee cancelled)
    async with pool.acquire() as conn:
        await change_authority(
            conn,
            "rollback",
            cohort=cohort,
            now=CUT + 4 * DAY,
            actor="bob",
            origin="api",
            note="Stripe tax bug",
        )
    back = await _verify(pool, cohort, CUT + 4 * DAY + 60)
    assert (back.authority.phase, back.authority.side) == ("rolled_back", "source")
    assert back.summary.mismatched == 3
    assert back.changes.changed == 2

    # the histories: who did what, in order
    async with pool.acquire() as conn:
        detail = await cohort_detail(conn, cohort, CUT + 5 * DAY)
        account = await account_detail(
            conn,
            (
                await conn.fetchval(
                    "SELECT billing_account FROM coexist.links WHERE source_id = $1", f"a{t}"
                )
            ),
            CUT + 5 * DAY,
        )
    assert [(e.action, e.actor, e.effective_at) for e in detail.authority_history] == [
        ("plan", "alice", CUT),
        ("rollback", "bob", CUT + 4 * DAY),
    ]
    assert [r.id for r in detail.runs] == [back.run_id, after.run_id, second.run_id, first.run_id]
    assert account.authority.phase == "rolled_back"
    assert [s.target.id for s in account.subscriptions] == [f"sub_a{t}"]

    # 5. the same report from the state rebuilt from the audit log
    async with pool.acquire() as conn:
        await rebuild(conn)
    replayed = await _verify(pool, cohort, CUT + 4 * DAY + 60, schema="processors_replay")
    assert replayed.summary == back.summary
    assert await _results(pool, replayed.run_id) == await _results(pool, back.run_id)


async def test_bad_authority_changes_are_refused(settings: Settings, pool: asyncpg.Pool) -> None:
    t = tag()
    cohort = f"solo-{t}"
    async with pool.acquire() as conn:
        await import_links(
            conn,
            parse_links(
                links_csv(pair_rows(cohort, f"x{t}", f"cus_x{t}", None, None)),
                "csv",
                default_accounts=default_accounts(settings),
            ),
            actor="t",
            origin="cli",
            source="f",
            fmt="csv",
        )
        with pytest.raises(MigrationNotFound):
            await change_authority(
                conn,
                "cutover",
                billing_account=f"nobody{t}",
                effective_at=CUT - DAY,
                now=CUT,
                actor="a",
                origin="cli",
            )
        with pytest.raises(InvalidChange):
            await change_authority(
                conn,
                "plan",
                cohort=cohort,
                effective_at=CUT - DAY,
                now=CUT,
                actor="a",
                origin="cli",
            )
        with pytest.raises(AuthorityConflict):
            await change_authority(
                conn, "rollback", cohort=cohort, now=CUT, actor="a", origin="cli"
            )
        n = await conn.fetchval(
            "SELECT count(*) FROM coexist.authority_events WHERE cohort = $1", cohort
        )
        assert n == 0
        token = await create_token(conn, name=f"coexist-admin-{t}", role="admin")
        ba = await conn.fetchval(
            "SELECT billing_account FROM coexist.links WHERE cohort = $1", cohort
        )
    admin = {"Authorization": f"Bearer {token}"}
    async with AsyncTestClient(create_app(settings)) as client:
        cases = [
            (
                f"/migration/accounts/nobody{t}/cutover",
                {"at": "2020-01-01T00:00:00Z"},
                404,
                "has no link",
            ),
            (
                f"/migration/cohorts/{cohort}/plan",
                {"at": "2020-01-01T00:00:00Z"},
                400,
                "must be in the future",
            ),
            (f"/migration/cohorts/{cohort}/plan", {"at": "2999-01-01T00:00:00"}, 400, "time zone"),
            (f"/migration/cohorts/{cohort}/plan", {"when": 1}, 400, "body"),
            (
                f"/migration/cohorts/{cohort}/cutover",
                {"at": 4_102_444_800},
                400,
                "cannot take effect in the future",
            ),
            (f"/migration/cohorts/nothing{t}/cutover", {}, 404, "has no links"),
            (f"/migration/cohorts/{cohort}/rollback", {}, 409, "nothing to roll back"),
        ]
        for path, body, status, message in cases:
            r = await client.post(path, json=body, headers=admin)
            assert r.status_code == status, (path, r.text)
            assert message in r.json()["detail"]
        # a cut-over recorded after the fact, for one account: accepted, and shown by state reads
        r = await client.post(
            f"/migration/accounts/{ba}/cutover",
            json={"at": "2024-01-01T00:00:00Z", "note": "done by hand"},
            headers=admin,
        )
        assert r.status_code == 200, r.text
        assert r.json()["authority"]["side"] == "target"
        r = await client.post(f"/migration/accounts/{ba}/cutover", json={}, headers=admin)
        assert r.status_code == 409
    async with pool.acquire() as conn:
        rows = await conn.fetch(
            "SELECT action, billing_account, note FROM coexist.authority_events WHERE cohort = $1",
            cohort,
        )
    assert [(r["action"], r["billing_account"], r["note"]) for r in rows] == [
        ("cutover", ba, "done by hand")
    ]
