"""Chargebee verification (HTTP Basic) and envelope decoding, from tables and hypothesis."""

from __future__ import annotations

import base64
import contextlib

import msgspec
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from ingest.errors import CredentialsError, InvalidEnvelope, VerificationError
from ingest.providers import chargebee as provider
from ledgerhook.settings import EndpointSettings, Secret
from tests.conftest import CHARGEBEE_AUTH, fixture_bytes

EP = EndpointSettings(
    provider="chargebee",
    account="acme",
    basic_auth=(Secret("old-user:old:pass"), Secret(CHARGEBEE_AUTH)),
)
EVENT = msgspec.json.decode(fixture_bytes("chargebee", "event_subscription_created_retrieve.json"))[
    "event"
]
BODY = msgspec.json.encode(EVENT)


def auth(pair: str = CHARGEBEE_AUTH) -> dict[str, str]:
    return {"authorization": "Basic " + base64.b64encode(pair.encode()).decode()}


def test_fixture_accepted() -> None:
    v = provider.verify(auth(), BODY, 0, EP)
    assert (v.provider, v.account, v.event_id) == ("chargebee", "acme", EVENT["id"])
    assert (v.event_type, v.event_created) == ("subscription_created", EVENT["occurred_at"])
    assert v.object_id == EVENT["content"]["subscription"]["id"]
    assert v.verification == "chargebee-basic:user=cbhook;pair=2"
    assert "s3cret-pass" not in v.verification


def test_password_with_colon_and_second_pair() -> None:
    v = provider.verify(auth("old-user:old:pass"), BODY, 0, EP)
    assert v.verification == "chargebee-basic:user=old-user;pair=1"


@pytest.mark.parametrize(
    ("headers", "reason"),
    [
        ({}, "missing_credentials"),
        ({"authorization": ""}, "missing_credentials"),
        ({"authorization": "Bearer x"}, "malformed_credentials"),
        ({"authorization": "Basic"}, "malformed_credentials"),
        ({"authorization": "Basic ***"}, "malformed_credentials"),
        ({"authorization": "Basic é"}, "malformed_credentials"),
        (
            {"authorization": "Basic " + base64.b64encode(b"nocolon").decode()},
            "malformed_credentials",
        ),
        ({"authorization": "Basic " + "QUJD" * 2000}, "malformed_credentials"),
        (auth("cbhook:wrong"), "bad_credentials"),
        (auth("other:s3cret-pass"), "bad_credentials"),
        (auth("cbhook:"), "bad_credentials"),
        (auth(":"), "bad_credentials"),
    ],
)
def test_credential_rejections(headers: dict[str, str], reason: str) -> None:
    with pytest.raises(CredentialsError) as info:
        provider.verify(headers, BODY, 0, EP)
    assert info.value.reason == reason
    assert "s3cret" not in str(info.value)


def test_scheme_is_case_insensitive() -> None:
    h = {"authorization": "basic " + base64.b64encode(CHARGEBEE_AUTH.encode()).decode()}
    assert provider.verify(h, BODY, 0, EP).event_id == EVENT["id"]


@pytest.mark.parametrize(
    ("body", "reason"),
    [
        (b"{", "invalid_json"),
        (b"[]", "not_an_object"),
        (b'{"id": "ev_1", "event_type": "x"}', "missing_field"),
        (b'{"id": "ev_1", "event_type": "x", "occurred_at": "soon"}', "invalid_field"),
        (b'{"id": "ev_1", "event_type": "x", "occurred_at": 1, "content": []}', "invalid_field"),
    ],
)
def test_envelope_errors(body: bytes, reason: str) -> None:
    with pytest.raises(InvalidEnvelope) as info:
        provider.verify(auth(), body, 0, EP)
    assert info.value.reason == reason


def _content(**resources: object) -> dict[str, msgspec.Raw]:
    return {k: msgspec.Raw(msgspec.json.encode(v)) for k, v in resources.items()}


@pytest.mark.parametrize(
    ("event_type", "content", "expected"),
    [
        ("subscription_changed", _content(customer={"id": "c"}, subscription={"id": "s"}), "s"),
        ("customer_changed", _content(subscription={"id": "s"}, customer={"id": "c"}), "c"),
        ("invoice_generated", _content(invoice={"id": "i"}, customer={"id": "c"}), "i"),
        ("payment_succeeded", _content(invoice={"id": "i"}, transaction={"id": "t"}), "t"),
        ("payment_refunded", _content(transaction={"id": "t"}, credit_note={"id": "n"}), "t"),
        ("credit_note_created", _content(credit_note={"id": "n"}, invoice={"id": "i"}), "n"),
        ("payment_source_added", _content(customer={"id": "c"}, payment_source={"id": "p"}), "p"),
        ("something_new", _content(thing={"id": "x"}, other={"id": "y"}), "x"),
        ("subscription_created", _content(subscription=[1], customer={"id": "c"}), "c"),
        ("subscription_created", _content(), None),
        ("unknown", _content(a=1, b={"no": "id"}), None),
    ],
)
def test_main_resource(
    event_type: str, content: dict[str, msgspec.Raw], expected: str | None
) -> None:
    assert provider.main_resource(event_type, content) == expected


@settings(max_examples=500)
@given(
    authorization=st.one_of(
        st.text(max_size=200),
        st.binary(max_size=100).map(lambda b: "Basic " + base64.b64encode(b).decode()),
    ),
    body=st.binary(max_size=300),
)
def test_verify_raises_only_our_errors(authorization: str, body: bytes) -> None:
    with contextlib.suppress(VerificationError, InvalidEnvelope):
        provider.verify({"authorization": authorization}, body, 0, EP)


@settings(max_examples=300)
@given(
    body=st.binary(max_size=400)
    | st.recursive(
        st.none() | st.booleans() | st.integers() | st.text(max_size=10),
        lambda inner: (
            st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=8), inner, max_size=4)
        ),
        max_leaves=20,
    ).map(msgspec.json.encode)
)
def test_authenticated_junk_raises_only_envelope_errors(body: bytes) -> None:
    with contextlib.suppress(InvalidEnvelope):
        provider.verify(auth(), body, 0, EP)
