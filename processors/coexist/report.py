"""A verification run's summary and what changed since the previous run. Pure accumulators.

Pairs stream through :class:`Accumulator` one page at a time: it keeps counts and per-currency
totals (constant memory) and, for the diff, only the previous run's *non-matching* pairs (a pair
that matched before and matches now needs no memory). A pair's signature is its verdict and the
kinds of its non-matching checks; the diff sorts each pair into new, resolved, changed or
unchanged, and previous problems whose pair is no longer linked into gone.
"""

from __future__ import annotations

from collections.abc import Mapping

import msgspec

from processors.coexist.compare import priced_mrr
from processors.coexist.model import CurrencyTotals, PairResult, Verdict
from processors.model import Subscription

__all__ = ["Accumulator", "Changes", "RunSummary", "Signature", "totals_problems"]

Signature = tuple[Verdict, tuple[str, ...]]
SAMPLE = 20


class RunSummary(msgspec.Struct, frozen=True, kw_only=True):
    pairs: int = 0
    customers: int = 0
    subscriptions: int = 0
    matched: int = 0
    explained: int = 0
    mismatched: int = 0
    # Non-matching checks by kind (explained ones included).
    by_kind: dict[str, int] = {}
    totals: tuple[CurrencyTotals, ...] = ()


class Changes(msgspec.Struct, frozen=True, kw_only=True):
    previous_run_id: int | None
    new: int = 0
    resolved: int = 0
    changed: int = 0
    unchanged: int = 0
    gone: int = 0
    # A few pair keys of each kind of change (the run's results have all of them).
    samples: dict[str, list[str]] = {}


def signature(r: PairResult) -> Signature:
    return r.verdict, tuple(sorted({c.kind for c in r.checks}))


class _Totals:
    __slots__ = ("count", "mrr", "priced")

    def __init__(self) -> None:
        self.count = [0, 0]
        self.mrr = [0, 0]
        self.priced = [0, 0]


class Accumulator:
    def __init__(self, previous: Mapping[str, Signature] | None = None) -> None:
        self._previous = dict(previous or {})
        self._seen_previous: set[str] = set()
        self._counts = {"pairs": 0, "customer": 0, "subscription": 0}
        self._verdicts: dict[Verdict, int] = {"match": 0, "explained": 0, "mismatch": 0}
        self._kinds: dict[str, int] = {}
        self._totals: dict[str, _Totals] = {}
        self._changes = {"new": 0, "resolved": 0, "changed": 0, "unchanged": 0}
        self._samples: dict[str, list[str]] = {}

    def _sample(self, what: str, key: str) -> None:
        keys = self._samples.setdefault(what, [])
        if len(keys) < SAMPLE:
            keys.append(key)

    def _money(self, side: int, sub: Subscription | None, priced: int | None) -> None:
        if sub is None:
            return
        t = self._totals.setdefault(sub.currency or "?", _Totals())
        t.count[side] += 1
        t.mrr[side] += sub.mrr
        t.priced[side] += priced_mrr(sub) if priced is None else priced

    def add(
        self,
        r: PairResult,
        source: Subscription | None = None,
        target: Subscription | None = None,
        priced: tuple[int, int] | None = None,
    ) -> None:
        """Fold one pair in; ``priced``: both sides' priced MRR, when already computed."""
        self._counts["pairs"] += 1
        self._counts[r.kind] += 1
        self._verdicts[r.verdict] += 1
        for c in r.checks:
            self._kinds[c.kind] = self._kinds.get(c.kind, 0) + 1
        self._money(0, source, priced[0] if priced else None)
        self._money(1, target, priced[1] if priced else None)
        before = self._previous.get(r.pair_key)
        if before is not None:
            self._seen_previous.add(r.pair_key)
        now = signature(r) if r.verdict != "match" else None
        if before is None and now is not None:
            what = "new"
        elif before is not None and now is None:
            what = "resolved"
        elif before is not None and before != now:
            what = "changed"
        else:
            self._changes["unchanged"] += 1
            return
        self._changes[what] += 1
        self._sample(what, r.pair_key)

    def summary(self) -> RunSummary:
        totals = tuple(
            CurrencyTotals(
                currency=cur,
                source_count=t.count[0],
                target_count=t.count[1],
                source_mrr=t.mrr[0],
                target_mrr=t.mrr[1],
                source_priced_mrr=t.priced[0],
                target_priced_mrr=t.priced[1],
            )
            for cur, t in sorted(self._totals.items())
        )
        return RunSummary(
            pairs=self._counts["pairs"],
            customers=self._counts["customer"],
            subscriptions=self._counts["subscription"],
            matched=self._verdicts["match"],
            explained=self._verdicts["explained"],
            mismatched=self._verdicts["mismatch"],
            by_kind=dict(sorted(self._kinds.items())),
            totals=totals,
        )

    def changes(self, previous_run_id: int | None) -> Changes:
        gone = sorted(set(self._previous) - self._seen_previous)
        samples = dict(self._samples)
        if gone:
            samples["gone"] = gone[:SAMPLE]
        return Changes(
            previous_run_id=previous_run_id,
            gone=len(gone),
            samples=samples,
            **self._changes,
        )


def totals_problems(summary: RunSummary) -> list[str]:
    """Why the totals do not show a finished migration: counts or priced MRR per currency that
    differ between the sides."""
    out = []
    for t in summary.totals:
        if t.source_count != t.target_count:
            out.append(
                f"{t.currency}: {t.source_count} subscriptions on the source, {t.target_count} on the target"
            )
        if t.source_priced_mrr != t.target_priced_mrr:
            out.append(
                f"{t.currency}: priced MRR {t.source_priced_mrr} on the source, "
                f"{t.target_priced_mrr} on the target (minor units)"
            )
    return out
