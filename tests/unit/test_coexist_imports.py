"""Link and price imports: good files parse, each bad line is named by its number (pure)."""

from __future__ import annotations

import pytest

from processors.coexist.errors import InvalidImport
from processors.coexist.imports import parse_links, parse_prices
from processors.coexist.model import Ref

ACCOUNTS = {"stripe": "acct_1", "chargebee": "acme"}
HEADER = "cohort,kind,source_provider,source_id,target_provider,target_id\n"


def test_csv_links_with_defaults_and_any_column_order() -> None:
    data = (
        b"target_id,source_id,source_provider,target_provider,cohort,kind,target_account\n"
        b"cus_1,AzZ1,chargebee,stripe,wave-1,,\n"
        b"\n"
        b"sub_1,AzZ1s,Chargebee,Stripe,,subscription,acct_2\n"
    )
    lines = parse_links(data, "csv", default_accounts=ACCOUNTS)
    assert [(ln.line, ln.kind, ln.cohort) for ln in lines] == [
        (2, "customer", "wave-1"),
        (4, "subscription", None),
    ]
    assert lines[0].source == Ref(provider="chargebee", account="acme", id="AzZ1")
    assert lines[1].target == Ref(provider="stripe", account="acct_2", id="sub_1")


def test_json_links() -> None:
    data = b'{"links": [{"cohort": "w", "source_provider": "stripe", "source_id": "cus_1", "target_provider": "chargebee", "target_id": "X", "billing_account": "crm-42"}]}'
    (line,) = parse_links(data, "json", default_accounts=ACCOUNTS)
    assert (line.source.provider, line.target.account, line.billing_account) == (
        "stripe",
        "acme",
        "crm-42",
    )


@pytest.mark.parametrize(
    ("body", "message"),
    [
        (
            HEADER + "w,customer,chargebee,A,stripe,cus_1\nw,customer,paypal,B,stripe,cus_2\n",
            "line 3: source_provider: unknown provider 'paypal'",
        ),
        (HEADER + "w,customer,chargebee,A,stripe\n", "line 2: expected 6 fields, got 5"),
        (
            HEADER + "w,customer,stripe,A,stripe,cus_1\n",
            "line 2: source and target are the same provider",
        ),
        (HEADER + "\n\nw,gizmo,chargebee,A,stripe,cus_1\n", "line 4: kind 'gizmo'"),
        (
            HEADER + ",customer,chargebee,A,stripe,cus_1\n",
            "line 2: cohort is required for a customer link",
        ),
        (HEADER + "w x,customer,chargebee,A,stripe,cus_1\n", "line 2: cohort 'w x'"),
        (HEADER + 'w,customer,chargebee,"A,stripe,cus_1\n', "malformed CSV"),
        ("cohort,source_provider,source_id,target_provider\n", "line 1: header must name"),
        (HEADER, "nothing to import"),
        ("", "line 1: empty file"),
    ],
)
def test_bad_csv_names_the_line(body: str, message: str) -> None:
    with pytest.raises(InvalidImport) as info:
        parse_links(body.encode(), "csv", default_accounts=ACCOUNTS)
    assert message in str(info.value)


def test_invalid_utf8_names_the_line() -> None:
    body = (
        HEADER.encode()
        + b"w,customer,chargebee,A,stripe,cus_1\nw,customer,chargebee,\xff,stripe,c\n"
    )
    with pytest.raises(InvalidImport, match="line 3: not valid UTF-8"):
        parse_links(body, "csv", default_accounts=ACCOUNTS)


def test_missing_default_account() -> None:
    with pytest.raises(InvalidImport, match="source_account is required"):
        parse_links(
            (HEADER + "w,customer,chargebee,A,stripe,cus_1\n").encode(),
            "csv",
            default_accounts={"stripe": "a"},
        )


@pytest.mark.parametrize(
    ("body", "message"),
    [
        (b"{", "not JSON"),
        (b'{"x": 1}', "expected a list"),
        (b'[{"source_provider": "stripe"}]', "item 1: missing source_id"),
        (
            b'[{"source_provider": "stripe", "source_id": "a", "target_provider": "chargebee", "target_id": "b", "cohort": "w", "extra": "x"}]',
            "item 1: unknown field(s) extra",
        ),
        (b"[1]", "item 1: expected an object of strings"),
    ],
)
def test_bad_json_names_the_item(body: bytes, message: str) -> None:
    with pytest.raises(InvalidImport) as info:
        parse_links(body, "json", default_accounts=ACCOUNTS)
    assert message in str(info.value)


def test_prices() -> None:
    data = b"source_provider,source_price,target_provider,target_price\nchargebee,team-EUR-monthly,stripe,price_1\n"
    (p,) = parse_prices(data, "csv")
    assert (p.line, p.source_price, p.target_price) == (2, "team-EUR-monthly", "price_1")
    with pytest.raises(InvalidImport, match="line 2: source and target are the same provider"):
        parse_prices(data.replace(b"chargebee", b"stripe"), "csv")
