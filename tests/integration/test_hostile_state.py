"""Hostile deliveries that pass the envelope and reach the processors, on real PostgreSQL.

A verified delivery can still be hostile inside (a huge amount, a float amount, an object id that
another provider also uses). Each is verified by the real provider module, appended to the real
log, and processed by the real service: the outcome is a recorded one (applied, ignored, stale or
dead_letter with a reason), never an exception escaping, and state keeps providers apart.
"""

from __future__ import annotations

import base64
import copy
import time
import uuid
from datetime import UTC, datetime
from typing import Any

import asyncpg
import msgspec
import pytest

from audit.append import NewDelivery, append_deliveries
from ingest.providers import chargebee, stripe
from ledgerhook.settings import EndpointSettings, Secret
from processors.service import process_delivery
from tests.conftest import CHARGEBEE_AUTH, FIXTURES, STRIPE_SECRET
from tests.faults.stream import stripe_signature

SHARED_ACCOUNT = "acct_collide"
STRIPE_EP = EndpointSettings(
    provider="stripe", account=SHARED_ACCOUNT, secrets=(Secret(STRIPE_SECRET),)
)
CHARGEBEE_EP = EndpointSettings(
    provider="chargebee", account=SHARED_ACCOUNT, basic_auth=(Secret(CHARGEBEE_AUTH),)
)
RECORDED = {"applied", "ignored", "stale", "dead_letter"}


def _stripe(name: str) -> dict[str, Any]:
    data: dict[str, Any] = msgspec.json.decode((FIXTURES / "stripe" / name).read_bytes())
    return copy.deepcopy(data)


def _chargebee() -> dict[str, Any]:
    raw = msgspec.json.decode(
        (FIXTURES / "chargebee" / "event_subscription_created_retrieve.json").read_bytes()
    )
    event: dict[str, Any] = raw["event"]
    return event


async def _ingest(conn: asyncpg.Connection, provider: str, body: bytes) -> int:
    """What the webhook endpoint does, minus HTTP: verify with the real module, then append."""
    now = time.time()
    if provider == "stripe":
        headers = {"stripe-signature": stripe_signature(body, int(now), STRIPE_SECRET)}
        v = stripe.verify(headers, body, now, STRIPE_EP)
    else:
        headers = {"authorization": "Basic " + base64.b64encode(CHARGEBEE_AUTH.encode()).decode()}
        v = chargebee.verify(headers, body, now, CHARGEBEE_EP)
    [row] = await append_deliveries(
        conn,
        [
            NewDelivery(
                received_at=datetime.now(UTC),
                provider=v.provider,
                endpoint="default",
                account=v.account,
                event_id=v.event_id,
                event_type=v.event_type,
                event_created=v.event_created,
                object_id=v.object_id,
                source_address="127.0.0.1",
                content_type="application/json",
                headers="[]",
                verification=v.verification,
                body=body,
            )
        ],
    )
    return row.id


async def test_same_object_id_in_both_providers_stays_two_objects(pool: asyncpg.Pool) -> None:
    shared = f"sub_collide_{uuid.uuid4().hex[:8]}"
    s = _stripe("subscription_created.json")
    s["id"] = f"evt_{uuid.uuid4().hex}"
    s["data"]["object"]["id"] = shared
    c = _chargebee()
    c["id"] = f"ev_{uuid.uuid4().hex}"
    c["content"]["subscription"]["id"] = shared
    async with pool.acquire() as conn:
        sid = await _ingest(conn, "stripe", msgspec.json.encode(s))
        cid = await _ingest(conn, "chargebee", msgspec.json.encode(c))
        assert await process_delivery(conn, sid) == "applied"
        assert await process_delivery(conn, cid) == "applied"
        rows = await conn.fetch(
            "SELECT provider, account, status, currency, last_delivery_id "
            "FROM processors.subscriptions WHERE id = $1 ORDER BY provider",
            shared,
        )
    assert [(r["provider"], r["account"], r["last_delivery_id"]) for r in rows] == [
        ("chargebee", SHARED_ACCOUNT, cid),
        ("stripe", SHARED_ACCOUNT, sid),
    ]
    # Each keeps its own provider's facts: Stripe's fixture is in usd, Chargebee's in INR.
    assert {r["provider"]: (r["currency"] or "").lower() for r in rows} == {
        "chargebee": "inr",
        "stripe": "usd",
    }


def _with(obj: dict[str, Any], raw: bytes) -> bytes:
    """Encode, then splice a raw JSON value (not expressible as a Python float/int) in."""
    return msgspec.json.encode(obj).replace(b'"__RAW__"', raw)


@pytest.mark.parametrize(
    ("field", "raw"),
    [
        ("amount_paid", b"9" * 5000),
        ("amount_paid", b"1e400"),
        ("amount_paid", b"12.5"),
        ("amount_paid", b"-1"),
        ("currency", b"null"),
        ("customer", b'{"nested": [[[[[]]]]]}'),
    ],
    ids=["5000-digits", "float-overflow", "float", "negative", "null-currency", "object-for-id"],
)
async def test_hostile_values_are_recorded_not_raised(
    pool: asyncpg.Pool, field: str, raw: bytes
) -> None:
    e = _stripe("invoice_paid.json")
    e["id"] = f"evt_{uuid.uuid4().hex}"
    e["data"]["object"]["id"] = f"in_h_{uuid.uuid4().hex[:8]}"
    e["data"]["object"][field] = "__RAW__"
    body = _with(e, raw)
    async with pool.acquire() as conn:
        did = await _ingest(conn, "stripe", body)
        outcome = await process_delivery(conn, did)
        assert outcome in RECORDED
        row = await conn.fetchrow(
            "SELECT outcome, error FROM processors.processed WHERE delivery_id = $1", did
        )
        assert row is not None and row["outcome"] == outcome
        if outcome == "dead_letter":
            assert row["error"], "a dead letter must say why"
        # Idempotent even for a hostile delivery.
        assert await process_delivery(conn, did) == outcome
        if outcome == "applied":
            amount = await conn.fetchval(
                "SELECT amount_paid FROM processors.invoices WHERE id = $1 AND provider = 'stripe'",
                e["data"]["object"]["id"],
            )
            assert amount is None or isinstance(amount, int), "money must stay integer"
