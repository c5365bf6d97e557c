"""Values of provider migration: links, authority, checks and reports. Plain data, no I/O.

Times are unix seconds (like the billing state), money integer minor units with a currency.
Field names are part of stored JSON (run results) and of the API: add fields, never rename.
"""

from __future__ import annotations

from typing import Literal, get_args

import msgspec

__all__ = [
    "ACTIONS",
    "CHECK_KINDS",
    "LINK_KINDS",
    "PROVIDERS",
    "Action",
    "Check",
    "CheckKind",
    "CurrencyTotals",
    "LinkKind",
    "LinkLine",
    "PairResult",
    "PriceLine",
    "Provider",
    "Ref",
    "Side",
    "Verdict",
]

Provider = Literal["stripe", "chargebee"]
PROVIDERS: tuple[str, ...] = get_args(Provider)
LinkKind = Literal["customer", "subscription"]
LINK_KINDS: tuple[str, ...] = get_args(LinkKind)
Side = Literal["source", "target"]
Action = Literal["plan", "cutover", "rollback"]
ACTIONS: tuple[str, ...] = get_args(Action)
Verdict = Literal["match", "explained", "mismatch"]
CheckKind = Literal[
    "missing_source",
    "missing_target",
    "status",
    "currency",
    "price_unmapped",
    "price",
    "quantity",
    "amount",
    "interval",
    "mrr",
    "period_end",
    "trial_end",
    "cancel_at_period_end",
    "discount",
]
CHECK_KINDS: tuple[str, ...] = get_args(CheckKind)


class Ref(msgspec.Struct, frozen=True, kw_only=True):
    """One object in the billing state: provider, provider account (Stripe account, Chargebee
    site) and id; the key of ``processors.<table>``."""

    provider: str
    account: str
    id: str

    def __str__(self) -> str:
        return f"{self.provider}/{self.account}/{self.id}"


class LinkLine(msgspec.Struct, frozen=True, kw_only=True):
    """One parsed line of a link import (``line`` is where it was, for error messages)."""

    line: int
    kind: LinkKind
    cohort: str | None
    source: Ref
    target: Ref
    billing_account: str | None = None


class PriceLine(msgspec.Struct, frozen=True, kw_only=True):
    line: int
    source_provider: str
    source_price: str
    target_provider: str
    target_price: str


class Check(msgspec.Struct, frozen=True, kw_only=True):
    """One field compared on a linked pair. Only checks that are not a plain match are kept."""

    kind: CheckKind
    verdict: Verdict
    source: str | int | bool | None = None
    target: str | int | bool | None = None
    reason: str = ""


class PairResult(msgspec.Struct, frozen=True, kw_only=True):
    """The verdict on one linked pair: the worst of its checks (mismatch > explained > match)."""

    pair_key: str
    kind: LinkKind
    billing_account: str
    source: str
    target: str
    verdict: Verdict
    checks: tuple[Check, ...] = ()


class CurrencyTotals(msgspec.Struct, frozen=True, kw_only=True):
    """Subscriptions and their MRR on each side, in one currency.

    ``mrr`` is what the state says each side bills now (0 for a canceled or trialing one);
    ``priced_mrr`` is the monthly amount of the subscription's items whatever its status, the
    figure both sides must agree on.
    """

    currency: str
    source_count: int = 0
    target_count: int = 0
    source_mrr: int = 0
    target_mrr: int = 0
    source_priced_mrr: int = 0
    target_priced_mrr: int = 0
