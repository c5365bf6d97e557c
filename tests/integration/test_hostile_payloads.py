"""Hostile payloads: each gets a clear, bounded answer and nothing half-stored, never a crash.

Two levels. The pure verifiers (``ingest.providers.*.verify``) must raise only
:class:`ingest.errors.Rejected` or return a delivery, quickly, for correctly signed bodies that
are hostile inside (a signature proves the sender, not that the sender is sane). Then the same
bodies through the HTTP endpoint, on real PostgreSQL and Redis: a documented 4xx with a reason
and a rejection record, or a 200 and the exact bytes stored.
"""

from __future__ import annotations

import asyncio
import base64
import json
import time
import uuid
from collections.abc import AsyncIterator, Callable

import asyncpg
import msgspec
import pytest
from litestar import Litestar
from litestar.testing import AsyncTestClient

from ingest.errors import InvalidEnvelope, Rejected, SignatureError
from ingest.providers import VERIFIERS, chargebee, stripe
from ingest.providers.base import VerifiedDelivery
from ledgerhook.app import create_app
from ledgerhook.settings import EndpointSettings, IngestSettings, Secret, Settings
from tests.conftest import CHARGEBEE_AUTH, STRIPE_SECRET
from tests.faults.stream import stripe_signature

DEPTH = 100_000
STRIPE_EP = EndpointSettings(provider="stripe", account="acct_h", secrets=(Secret(STRIPE_SECRET),))
CHARGEBEE_EP = EndpointSettings(
    provider="chargebee", account="site-h", basic_auth=(Secret(CHARGEBEE_AUTH),)
)


def _event(event_id: str, tail: bytes = b"") -> bytes:
    """A minimal valid Stripe envelope with raw JSON spliced in after the known fields."""
    head = (
        b'{"id":"'
        + event_id.encode()
        + b'","object":"event","type":"customer.updated","created":1700000000'
    )
    return head + tail + b"}"


def _nested(kind: str) -> bytes:
    if kind == "array":
        return b"[" * DEPTH + b"]" * DEPTH
    return b'{"a":' * DEPTH + b"1" + b"}" * DEPTH


# (name, body builder taking a fresh event id, expected: "reject" or "accept")
HOSTILE: list[tuple[str, Callable[[str], bytes], str]] = [
    ("nested-array-top-level", lambda e: _nested("array"), "reject"),
    ("nested-object-top-level", lambda e: _nested("object"), "reject"),
    ("nested-array-in-unknown-field", lambda e: _event(e, b',"x":' + _nested("array")), "reject"),
    (
        "nested-object-in-data",
        lambda e: _event(e, b',"data":{"object":{"id":"cus_1","x":' + _nested("object") + b"}}"),
        "reject",
    ),
    (
        "float-overflow-created",
        lambda e: _event(e).replace(b'"created":1700000000', b'"created":1e400'),
        "reject",
    ),
    (
        "5000-digit-created",
        lambda e: _event(e).replace(b'"created":1700000000', b'"created":' + b"9" * 5000),
        "reject",
    ),
    (
        "negative-created",
        lambda e: _event(e).replace(b'"created":1700000000', b'"created":-1'),
        "reject",
    ),
    (
        "5000-digit-amount-ignored",
        lambda e: _event(e, b',"data":{"object":{"id":"cus_1","amount":' + b"9" * 5000 + b"}}"),
        "accept",
    ),
    (
        "float-overflow-amount-ignored",
        lambda e: _event(e, b',"data":{"object":{"id":"cus_1","amount":1e400}}'),
        "accept",
    ),
    ("invalid-utf8-in-id", lambda e: _event(e).replace(e.encode(), e.encode() + b"\xff"), "reject"),
    ("invalid-utf8-in-unknown-field", lambda e: _event(e, b',"x":"\xff\xfe"'), "reject"),
    ("lone-surrogate-escape", lambda e: _event(e, b',"x":"\\ud800"'), "reject"),
    ("utf8-bom", lambda e: b"\xef\xbb\xbf" + _event(e), "reject"),
    ("nul-in-json-string-escape", lambda e: _event(e, b',"x":"a\\u0000b"'), "accept"),
    ("not-json", lambda e: b"this is not json " + e.encode(), "reject"),
    ("empty-body", lambda e: b"", "reject"),
    ("json-array", lambda e: b"[]", "reject"),
    ("json-string", lambda e: b'"' + e.encode() + b'"', "reject"),
    ("json-null", lambda e: b"null", "reject"),
    ("empty-object", lambda e: b"{}", "reject"),
    ("id-is-number", lambda e: b'{"id":1,"type":"customer.updated","created":1}', "reject"),
    ("id-too-long", lambda e: _event(e + "x" * 300), "reject"),
    ("data-is-array", lambda e: _event(e, b',"data":[]'), "reject"),
    ("data-object-is-string", lambda e: _event(e, b',"data":{"object":"cus_1"}'), "reject"),
    ("trailing-garbage", lambda e: _event(e) + b"garbage", "reject"),
    ("two-documents", lambda e: _event(e) + _event(e), "reject"),
]


def _verify_stripe(body: bytes) -> VerifiedDelivery:
    now = time.time()
    return stripe.verify(
        {"stripe-signature": stripe_signature(body, int(now), STRIPE_SECRET)}, body, now, STRIPE_EP
    )


@pytest.mark.parametrize(("name", "build", "expected"), HOSTILE, ids=[h[0] for h in HOSTILE])
def test_stripe_verifier_is_bounded_and_clean(
    name: str, build: Callable[[str], bytes], expected: str
) -> None:
    body = build(f"evt_h_{uuid.uuid4().hex[:8]}")
    started = time.perf_counter()
    try:
        result: VerifiedDelivery | Rejected = _verify_stripe(body)
    except Rejected as exc:
        result = exc
    elapsed = time.perf_counter() - started
    assert elapsed < 1.0, f"{name} took {elapsed:.2f}s"
    if expected == "reject":
        assert isinstance(result, InvalidEnvelope), f"{name}: {result!r}"
        assert result.reason in {"invalid_json", "not_an_object", "missing_field", "invalid_field"}
        assert STRIPE_SECRET not in str(result)
    else:
        assert isinstance(result, VerifiedDelivery), f"{name}: {result!r}"


@pytest.mark.parametrize(("name", "build", "expected"), HOSTILE, ids=[h[0] for h in HOSTILE])
def test_chargebee_verifier_is_bounded_and_clean(
    name: str, build: Callable[[str], bytes], expected: str
) -> None:
    body = build(f"ev_h_{uuid.uuid4().hex[:8]}")
    # The same hostile content in Chargebee's envelope (event_type / occurred_at / content).
    body = (
        body.replace(b'"type":', b'"event_type":')
        .replace(b'"created":', b'"occurred_at":')
        .replace(b'"data":', b'"content":')
    )
    if name in ("negative-created",):
        expected = "reject"
    if name == "data-object-is-string":
        expected = "accept"  # content.object is not a resource with an id: no main object
    headers = {"authorization": "Basic " + base64.b64encode(CHARGEBEE_AUTH.encode()).decode()}
    started = time.perf_counter()
    try:
        result: VerifiedDelivery | Rejected = chargebee.verify(
            headers, body, time.time(), CHARGEBEE_EP
        )
    except Rejected as exc:
        result = exc
    assert time.perf_counter() - started < 1.0
    if expected == "reject":
        assert isinstance(result, InvalidEnvelope), f"{name}: {result!r}"
    else:
        assert isinstance(result, VerifiedDelivery), f"{name}: {result!r}"


def test_duplicate_keys_resolve_as_every_json_reader_does() -> None:
    """``{"id": "a", "id": "b"}``: the envelope must name the same event a JSON reader sees later
    (last key wins in Python's json and msgspec), so the audit row and the state agree."""
    body = b'{"id":"evt_first","id":"evt_second","object":"event","type":"customer.updated","created":1,"data":{"object":{"id":"cus_a","id":"cus_b"}}}'
    try:
        got = _verify_stripe(body)
    except InvalidEnvelope:
        return  # refusing duplicate keys outright is also acceptable
    plain = json.loads(body)
    assert got.event_id == plain["id"] == "evt_second"
    assert got.object_id == plain["data"]["object"]["id"] == "cus_b"


@pytest.mark.parametrize(
    ("header", "reason"),
    [
        (",".join(["v1=" + "0" * 64] * 5000) + ",t=1700000000", "malformed_signature"),
        ("t=1700000000," + ",".join(["v1=" + "0" * 64] * 60), "no_matching_signature"),
        ("t=1700000000," + ",".join(["x=1"] * 4000), "malformed_signature"),
        ("t=1700000000,t=1700000001,v1=00", "malformed_signature"),
        ("t=" + "9" * 5000 + ",v1=00", "malformed_signature"),
        ("t=-1,v1=00", "malformed_signature"),
        ("t=١٢٣,v1=00", "malformed_signature"),  # Arabic-Indic digits are not ASCII digits
        ("v1=\udcff\udcfe,t=1", "no_matching_signature"),
        ("=" * 8000, "malformed_signature"),
        ("," * 8000, "malformed_signature"),
    ],
    ids=[
        "5000-v1",
        "60-v1",
        "4000-junk",
        "two-t",
        "huge-t",
        "negative-t",
        "unicode-digits",
        "latin1-junk",
        "equals",
        "commas",
    ],
)
def test_stripe_signature_header_abuse_is_bounded(header: str, reason: str) -> None:
    body = _event("evt_sig")
    started = time.perf_counter()
    with pytest.raises(SignatureError) as info:
        stripe.verify({"stripe-signature": header}, body, 1700000000, STRIPE_EP)
    assert time.perf_counter() - started < 0.5
    assert info.value.reason == reason, str(info.value)


def test_every_provider_has_a_hostile_table() -> None:
    """A new provider module must be added to the tables above."""
    assert set(VERIFIERS) == {"stripe", "chargebee"}


# --- through HTTP, on real PostgreSQL and Redis ---------------------------------------------

Client = AsyncTestClient[Litestar]


@pytest.fixture
async def client(settings: Settings, pool: asyncpg.Pool) -> AsyncIterator[Client]:
    # The test client runs the app on its own loop (a portal thread), so the app opens its own
    # pool there; the shared ``pool`` belongs to the test's loop and is only for its checks.
    del pool
    app = create_app(
        msgspec.structs.replace(settings, ingest=IngestSettings(rejections_per_minute=100_000))
    )
    async with AsyncTestClient(app) as c:
        yield c


def _stripe_headers(body: bytes) -> dict[str, str]:
    return {
        "Stripe-Signature": stripe_signature(body, int(time.time()), STRIPE_SECRET),
        "Content-Type": "application/json",
    }


@pytest.mark.parametrize(("name", "build", "expected"), HOSTILE, ids=[h[0] for h in HOSTILE])
async def test_hostile_bodies_over_http(
    client: Client, pool: asyncpg.Pool, name: str, build: Callable[[str], bytes], expected: str
) -> None:
    marker = f"evt_hh_{uuid.uuid4().hex[:10]}"
    body = build(marker)
    headers = {**_stripe_headers(body), "X-Test-Marker": marker}
    started = time.perf_counter()
    r = await client.post("/webhooks/stripe", content=body, headers=headers)
    assert time.perf_counter() - started < 5.0
    if expected == "reject":
        assert r.status_code == 400, (name, r.status_code, r.text[:300])
        out = r.json()
        assert out["error"] in {"invalid_json", "not_an_object", "missing_field", "invalid_field"}
        assert STRIPE_SECRET not in r.text
        stored = await pool.fetchval(
            "SELECT count(*) FROM audit.deliveries WHERE headers::text LIKE $1", f"%{marker}%"
        )
        assert stored == 0, "a rejected request left a delivery row"
        deadline = time.monotonic() + 5
        while time.monotonic() < deadline:
            rec = await pool.fetchrow(
                "SELECT status, reason, body_size, body_prefix FROM audit.rejections WHERE headers::text LIKE $1",
                f"%{marker}%",
            )
            if rec is not None:
                break
            await _sleep()
        assert rec is not None, "no rejection record"
        assert rec["status"] == 400 and rec["reason"] == out["error"]
        assert rec["body_size"] == len(body) and len(rec["body_prefix"]) <= 4096
    else:
        assert r.status_code == 200, (name, r.status_code, r.text[:300])
        row = await pool.fetchrow(
            "SELECT body FROM audit.deliveries WHERE id = $1", r.json()["delivery_id"]
        )
        assert row is not None and bytes(row["body"]) == body


async def _sleep() -> None:
    await asyncio.sleep(0.05)
