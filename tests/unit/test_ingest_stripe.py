"""Stripe verification: tables, the official library as an oracle, and hypothesis properties."""

from __future__ import annotations

import contextlib
import hashlib
import hmac
import time
from types import SimpleNamespace

import msgspec
import pytest
import stripe
import stripe._webhook as stripe_webhook
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from ingest.errors import InvalidEnvelope, SignatureError, VerificationError
from ingest.providers import stripe as provider
from ingest.providers.base import fingerprint
from ledgerhook.settings import EndpointSettings, Secret
from tests.conftest import STRIPE_SECRET, STRIPE_SECRET_OLD, fixture_bytes, stripe_fixture_names

NOW = 1_700_000_000
EP = EndpointSettings(
    provider="stripe",
    account="acct_default",
    secrets=(Secret(STRIPE_SECRET), Secret(STRIPE_SECRET_OLD)),
)
BODY = b'{"id":"evt_1","object":"event","type":"invoice.paid","created":1699999999,"data":{"object":{"id":"in_1"}}}'


def sig(body: bytes, secret: str = STRIPE_SECRET, t: int = NOW) -> str:
    return hmac.new(secret.encode(), f"{t}.".encode() + body, hashlib.sha256).hexdigest()


def header(body: bytes = BODY, secret: str = STRIPE_SECRET, t: int = NOW) -> dict[str, str]:
    return {"stripe-signature": f"t={t},v1={sig(body, secret, t)}"}


def test_valid_delivery() -> None:
    v = provider.verify(header(), BODY, NOW, EP)
    assert (v.provider, v.account, v.event_id, v.event_type) == (
        "stripe",
        "acct_default",
        "evt_1",
        "invoice.paid",
    )
    assert (v.event_created, v.object_id) == (1699999999, "in_1")
    assert v.verification == f"stripe-v1:key={fingerprint(STRIPE_SECRET)}"
    assert STRIPE_SECRET not in v.verification


@pytest.mark.parametrize(
    ("headers", "body", "now", "reason"),
    [
        ({}, BODY, NOW, "missing_signature"),
        ({"stripe-signature": ""}, BODY, NOW, "missing_signature"),
        ({"stripe-signature": "garbage"}, BODY, NOW, "malformed_signature"),
        ({"stripe-signature": f"v1={sig(BODY)}"}, BODY, NOW, "malformed_signature"),
        ({"stripe-signature": f"t=abc,v1={sig(BODY)}"}, BODY, NOW, "malformed_signature"),
        ({"stripe-signature": f"t=-5,v1={sig(BODY)}"}, BODY, NOW, "malformed_signature"),
        ({"stripe-signature": f"t={NOW},t={NOW},v1={sig(BODY)}"}, BODY, NOW, "malformed_signature"),
        ({"stripe-signature": f"t={NOW}"}, BODY, NOW, "malformed_signature"),
        ({"stripe-signature": f"t={NOW},v0={sig(BODY)}"}, BODY, NOW, "malformed_signature"),
        (header(secret="whsec_other"), BODY, NOW, "no_matching_signature"),
        (header(), BODY.replace(b"in_1", b"in_2"), NOW, "no_matching_signature"),
        (header(t=NOW - 301), BODY, NOW, "timestamp_out_of_tolerance"),
        (header(t=NOW + 301), BODY, NOW, "timestamp_out_of_tolerance"),
        ({"stripe-signature": "t=1," + "v1=00," * 100}, BODY, NOW, "malformed_signature"),
        ({"stripe-signature": "t=1,v1=" + "a" * 10_000}, BODY, NOW, "malformed_signature"),
    ],
)
def test_rejections(headers: dict[str, str], body: bytes, now: int, reason: str) -> None:
    with pytest.raises(SignatureError) as info:
        provider.verify(headers, body, now, EP)
    assert info.value.reason == reason
    assert STRIPE_SECRET not in str(info.value)


def test_tolerance_edges_and_rotation() -> None:
    assert provider.verify(header(t=NOW - 300), BODY, NOW, EP)
    assert provider.verify(header(t=NOW + 300), BODY, NOW, EP)
    old = provider.verify(header(secret=STRIPE_SECRET_OLD), BODY, NOW, EP)
    assert old.verification == f"stripe-v1:key={fingerprint(STRIPE_SECRET_OLD)}"


def test_any_v1_matches_and_v0_is_ignored() -> None:
    h = f"t={NOW},v1={'0' * 64},v0={sig(BODY)},v1={sig(BODY, STRIPE_SECRET_OLD)}"
    assert provider.verify({"stripe-signature": h}, BODY, NOW, EP).event_id == "evt_1"


def test_no_secrets_configured_rejects() -> None:
    bare = EndpointSettings(provider="stripe")
    with pytest.raises(SignatureError):
        provider.verify(header(), BODY, NOW, bare)


@pytest.mark.parametrize(
    ("body", "reason"),
    [
        (b"not json", "invalid_json"),
        (b"\xff\xfe", "invalid_json"),
        (b"[1, 2]", "not_an_object"),
        (b'"evt"', "not_an_object"),
        (b'{"id": "evt_1", "type": "x"}', "missing_field"),
        (b'{"id": "", "type": "x", "created": 1}', "invalid_field"),
        (b'{"id": "evt_1", "type": "x", "created": -1}', "invalid_field"),
        (b'{"id": "evt_1", "type": "x", "created": true}', "invalid_field"),
        (b'{"id": 5, "type": "x", "created": 1}', "invalid_field"),
        (b'{"id": "e", "type": "x", "created": "yesterday"}', "invalid_field"),
        (b'{"id": "e", "type": "x", "created": "2024-01-01T00:00:00"}', "invalid_field"),
    ],
)
def test_envelope_errors_after_valid_signature(body: bytes, reason: str) -> None:
    with pytest.raises(InvalidEnvelope) as info:
        provider.verify(header(body), body, NOW, EP)
    assert info.value.reason == reason


def test_connect_account_overrides_endpoint_account() -> None:
    body = BODY[:-1] + b',"account":"acct_connected"}'
    assert provider.verify(header(body), body, NOW, EP).account == "acct_connected"


def test_thin_event() -> None:
    body = (
        b'{"id":"evt_test_65R9","object":"v2.core.event","type":"v1.billing.meter.error_report_triggered",'
        b'"livemode":false,"created":"2024-09-17T06:20:52.246Z",'
        b'"related_object":{"id":"mtr_123","type":"billing.meter","url":"/v1/billing/meters/mtr_123"}}'
    )
    v = provider.verify(header(body), body, NOW, EP)
    assert v.event_created == 1726554052
    assert v.object_id == "mtr_123"
    assert v.event_type == "v1.billing.meter.error_report_triggered"
    assert v.account == "acct_default"
    with_context = body[:-1] + b',"context":"acct_ctx"}'
    assert provider.verify(header(with_context), with_context, NOW, EP).account == "acct_ctx"


@pytest.mark.parametrize("name", stripe_fixture_names())
def test_every_fixture_envelope(name: str) -> None:
    body = fixture_bytes("stripe", name)
    event = msgspec.json.decode(body)
    v = provider.verify(header(body), body, NOW, EP)
    assert v.event_id == event["id"]
    assert v.event_type == event["type"]
    assert v.event_created == event["created"]
    assert v.object_id == event["data"]["object"].get("id")


def test_parsing_a_huge_header_is_bounded() -> None:
    h = "t=1," + "v1=ab," * 1_000_000
    start = time.perf_counter()
    with pytest.raises(SignatureError):
        provider.verify({"stripe-signature": h}, BODY, NOW, EP)
    assert time.perf_counter() - start < 0.05


# --- the official library as an oracle -------------------------------------------------------


def official_accepts(
    body: bytes, h: str, secret: str, now: int, monkeypatch: pytest.MonkeyPatch
) -> bool:
    monkeypatch.setattr(stripe_webhook, "time", SimpleNamespace(time=lambda: now))
    try:
        stripe.WebhookSignature.verify_header(body, h, secret, tolerance=300)
    except stripe.SignatureVerificationError:
        return False
    return True


def ours_accepts(body: bytes, h: str, secret: str, now: int) -> bool:
    ep = EndpointSettings(provider="stripe", secrets=(Secret(secret),))
    try:
        provider.verify({"stripe-signature": h}, body, now, ep)
    except VerificationError:
        return False
    return True


_secret = st.text("abcdefghijklmnopqrstuvwxyz0123456789", min_size=1, max_size=40).map(
    lambda s: "whsec_" + s
)
_body = st.dictionaries(st.sampled_from(["a", "b", "c"]), st.integers() | st.text(max_size=20)).map(
    lambda d: msgspec.json.encode({"id": "evt_x", "type": "t", "created": 1, **d})
)


@settings(max_examples=200, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(
    body=_body,
    secret=_secret,
    other=_secret,
    skew=st.integers(-300, 1000),  # t = NOW - skew: up to 300 s ahead
    sign_with_other=st.booleans(),
    tamper=st.booleans(),
    extra_v1=st.integers(0, 3),
    with_v0=st.booleans(),
)
def test_agrees_with_official_library(
    monkeypatch: pytest.MonkeyPatch,
    body: bytes,
    secret: str,
    other: str,
    skew: int,
    sign_with_other: bool,
    tamper: bool,
    extra_v1: int,
    with_v0: bool,
) -> None:
    """Same verdict as stripe.WebhookSignature.verify_header on generated cases. (Timestamps more
    than the tolerance in the FUTURE are excluded: the library accepts them, we refuse them.)"""
    t = NOW - skew
    signer = other if sign_with_other else secret
    parts = [f"t={t}"] + [f"v1={'f' * 64}"] * extra_v1 + [f"v1={sig(body, signer, t)}"]
    if with_v0:
        parts.append(f"v0={sig(body, secret, t)}")
    h = ",".join(parts)
    sent = body + b" " if tamper else body
    official = official_accepts(sent, h, secret, NOW, monkeypatch)
    assert ours_accepts(sent, h, secret, NOW) == official


def test_official_construct_event_accepts_what_we_accept() -> None:
    for name in stripe_fixture_names()[:10]:
        body = fixture_bytes("stripe", name)
        t = int(time.time())
        h = f"t={t},v1={sig(body, STRIPE_SECRET, t)}"
        assert ours_accepts(body, h, STRIPE_SECRET, t)
        event = stripe.Webhook.construct_event(body, h, STRIPE_SECRET)
        assert event.id == msgspec.json.decode(body)["id"]


def test_future_timestamp_is_where_we_differ(monkeypatch: pytest.MonkeyPatch) -> None:
    t = NOW + 3600
    h = f"t={t},v1={sig(BODY, STRIPE_SECRET, t)}"
    assert official_accepts(BODY, h, STRIPE_SECRET, NOW, monkeypatch)
    assert not ours_accepts(BODY, h, STRIPE_SECRET, NOW)


# --- nothing but our own error ---------------------------------------------------------------


@settings(max_examples=500)
@given(
    headers=st.dictionaries(
        st.sampled_from(["stripe-signature", "content-type", "x"]), st.text(max_size=300)
    ),
    body=st.binary(max_size=300),
    now=st.floats(allow_nan=True, allow_infinity=True) | st.integers(-(2**70), 2**70),
)
def test_verify_raises_only_verification_errors(
    headers: dict[str, str], body: bytes, now: float
) -> None:
    with contextlib.suppress(VerificationError, InvalidEnvelope):
        provider.verify(headers, body, now, EP)


@settings(max_examples=300)
@given(
    entries=st.lists(
        st.tuples(st.sampled_from(["t", "v1", "v0", "", "x", "t "]), st.text(max_size=70)),
        max_size=10,
    ),
    body=st.binary(max_size=100),
)
def test_structured_headers_raise_only_our_errors(
    entries: list[tuple[str, str]], body: bytes
) -> None:
    h = ",".join(f"{k}={v}" for k, v in entries)
    with contextlib.suppress(VerificationError, InvalidEnvelope):
        provider.verify({"stripe-signature": h}, body, NOW, EP)


@settings(max_examples=300)
@given(body=st.binary(max_size=400))
def test_signed_junk_bodies_raise_only_envelope_errors(body: bytes) -> None:
    with contextlib.suppress(InvalidEnvelope):
        provider.verify(header(body), body, NOW, EP)
