"""Identity links: by import (CLI function and API, CSV and JSON), by metadata on the target
object, as append-only history; bad input is a clear 4xx and changes nothing."""

from __future__ import annotations

import asyncpg
import msgspec
import pytest
from litestar.testing import AsyncTestClient

from audit.tokens import create_token
from ledgerhook.app import create_app
from ledgerhook.settings import CoexistSettings, Settings
from processors.coexist.errors import InvalidImport, LinkConflict, MigrationNotFound
from processors.coexist.imports import parse_links
from processors.coexist.links import default_accounts, import_links, unlink
from processors.coexist.metadata import link_from_metadata
from processors.coexist.model import Ref
from tests.conftest import superuser
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


async def _auth(pool: asyncpg.Pool, role: str) -> dict[str, str]:
    async with pool.acquire() as conn:
        token = await create_token(conn, name=f"coexist-{role}-{tag()}", role=role)  # type: ignore[arg-type]
    return {"Authorization": f"Bearer {token}"}


async def _counts(pool: asyncpg.Pool) -> tuple[int, int, int, int]:
    async with pool.acquire() as conn:
        row = await conn.fetchrow(
            "SELECT (SELECT count(*) FROM coexist.links), (SELECT count(*) FROM coexist.linked_objects), "
            "(SELECT count(*) FROM coexist.link_events), (SELECT count(*) FROM coexist.imports)"
        )
    assert row is not None
    return row[0], row[1], row[2], row[3]


async def test_import_links_customer_then_subscription_via_state(
    settings: Settings, pool: asyncpg.Pool
) -> None:
    t = tag()
    cohort = f"wave-{t}"
    # The subscription's account is found through the state: its Chargebee customer is linked.
    await apply_events(
        pool,
        [
            (
                "chargebee",
                cb_subscription(customer_id=f"cb{t}", sub_id=f"cbs{t}", version=CUT * 1000),
            )
        ],
    )
    data = links_csv(pair_rows(cohort, f"cb{t}", f"cus_{t}", None, None))
    lines = parse_links(data, "csv", default_accounts=default_accounts(settings))
    async with pool.acquire() as conn:
        first = await import_links(
            conn, lines, actor="alice", origin="cli", source="links.csv", fmt="csv"
        )
        again = await import_links(
            conn, lines, actor="alice", origin="cli", source="links.csv", fmt="csv"
        )
        sub_line = parse_links(
            links_csv(
                [
                    {
                        "kind": "subscription",
                        "source_provider": "chargebee",
                        "source_id": f"cbs{t}",
                        "target_provider": "stripe",
                        "target_id": f"sub_{t}",
                    }
                ]
            ),
            "csv",
            default_accounts=default_accounts(settings),
        )
        sub = await import_links(
            conn, sub_line, actor="bob", origin="cli", source="subs.csv", fmt="csv"
        )
        rows = await conn.fetch(
            "SELECT kind, billing_account, cohort, origin, actor, import_id FROM coexist.links "
            "WHERE cohort = $1 ORDER BY kind",
            cohort,
        )
        history = await conn.fetch(
            "SELECT e.action, e.actor, i.source FROM coexist.link_events e "
            "JOIN coexist.imports i ON i.id = e.import_id WHERE e.cohort = $1 ORDER BY e.id",
            cohort,
        )
    assert (first.linked, first.unchanged) == (1, 0)
    assert (again.linked, again.unchanged, again.import_id) == (0, 1, None)  # harmless re-import
    assert sub.linked == 1
    (cust, subscription) = rows
    assert cust["billing_account"] == subscription["billing_account"]
    assert subscription["cohort"] == cohort  # the account's cohort
    assert [(h["action"], h["actor"], h["source"]) for h in history] == [
        ("link", "alice", "links.csv"),
        ("link", "bob", "subs.csv"),
    ]


async def test_conflicting_duplicate_link_is_refused_and_changes_nothing(
    settings: Settings, pool: asyncpg.Pool
) -> None:
    t = tag()
    accounts = default_accounts(settings)
    base = parse_links(
        links_csv(pair_rows(f"w{t}", f"cb{t}", f"cus_{t}", None, None)),
        "csv",
        default_accounts=accounts,
    )
    async with pool.acquire() as conn:
        await import_links(conn, base, actor="a", origin="cli", source="f", fmt="csv")
    before = await _counts(pool)
    cases = [
        # the same Chargebee customer to another Stripe customer, after a good line
        pair_rows(f"w{t}", f"cbx{t}", f"cusx_{t}", None, None)
        + pair_rows(f"w{t}", f"cb{t}", f"cus_other{t}", None, None),
        # the same pair in another cohort
        pair_rows(f"other{t}", f"cb{t}", f"cus_{t}", None, None),
        # two lines of one file contradicting each other
        pair_rows(f"w{t}", f"cby{t}", f"cusy_{t}", None, None)
        + pair_rows(f"w{t}", f"cby{t}", f"cusz_{t}", None, None),
    ]
    for rows in cases:
        lines = parse_links(links_csv(rows), "csv", default_accounts=accounts)
        async with pool.acquire() as conn:
            with pytest.raises(LinkConflict, match=r"line \d"):
                await import_links(conn, lines, actor="a", origin="cli", source="f", fmt="csv")
    assert await _counts(pool) == before


async def test_api_import_and_bad_input(settings: Settings, pool: asyncpg.Pool) -> None:
    t = tag()
    admin = await _auth(pool, "admin")
    auditor = await _auth(pool, "auditor")
    async with AsyncTestClient(create_app(settings)) as client:
        body = links_csv(pair_rows(f"api{t}", f"cb{t}", f"cus_{t}", None, None))
        r = await client.post(
            "/migration/links", content=body, headers={**auditor, "Content-Type": "text/csv"}
        )
        assert r.status_code == 403
        r = await client.post(
            "/migration/links", content=body, headers={**admin, "Content-Type": "text/csv"}
        )
        assert r.status_code == 200, r.text
        assert r.json()["linked"] == 1
        before = await _counts(pool)
        bad = [
            # a malformed CSV line: its number, nothing of the import applied
            (
                links_csv(pair_rows(f"api{t}", f"cb2{t}", f"cus2_{t}", None, None))
                + b'api,customer,chargebee,"broken,stripe,cus_9\n',
                "text/csv",
                400,
                "line 3: malformed CSV",
            ),
            (
                links_csv(pair_rows(f"api{t}", f"cb3{t}", f"cusz_{t}", None, None))
                + f"api{t},customer,chargebee,cb4\n".encode(),
                "text/csv",
                400,
                "line 3: expected 7 fields, got 4",
            ),
            # an unknown provider
            (
                msgspec.json.encode(
                    [
                        {
                            "cohort": "c",
                            "source_provider": "paypal",
                            "source_id": "x",
                            "target_provider": "stripe",
                            "target_id": "y",
                        }
                    ]
                ),
                "application/json",
                400,
                "item 1: source_provider: unknown provider 'paypal'",
            ),
            # a conflicting duplicate
            (
                links_csv(pair_rows(f"api{t}", f"cb{t}", f"cus_else{t}", None, None)),
                "text/csv",
                409,
                "line 2: customer chargebee/acme-test/cb",
            ),
        ]
        for content, ctype, status, message in bad:
            r = await client.post(
                "/migration/links", content=content, headers={**admin, "Content-Type": ctype}
            )
            assert r.status_code == status, r.text
            assert message in r.json()["detail"]
        assert await _counts(pool) == before
        r = await client.get("/migration/links", params={"cohort": f"api{t}"}, headers=auditor)
        assert r.status_code == 200
        (link,) = r.json()["items"]
        assert link["source"] == {"provider": "chargebee", "account": "acme-test", "id": f"cb{t}"}
        assert link["actor"].startswith("coexist-admin-")
        # unlink keeps the history
        r = await client.post(
            "/migration/links/unlink",
            json={"kind": "customer", "provider": "stripe", "id": f"cus_{t}"},
            headers=admin,
        )
        assert r.status_code == 200, r.text
        r = await client.get(f"/migration/accounts/{link['billing_account']}", headers=auditor)
        assert r.status_code == 404
    async with pool.acquire() as conn:
        actions = await conn.fetch(
            "SELECT action FROM coexist.link_events WHERE billing_account = $1 ORDER BY id",
            link["billing_account"],
        )
    assert [a["action"] for a in actions] == ["link", "unlink"]


async def test_subscription_without_an_account_is_refused(
    settings: Settings, pool: asyncpg.Pool
) -> None:
    t = tag()
    rows = [
        {
            "cohort": f"w{t}",
            "kind": "subscription",
            "source_provider": "chargebee",
            "source_id": f"nowhere{t}",
            "target_provider": "stripe",
            "target_id": f"sub_{t}",
        }
    ]
    lines = parse_links(links_csv(rows), "csv", default_accounts=default_accounts(settings))
    async with pool.acquire() as conn:
        with pytest.raises(InvalidImport, match="line 2: cannot tell the billing account"):
            await import_links(conn, lines, actor="a", origin="cli", source="f", fmt="csv")
        with pytest.raises(MigrationNotFound):
            await unlink(
                conn,
                "customer",
                Ref(provider="stripe", account="acct_test", id=f"cus_{t}"),
                actor="a",
                origin="cli",
            )


async def test_links_from_metadata_on_the_target(settings: Settings, pool: asyncpg.Pool) -> None:
    t = tag()
    cfg = msgspec.structs.replace(
        settings,
        coexist=CoexistSettings(
            customer_metadata_key=f"cbc_{t}",
            subscription_metadata_key=f"cbs_{t}",
            cohort_metadata_key="migration_cohort",
            default_cohort=f"auto{t}",
        ),
    )
    await apply_events(
        pool,
        [
            (
                "chargebee",
                cb_subscription(customer_id=f"cb{t}", sub_id=f"cbs{t}", version=CUT * 1000),
            ),
            (
                "stripe",
                stripe_customer(
                    cus_id=f"cus_{t}", created=CUT - DAY, metadata={f"cbc_{t}": f"cb{t}"}
                ),
            ),
            (
                "stripe",
                stripe_customer(
                    cus_id=f"cus2_{t}",
                    created=CUT - DAY,
                    metadata={f"cbc_{t}": f"cb2{t}", "migration_cohort": f"named{t}"},
                ),
            ),
            # a second Stripe customer claiming the same Chargebee customer: not linked
            (
                "stripe",
                stripe_customer(
                    cus_id=f"cusz_{t}", created=CUT - DAY, metadata={f"cbc_{t}": f"cb{t}"}
                ),
            ),
            (
                "stripe",
                stripe_subscription(
                    sub_id=f"sub_{t}",
                    cus_id=f"cus_{t}",
                    created=CUT - DAY,
                    metadata={f"cbs_{t}": f"cbs{t}"},
                ),
            ),
        ],
    )
    async with pool.acquire() as conn:
        result = await link_from_metadata(conn, cfg)
        again = await link_from_metadata(conn, cfg)
        rows = await conn.fetch(
            "SELECT kind, cohort, source_id, target_id, origin, actor, evidence, billing_account "
            "FROM coexist.links WHERE target_id = ANY($1::text[]) ORDER BY target_id",
            [f"cus_{t}", f"cus2_{t}", f"cusz_{t}", f"sub_{t}"],
        )
    assert result.linked == 3
    # the second claimant is skipped (it stays an orphan), now and on every later pass
    assert any(f"cusz_{t}" in s and "contradicts" in s for s in result.skipped)
    assert again.linked == 0
    assert any(f"cusz_{t}" in s and "already linked" in s for s in again.skipped)
    by_target = {r["target_id"]: r for r in rows}
    assert set(by_target) == {f"cus_{t}", f"cus2_{t}", f"sub_{t}"}
    assert by_target[f"cus_{t}"]["cohort"] == f"auto{t}"
    assert by_target[f"cus2_{t}"]["cohort"] == f"named{t}"
    assert by_target[f"sub_{t}"]["billing_account"] == by_target[f"cus_{t}"]["billing_account"]
    assert all(r["origin"] == "metadata" and r["actor"] == "system" for r in rows)
    assert f"metadata.cbc_{t} (delivery " in by_target[f"cus_{t}"]["evidence"]


async def test_link_history_is_append_only(settings: Settings, pool: asyncpg.Pool) -> None:
    conn = await superuser(settings)
    try:
        for sql in (
            "UPDATE coexist.link_events SET actor = 'x'",
            "DELETE FROM coexist.imports",
            "TRUNCATE coexist.authority_events",
        ):
            with pytest.raises(asyncpg.InsufficientPrivilegeError):
                await conn.execute(sql)
    finally:
        await conn.close()
