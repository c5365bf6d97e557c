"""Reports as text (the CLI) and CSV (CLI and API): one CSV row per non-matching check, so a
spreadsheet can filter by kind. Pure apart from consuming an async iterator of results."""

from __future__ import annotations

import csv
import io
from collections.abc import AsyncIterator, Iterable
from datetime import UTC, datetime

from processors.coexist.model import CurrencyTotals
from processors.coexist.queries import ResultRow
from processors.coexist.verify import AuthorityView, RunReport

__all__ = ["money", "render_report", "results_csv_header", "results_csv_rows", "when"]

CSV_COLUMNS = (
    "pair_key",
    "kind",
    "billing_account",
    "source",
    "target",
    "verdict",
    "check",
    "check_verdict",
    "source_value",
    "target_value",
    "reason",
)


def _csv(rows: Iterable[Iterable[object]]) -> str:
    buf = io.StringIO()
    w = csv.writer(buf, lineterminator="\n")
    for row in rows:
        w.writerow(["" if v is None else v for v in row])
    return buf.getvalue()


def results_csv_header() -> str:
    return _csv([CSV_COLUMNS])


def _rows(r: ResultRow) -> list[list[object]]:
    base = [r.pair_key, r.kind, r.billing_account, r.source, r.target, r.verdict]
    return [[*base, c.kind, c.verdict, c.source, c.target, c.reason] for c in r.checks]


async def results_csv_rows(
    results: AsyncIterator[ResultRow], batch: int = 500
) -> AsyncIterator[str]:
    pending: list[list[object]] = []
    async for r in results:
        pending += _rows(r)
        if len(pending) >= batch:
            yield _csv(pending)
            pending = []
    if pending:
        yield _csv(pending)


def when(t: int | None) -> str:
    if t is None:
        return "-"
    return datetime.fromtimestamp(t, UTC).strftime("%Y-%m-%d %H:%M:%SZ")


def money(minor: int, currency: str) -> str:
    sign = "-" if minor < 0 else ""
    minor = abs(minor)
    return f"{sign}{minor // 100}.{minor % 100:02d} {currency}"


def authority_line(a: AuthorityView) -> str:
    parts = [f"{a.phase.replace('_', ' ')}: the {a.side} is authoritative"]
    if a.since is not None:
        parts.append(f"since {when(a.since)}")
    if a.planned_at is not None:
        parts.append(f"cut-over planned for {when(a.planned_at)}")
    return ", ".join(parts) + (f" ({', '.join(a.directions)})" if a.directions else "")


def _totals(t: CurrencyTotals) -> str:
    return (
        f"  {t.currency}: subscriptions {t.source_count} source / {t.target_count} target; "
        f"MRR billed {money(t.source_mrr, t.currency)} / {money(t.target_mrr, t.currency)}; "
        f"priced {money(t.source_priced_mrr, t.currency)} / {money(t.target_priced_mrr, t.currency)}"
    )


def render_report(report: RunReport, items: Iterable[ResultRow] = ()) -> str:
    s, c = report.summary, report.changes
    lines = [
        f"cohort {report.cohort}: run {report.run_id} as of {when(report.as_of)} "
        f"(state: {report.schema})",
        f"  authority  {authority_line(report.authority)}",
        f"  pairs      {s.pairs} ({s.customers} customers, {s.subscriptions} subscriptions): "
        f"{s.matched} matched, {s.explained} explained, {s.mismatched} mismatched",
    ]
    if s.by_kind:
        lines.append("  checks     " + ", ".join(f"{k} {n}" for k, n in s.by_kind.items()))
    lines += [_totals(t) for t in s.totals]
    if c.previous_run_id is None:
        lines.append("  since last (first run of this cohort)")
    else:
        lines.append(
            f"  since run {c.previous_run_id}: {c.new} new, {c.resolved} resolved, "
            f"{c.changed} changed, {c.unchanged} unchanged, {c.gone} no longer linked"
        )
    for r in items:
        for check in r.checks:
            lines.append(
                f"  [{check.verdict}] {r.source} -> {r.target}: {check.kind}: "
                f"{check.source!r} vs {check.target!r} ({check.reason})"
            )
    return "\n".join(lines)
