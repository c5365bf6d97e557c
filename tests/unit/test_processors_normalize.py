"""Normalisation of every real (and derived) provider payload, table-driven, no I/O."""

from __future__ import annotations

import copy
import json
from pathlib import Path
from typing import Any

import msgspec
import pytest

from processors.errors import NormalisationError
from processors.model import CreditNote, Customer, Invoice, Payment, Refund, Subscription
from processors.normalize import chargebee, normalize, stripe
from tests.conftest import FIXTURES, stripe_fixture_names

CB_DIR = Path(__file__).resolve().parents[1] / "fixtures" / "chargebee"


def _stripe(name: str) -> dict[str, Any]:
    data: dict[str, Any] = json.loads((FIXTURES / "stripe" / name).read_text())
    return data


@pytest.mark.parametrize("name", stripe_fixture_names())
def test_every_stripe_fixture_is_mapped_or_ignored(name: str) -> None:
    body = (FIXTURES / "stripe" / name).read_bytes()
    event = normalize("stripe", body, account="acct_1")
    data = _stripe(name)
    if data["type"] not in stripe.EVENTS:
        assert event is None
        return
    assert event is not None
    assert event.event_id == data["id"]
    assert event.account == "acct_1"
    (update,) = event.updates
    assert update.object_type == stripe.EVENTS[data["type"]][0]
    assert update.object_id == data["data"]["object"]["id"]
    assert update.version.startswith(f"{data['created']:012d}.")
    assert update.version.endswith("." + data["id"])


STRIPE_TABLE: list[tuple[str, type, dict[str, Any]]] = [
    ("customer_updated.json", Customer, {"email": "billz@supabase.io", "currency": "USD"}),
    ("subscription_created.json", Subscription, {"status": "active", "currency": "USD", "mrr": 0}),
    ("subscription_deleted.json", Subscription, {"status": "canceled", "ended_at": 1623149102}),
    ("invoice_paid.json", Invoice, {"status": "paid", "paid_at": 1642649110}),
    ("invoice_finalized.json", Invoice, {"status": "open", "number": "B1AB464C-0181"}),
    ("charge_succeeded.json", Payment, {"kind": "charge", "status": "succeeded", "amount": 3000}),
    ("charge_refunded.json", Payment, {"amount": 2500, "amount_refunded": 2500}),
    (
        "charge_failed.json",
        Payment,
        {"status": "failed", "failure_reason": "Your card does not support this type of purchase."},
    ),
    ("payment_intent_succeeded.json", Payment, {"kind": "payment_intent", "amount": 1000}),
    ("refund_created.json", Refund, {"payment_id": "ch_1NirD82eZvKYlo2CIvbtLWuY", "amount": 1000}),
    ("credit_note_created.json", CreditNote, {"status": "issued", "total": 1099}),
]


@pytest.mark.parametrize(("name", "kind", "fields"), STRIPE_TABLE)
def test_stripe_fields(name: str, kind: type, fields: dict[str, Any]) -> None:
    event = normalize("stripe", (FIXTURES / "stripe" / name).read_bytes(), account="a")
    assert event is not None
    body = event.updates[0].body
    assert isinstance(body, kind)
    for key, value in fields.items():
        assert getattr(body, key) == value, key


def test_stripe_deleted_events_mark_the_object_deleted() -> None:
    for name in ("customer_deleted.json", "invoice_deleted.json"):
        event = normalize("stripe", (FIXTURES / "stripe" / name).read_bytes(), account="a")
        assert event is not None
        assert event.updates[0].deleted


def test_stripe_2025_api_reads_periods_from_items() -> None:
    data = _stripe("subscription_updated.json")
    obj = data["data"]["object"]
    obj.pop("current_period_start")
    obj.pop("current_period_end")
    obj["items"]["data"][0]["current_period_start"] = 1_800_000_000
    obj["items"]["data"][0]["current_period_end"] = 1_802_592_000
    obj["items"]["data"][0]["price"]["unit_amount"] = 1999
    obj["items"]["data"][0]["quantity"] = 3
    event = normalize("stripe", msgspec.json.encode(data), account="a")
    assert event is not None
    sub = event.updates[0].body
    assert isinstance(sub, Subscription)
    assert (sub.current_period_start, sub.current_period_end) == (1_800_000_000, 1_802_592_000)
    assert sub.mrr == 1999 * 3


def test_stripe_lifecycle_rank_orders_same_second_events() -> None:
    def version(type_: str) -> str:
        data = _stripe("invoice_paid.json")
        data["type"] = type_
        data["created"] = 1_700_000_000
        event = normalize("stripe", msgspec.json.encode(data), account="a")
        assert event is not None
        return event.updates[0].version

    ordered = [
        "invoice.created",
        "invoice.finalized",
        "invoice.paid",
        "invoice.voided",
        "invoice.deleted",
    ]
    versions = [version(t) for t in ordered]
    assert versions == sorted(versions)


@pytest.mark.parametrize(
    "body",
    [
        b"not json",
        b'{"id": "evt_1", "type": "customer.updated"}',
        json.dumps(
            {
                "id": "e",
                "type": "customer.updated",
                "created": 1,
                "data": {"object": {"email": "x"}},
            }
        ).encode(),
        json.dumps(
            {
                "id": "e",
                "type": "charge.succeeded",
                "created": 1,
                "data": {"object": {"id": "ch", "amount": 1.5, "currency": "usd", "status": "x"}},
            }
        ).encode(),
    ],
)
def test_stripe_bad_payloads_raise_normalisation_error(body: bytes) -> None:
    with pytest.raises(NormalisationError):
        normalize("stripe", body, account="a")


def test_floats_never_become_money() -> None:
    data = _stripe("charge_succeeded.json")
    data["data"]["object"]["amount"] = 30.5
    with pytest.raises(NormalisationError):
        normalize("stripe", msgspec.json.encode(data), account="a")


CB_NAMES = sorted(p.stem for p in CB_DIR.glob("*.json"))


@pytest.mark.parametrize("event_type", CB_NAMES)
def test_every_chargebee_fixture_is_mapped_or_ignored(event_type: str) -> None:
    body = (CB_DIR / f"{event_type}.json").read_bytes()
    event = normalize("chargebee", body, account="site")
    if event_type not in chargebee.EVENTS:
        assert event is None
        return
    assert event is not None
    assert event.event_type == event_type
    main = event.updates[0]
    assert not main.related
    assert all(u.related for u in event.updates[1:])
    assert len(main.version) == 16
    assert main.deleted == event_type.endswith("_deleted")


def test_chargebee_real_fixture_wrapped_and_unwrapped() -> None:
    raw = (FIXTURES / "chargebee" / "event_subscription_created_retrieve.json").read_bytes()
    wrapped = normalize("chargebee", raw, account="s")
    inner = normalize("chargebee", msgspec.json.encode(json.loads(raw)["event"]), account="s")
    assert wrapped == inner
    assert wrapped is not None
    assert [u.object_type for u in wrapped.updates] == ["subscription", "customer", "invoice"]


CB_TABLE: list[tuple[str, dict[str, Any]]] = [
    ("subscription_created", {"status": "active", "mrr": 11667, "currency": "INR"}),
    ("subscription_changed", {"mrr": 2 * 11667}),
    ("subscription_paused", {"status": "paused", "mrr": 0}),
    ("subscription_cancellation_scheduled", {"status": "active", "cancel_at_period_end": True}),
    ("subscription_cancelled", {"status": "canceled", "mrr": 0}),
    ("subscription_trial_end_reminder", {"status": "trialing", "mrr": 0}),
    ("invoice_generated", {"status": "open", "amount_due": 11667}),
    ("invoice_updated", {"status": "paid", "amount_paid": 11667}),
    ("payment_succeeded", {"status": "succeeded", "amount": 11667, "invoice_id": "203"}),
    ("payment_failed", {"status": "failed", "failure_reason": "Card declined"}),
    ("payment_refunded", {"status": "succeeded", "payment_id": "txn_16BPgETyVrQXVGh4"}),
    ("refund_initiated", {"status": "pending"}),
    ("credit_note_created", {"status": "refund_due", "total": 11667, "invoice_id": "203"}),
    ("credit_note_updated", {"status": "refunded"}),
    ("customer_changed", {"email": "sarah@example.com", "name": "Sarah Lee"}),
]


@pytest.mark.parametrize(("event_type", "fields"), CB_TABLE)
def test_chargebee_fields(event_type: str, fields: dict[str, Any]) -> None:
    event = normalize("chargebee", (CB_DIR / f"{event_type}.json").read_bytes(), account="s")
    assert event is not None
    body = event.updates[0].body
    for key, value in fields.items():
        assert getattr(body, key) == value, key


def test_chargebee_missing_main_resource_is_a_dead_letter() -> None:
    data = json.loads((CB_DIR / "invoice_generated.json").read_text())
    del data["content"]["invoice"]
    with pytest.raises(NormalisationError, match="no invoice"):
        normalize("chargebee", msgspec.json.encode(data), account="s")


def test_chargebee_bad_resource_is_a_dead_letter() -> None:
    data = json.loads((CB_DIR / "subscription_changed.json").read_text())
    bad = copy.deepcopy(data)
    bad["content"]["subscription"]["resource_version"] = "soon"
    with pytest.raises(NormalisationError):
        normalize("chargebee", msgspec.json.encode(bad), account="s")
    bad = copy.deepcopy(data)
    bad["content"]["subscription"]["status"] = "exploded"
    with pytest.raises(NormalisationError):
        normalize("chargebee", msgspec.json.encode(bad), account="s")
