"""What the normalisers keep for provider migration: metadata, discounts, creation time and the
service period of invoices (table-driven over real payloads with fields rewritten)."""

from __future__ import annotations

import copy
import json
from pathlib import Path
from typing import Any

import msgspec
import pytest

from processors.model import Customer, Discount, Invoice, Subscription
from processors.normalize import normalize
from processors.normalize._common import metadata_text, percent_hundredths
from tests.conftest import FIXTURES

CB_DIR = Path(__file__).resolve().parents[1] / "fixtures" / "chargebee"


def _stripe(name: str) -> dict[str, Any]:
    data: dict[str, Any] = json.loads((FIXTURES / "stripe" / name).read_text())
    return data


def _cb(name: str) -> dict[str, Any]:
    data: dict[str, Any] = json.loads((CB_DIR / name).read_text())
    return data


def _body(provider: str, event: dict[str, Any], index: int = 0) -> Any:
    ev = normalize(provider, msgspec.json.encode(event), account="a")
    assert ev is not None
    return ev.updates[index].body


def test_stripe_metadata_on_customer_and_subscription() -> None:
    cus = _body("stripe", _stripe("customer_updated.json"))
    assert isinstance(cus, Customer)
    assert cus.metadata == {"supabase_org_id": "35"}
    ev = _stripe("subscription_created.json")
    ev["data"]["object"]["metadata"] = {"chargebee_subscription_id": "AzZ1"}
    sub = _body("stripe", ev)
    assert isinstance(sub, Subscription)
    assert sub.metadata == {"chargebee_subscription_id": "AzZ1"}
    assert sub.created_at == ev["data"]["object"]["created"]


@pytest.mark.parametrize(
    ("discount", "discounts", "expected"),
    [
        (None, None, ()),
        (
            {"id": "di_1", "coupon": {"id": "SPRING", "percent_off": 12.5}},
            ["di_1"],
            (Discount(id="SPRING", percent_off=1250),),
        ),
        (
            {"id": "di_2", "coupon": {"id": "FIVE", "amount_off": 500, "currency": "eur"}},
            None,
            (Discount(id="FIVE", amount_off=500, currency="EUR"),),
        ),
        (None, ["di_3"], (Discount(id="di_3"),)),
        (
            None,
            [{"id": "di_4", "coupon": {"id": "X", "percent_off": 33.33}}],
            (Discount(id="X", percent_off=3333),),
        ),
    ],
)
def test_stripe_discounts(
    discount: dict[str, Any] | None, discounts: list[Any] | None, expected: tuple[Discount, ...]
) -> None:
    ev = _stripe("subscription_created.json")
    ev["data"]["object"]["discount"] = discount
    ev["data"]["object"]["discounts"] = discounts
    assert _body("stripe", ev).discounts == expected


def test_stripe_invoice_period_from_lines_else_invoice() -> None:
    ev = _stripe("invoice_paid.json")
    inv = _body("stripe", ev)
    assert isinstance(inv, Invoice)
    line = ev["data"]["object"]["lines"]["data"][0]["period"]
    assert (inv.period_start, inv.period_end) == (line["start"], line["end"])
    ev["data"]["object"]["lines"]["data"] = []
    inv = _body("stripe", ev)
    obj = ev["data"]["object"]
    assert (inv.period_start, inv.period_end) == (obj["period_start"], obj["period_end"])


def test_chargebee_meta_data_coupons_discounts_and_invoice_period() -> None:
    ev = copy.deepcopy(_cb("subscription_created.json"))
    ev["content"]["customer"]["meta_data"] = {"stripe_customer_id": "cus_1", "n": 3}
    ev["content"]["subscription"]["meta_data"] = {"stripe_subscription_id": "sub_1"}
    ev["content"]["subscription"]["coupons"] = [{"coupon_id": "WELCOME"}, {"coupon_id": "D1"}]
    ev["content"]["subscription"]["discounts"] = [
        {"id": "D1", "type": "percentage", "percentage": 10.0},
        {"id": "D2", "type": "fixed_amount", "amount": 250, "currency_code": "eur"},
    ]
    sub = _body("chargebee", ev)
    assert isinstance(sub, Subscription)
    assert sub.metadata == {"stripe_subscription_id": "sub_1"}
    assert sub.discounts == (
        Discount(id="D1", percent_off=1000),
        Discount(id="D2", amount_off=250, currency="EUR"),
        Discount(id="WELCOME"),
    )
    assert sub.created_at == ev["content"]["subscription"]["created_at"]
    cus = _body("chargebee", ev, 1)
    assert isinstance(cus, Customer)
    assert cus.metadata == {"stripe_customer_id": "cus_1", "n": "3"}
    inv = _body("chargebee", _cb("invoice_generated.json"))
    assert isinstance(inv, Invoice)
    assert (inv.period_start, inv.period_end) == (1702578600, 1705256999)


@pytest.mark.parametrize(
    ("raw", "expected"),
    [
        (None, {}),
        (
            {"a": "x", "b": 1, "c": True, "d": None, "e": {"f": [1]}},
            {"a": "x", "b": "1", "c": "true", "e": '{"f":[1]}'},
        ),
    ],
)
def test_metadata_text(raw: dict[str, Any] | None, expected: dict[str, str]) -> None:
    assert metadata_text(raw) == expected


@pytest.mark.parametrize(
    ("value", "expected"), [(None, None), (10, 1000), (12.5, 1250), (33.33, 3333), ("7.25", 725)]
)
def test_percent_hundredths_is_exact(value: Any, expected: int | None) -> None:
    assert percent_hundredths(value) == expected
