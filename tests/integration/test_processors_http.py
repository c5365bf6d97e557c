"""End to end over HTTP: a signed webhook → audit log → arq worker → state row → read API."""

from __future__ import annotations

import hashlib
import hmac
import time
from typing import Any

import asyncpg
import msgspec
from litestar.testing import AsyncTestClient

from audit.tokens import create_token
from ledgerhook.app import create_app
from ledgerhook.settings import Settings
from processors.service import process_delivery
from tests.conftest import STRIPE_SECRET
from tests.integration.processors_helpers import (
    append,
    new_delivery,
    own_queue,
    run_burst,
    stripe_event,
    stripe_sequence,
    uid,
)


def _signed(body: bytes) -> dict[str, str]:
    t = int(time.time())
    sig = hmac.new(STRIPE_SECRET.encode(), f"{t}.".encode() + body, hashlib.sha256).hexdigest()
    return {"Stripe-Signature": f"t={t},v1={sig}", "Content-Type": "application/json"}


async def _token(pool: asyncpg.Pool, role: str = "auditor") -> dict[str, str]:
    async with pool.acquire() as conn:
        token = await create_token(conn, name=uid("state-reader-"), role=role)  # type: ignore[arg-type]
    return {"Authorization": f"Bearer {token}"}


async def test_signed_webhook_to_state_row_to_read_api(
    fresh_settings: Settings, fresh_pool: asyncpg.Pool
) -> None:
    s = own_queue(fresh_settings)
    suffix = uid()
    events = stripe_sequence(suffix)
    auth = await _token(fresh_pool)
    async with AsyncTestClient(create_app(s)) as client:
        for ev in events:
            body = msgspec.json.encode(ev)
            r = await client.post("/webhooks/stripe/default", content=body, headers=_signed(body))
            assert r.status_code == 200, r.text
        # The ingest edge enqueued wake-ups on our queue; a real worker drains it.
        await run_burst(s)
        async with fresh_pool.acquire() as conn:
            n = await conn.fetchval("SELECT count(*) FROM processors.processed")
        assert n == len(events)

        r = await client.get(f"/state/subscriptions/stripe/sub_{suffix}", headers=auth)
        assert r.status_code == 200, r.text
        detail = r.json()
        sub = detail["subscription"]
        assert sub["status"] == "canceled"
        assert sub["account"] == "acct_test"
        assert sub["data"]["mrr"] == 0
        # Workers run concurrently, so arrival order varies; the history always adds up:
        # it starts with "created" and its MRR deltas sum to the current MRR.
        kinds = [c["kind"] for c in detail["changes"]]
        assert kinds[0] == "created"
        assert "canceled" in kinds
        assert sum(c["mrr_delta"] for c in detail["changes"]) == sub["data"]["mrr"] == 0
        assert len(detail["history"]) == 6
        # From the number back to the raw webhook.
        r = await client.get(f"/audit/deliveries/{sub['last_delivery_id']}", headers=auth)
        assert r.status_code == 200
        assert r.json()["event_type"] == "customer.subscription.deleted"

        r = await client.get(f"/state/invoices/stripe/in_{suffix}", headers=auth)
        assert r.status_code == 200
        inv = r.json()["object"]
        assert (inv["status"], inv["data"]["total"], inv["data"]["amount_paid"]) == (
            "paid",
            2000,
            2000,
        )
        r = await client.get(f"/state/customers/stripe/cus_{suffix}", headers=auth)
        assert r.status_code == 200
        assert r.json()["object"]["deleted"] is True

        for kind, status in (
            ("payments", "succeeded"),
            ("refunds", "succeeded"),
            ("credit_notes", "void"),
        ):
            r = await client.get(
                f"/state/{kind}", params={"provider": "stripe", "status": status}, headers=auth
            )
            assert r.status_code == 200, r.text
            assert len(r.json()["items"]) == 1, kind


async def test_lists_filter_and_page(settings: Settings, pool: asyncpg.Pool) -> None:
    account = uid("acct_")
    customer = uid("cus_")
    subs = sorted(uid("sub_") for _ in range(7))

    def owned(obj: dict[str, Any]) -> None:
        obj["customer"] = customer

    appended = await append(
        pool,
        [
            new_delivery(
                "stripe",
                stripe_event("subscription_created.json", object_id=s, change=owned),
                account=account,
            )
            for s in subs
        ],
    )
    async with pool.acquire() as conn:
        for a in appended:
            assert await process_delivery(conn, a.id) == "applied"
    auth = await _token(pool)
    async with AsyncTestClient(create_app(settings)) as client:
        got: list[str] = []
        cursor = None
        while True:
            params: dict[str, Any] = {"account": account, "customer": customer, "limit": 3}
            if cursor:
                params["cursor"] = cursor
            r = await client.get("/state/subscriptions", params=params, headers=auth)
            assert r.status_code == 200, r.text
            page = r.json()
            got += [x["id"] for x in page["items"]]
            cursor = page["next_cursor"]
            if cursor is None:
                break
        assert got == subs

        r = await client.get(
            "/state/subscriptions", params={"account": account, "status": "canceled"}, headers=auth
        )
        assert r.json()["items"] == []

        # Bad input: clear 4xx with a reason.
        for path, params, status in [
            ("/state/subscriptions", {"cursor": "!!!"}, 400),
            ("/state/subscriptions", {"cursor": "bm90LWpzb24"}, 400),
            ("/state/subscriptions", {"acount": account}, 400),
            ("/state/subscriptions", {"limit": 0}, 400),
            ("/state/widgets", {}, 404),
            ("/state/subscriptions/paypal/sub_1", {}, 400),
            ("/state/subscriptions/stripe/sub_does_not_exist", {}, 404),
        ]:
            r = await client.get(path, params=params, headers=auth)
            assert r.status_code == status, (path, params, r.text)
            assert r.json()

        r = await client.get(f"/state/subscriptions/stripe/{subs[0]}")
        assert r.status_code == 401
        r = await client.get(
            f"/state/subscriptions/stripe/{subs[0]}", params={"account": account}, headers=auth
        )
        assert r.status_code == 200


async def test_same_id_in_two_accounts_needs_account(
    settings: Settings, pool: asyncpg.Pool
) -> None:
    cus = uid("cus_")
    a1, a2 = uid("acct_"), uid("acct_")
    appended = await append(
        pool,
        [
            new_delivery("stripe", stripe_event("customer_updated.json", object_id=cus), account=a)
            for a in (a1, a2)
        ],
    )
    async with pool.acquire() as conn:
        for a in appended:
            await process_delivery(conn, a.id)
    auth = await _token(pool)
    async with AsyncTestClient(create_app(settings)) as client:
        r = await client.get(f"/state/customers/stripe/{cus}", headers=auth)
        assert r.status_code == 400
        assert "account" in r.json()["detail"] and r.json()["error"] == "invalid_parameter"
        r = await client.get(f"/state/customers/stripe/{cus}", params={"account": a2}, headers=auth)
        assert r.status_code == 200
        assert r.json()["object"]["account"] == a2
