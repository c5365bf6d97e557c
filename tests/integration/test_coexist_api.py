"""The migration API end to end, and what state reads show for linked objects: the
authoritative side and both sides, before and after a cut-over."""

from __future__ import annotations

import asyncpg
from litestar.testing import AsyncTestClient

from audit.tokens import create_token
from ledgerhook.app import create_app
from ledgerhook.settings import Settings
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


async def test_migration_api_and_state_reads(settings: Settings, pool: asyncpg.Pool) -> None:
    t = tag()
    cohort = f"api-{t}"
    await apply_events(
        pool,
        [
            (
                "chargebee",
                cb_subscription(
                    customer_id=f"a{t}", sub_id=f"as{t}", version=(CUT - 10 * DAY) * 1000
                ),
            ),
            ("stripe", stripe_customer(cus_id=f"cus_a{t}", created=CUT - 9 * DAY)),
            (
                "stripe",
                stripe_subscription(
                    sub_id=f"sub_a{t}",
                    cus_id=f"cus_a{t}",
                    created=CUT - 9 * DAY,
                    price=f"price_{t}",
                    amount=9_000,
                ),
            ),
        ],
    )
    tokens = {}
    async with pool.acquire() as conn:
        for role in ("auditor", "oncall", "admin"):
            tokens[role] = {
                "Authorization": f"Bearer {await create_token(conn, name=f'api-{role}-{t}', role=role)}"
            }
    async with AsyncTestClient(create_app(settings)) as client:
        body = links_csv(pair_rows(cohort, f"a{t}", f"cus_a{t}", f"as{t}", f"sub_a{t}"))
        r = await client.post(
            "/migration/links",
            content=body,
            headers={**tokens["admin"], "Content-Type": "text/csv"},
        )
        assert r.status_code == 200 and r.json()["linked"] == 2, r.text
        prices = [
            {
                "source_provider": "chargebee",
                "source_price": "team-EUR-monthly",
                "target_provider": "stripe",
                "target_price": f"price_{t}",
            }
        ]
        r = await client.post("/migration/prices", json=prices, headers=tokens["admin"])
        assert r.status_code == 200 and r.json()["linked"] == 1, r.text
        r = await client.get("/migration/prices", headers=tokens["auditor"])
        assert {
            "source_provider": "chargebee",
            "source_price": "team-EUR-monthly",
            "target_provider": "stripe",
            "target_price": f"price_{t}",
        } in r.json()

        # Before any cut-over: Chargebee is authoritative; both sides are in the read.
        r = await client.get(f"/state/subscriptions/stripe/sub_a{t}", headers=tokens["auditor"])
        assert r.status_code == 200, r.text
        co = r.json()["coexistence"]
        assert co["authority"]["side"] == "source" and co["authority"]["phase"] == "unplanned"
        assert co["authoritative"] == {
            "provider": "chargebee",
            "account": "acme-test",
            "id": f"as{t}",
        }
        assert co["source_state"]["id"] == f"as{t}" and co["target_state"]["id"] == f"sub_a{t}"
        r = await client.get(f"/state/customers/chargebee/a{t}", headers=tokens["auditor"])
        assert r.json()["coexistence"]["target"]["id"] == f"cus_a{t}"
        assert r.json()["coexistence"]["target_state"]["id"] == f"cus_a{t}"

        # Verification needs on-call; the report pages and streams CSV.
        r = await client.post(f"/migration/cohorts/{cohort}/verify", headers=tokens["auditor"])
        assert r.status_code == 403
        r = await client.post(f"/migration/cohorts/{cohort}/verify", headers=tokens["oncall"])
        assert r.status_code == 200, r.text
        run = r.json()
        assert run["summary"]["pairs"] == 2 and run["summary"]["mismatched"] == 1
        r = await client.get(
            f"/migration/cohorts/{cohort}/report", params={"limit": 1}, headers=tokens["auditor"]
        )
        page = r.json()
        assert page["run"]["id"] == run["run_id"] and len(page["items"]) == 1
        kinds = {c["kind"] for c in page["items"][0]["checks"]}
        assert {"status", "amount", "mrr"} <= kinds  # both billing before the cut-over; 90 vs 99
        r = await client.get(
            f"/migration/cohorts/{cohort}/report",
            params={"format": "csv"},
            headers=tokens["auditor"],
        )
        assert r.status_code == 200 and r.headers["content-type"].startswith("text/csv")
        assert r.text.splitlines()[0].startswith("pair_key,kind,billing_account")
        assert any(",amount,mismatch,9900,9000," in ln for ln in r.text.splitlines())
        r = await client.get(
            f"/migration/cohorts/{cohort}/report", params={"bogus": "1"}, headers=tokens["auditor"]
        )
        assert r.status_code == 400

        # The cut-over, by an admin: the state reads now name Stripe as authoritative.
        r = await client.post(
            f"/migration/cohorts/{cohort}/cutover",
            json={"note": "wave 1"},
            headers=tokens["oncall"],
        )
        assert r.status_code == 403
        r = await client.post(
            f"/migration/cohorts/{cohort}/cutover", json={"note": "wave 1"}, headers=tokens["admin"]
        )
        assert r.status_code == 200, r.text
        assert r.json()["authority"]["phase"] == "cut_over"
        r = await client.get(f"/state/subscriptions/chargebee/as{t}", headers=tokens["auditor"])
        co = r.json()["coexistence"]
        assert co["authoritative"]["id"] == f"sub_a{t}" and co["authority"]["side"] == "target"

        r = await client.get("/migration/cohorts", headers=tokens["auditor"])
        (row,) = [c for c in r.json() if c["cohort"] == cohort]
        assert (row["customers"], row["subscriptions"]) == (1, 1)
        assert row["last_run"]["id"] == run["run_id"]
        r = await client.get(f"/migration/cohorts/{cohort}", headers=tokens["auditor"])
        detail = r.json()
        assert [e["action"] for e in detail["authority_history"]] == ["cutover"]
        assert detail["authority_history"][0]["note"] == "wave 1"
        ba = page["items"][0]["billing_account"]
        r = await client.get(f"/migration/accounts/{ba}", headers=tokens["auditor"])
        account = r.json()
        assert account["customer"]["target"]["id"] == f"cus_a{t}"
        assert [h["action"] for h in account["link_history"]] == ["link", "link"]
        # an unlinked object reads as before
        r = await client.get(
            f"/state/subscriptions/stripe/sub_nobody{t}", headers=tokens["auditor"]
        )
        assert r.status_code == 404
