"""Run summaries and what changed since the previous run (pure accumulators)."""

from __future__ import annotations

from processors.coexist.model import Check, PairResult
from processors.coexist.report import Accumulator, signature, totals_problems
from processors.model import Subscription, SubscriptionItem


def result(key: str, verdict: str = "match", *kinds: str) -> PairResult:
    return PairResult(
        pair_key=key,
        kind="subscription",
        billing_account="ba",
        source="s",
        target="t",
        verdict=verdict,  # type: ignore[arg-type]
        checks=tuple(Check(kind=k, verdict=verdict) for k in kinds),  # type: ignore[arg-type]
    )


def sub(currency: str, amount: int, status: str = "active") -> Subscription:
    return Subscription(
        status=status,
        currency=currency,
        items=(SubscriptionItem(price_id="p", unit_amount=amount, interval="year"),),
        mrr=amount // 12 if status == "active" else 0,
    )


def test_totals_per_currency_and_problems() -> None:
    acc = Accumulator()
    acc.add(result("a"), sub("EUR", 12_000), sub("EUR", 12_000, "trialing"))
    acc.add(result("b", "mismatch", "missing_target"), sub("USD", 2_400), None)
    s = acc.summary()
    assert (s.pairs, s.subscriptions, s.matched, s.mismatched) == (2, 2, 1, 1)
    eur, usd = s.totals
    assert (eur.currency, eur.source_count, eur.target_count) == ("EUR", 1, 1)
    assert (eur.source_mrr, eur.target_mrr, eur.source_priced_mrr, eur.target_priced_mrr) == (
        1_000,
        0,
        1_000,
        1_000,
    )
    assert (usd.source_count, usd.target_count, usd.source_priced_mrr) == (1, 0, 200)
    assert totals_problems(s) == [
        "USD: 1 subscriptions on the source, 0 on the target",
        "USD: priced MRR 200 on the source, 0 on the target (minor units)",
    ]


def test_changes_since_the_previous_run() -> None:
    previous = {
        "fixed": signature(result("fixed", "mismatch", "price")),
        "same": signature(result("same", "mismatch", "price")),
        "worse": signature(result("worse", "explained", "status")),
        "unlinked": signature(result("unlinked", "mismatch", "price")),
    }
    acc = Accumulator(previous)
    acc.add(result("fixed"))
    acc.add(result("same", "mismatch", "price"))
    acc.add(result("worse", "mismatch", "status", "mrr"))
    acc.add(result("fresh", "mismatch", "currency"))
    acc.add(result("fine"))
    c = acc.changes(7)
    assert (c.previous_run_id, c.new, c.resolved, c.changed, c.unchanged, c.gone) == (
        7,
        1,
        1,
        1,
        2,
        1,
    )
    assert c.samples == {
        "resolved": ["fixed"],
        "changed": ["worse"],
        "new": ["fresh"],
        "gone": ["unlinked"],
    }
