"""Verification runs: every linked pair of a cohort compared from a state schema, streamed.

One run is one REPEATABLE READ transaction, so every page sees the same snapshot of links and
state. Pairs are read in keyset pages of the cohort's links (``l.id > last``, within that one
snapshot: a consistent walk, not a tail of a growing table), each page joined with the state
rows of both sides, compared (:mod:`processors.coexist.compare`), folded into the run summary
(:class:`~processors.coexist.report.Accumulator`) and its non-matching results written with
COPY before the next page is read: memory stays flat whatever the cohort's size. The run row is
inserted first and completed last in the same transaction, so a failed run leaves nothing.

``schema`` names the state to read: ``processors`` (live) or ``processors_replay``, the state
``ledgerhook replay --rebuild`` rebuilds from the audit log; the same cohort verified against
both gives the same results when the state is reproducible from the log.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, Literal

import msgspec

from audit.dbtypes import Conn
from ledgerhook.settings import Settings
from processors.coexist.authority import Authority, AuthorityBook
from processors.coexist.compare import (
    Context,
    Tolerances,
    compare_customers,
    compare_subscriptions,
    priced_mrr,
    verdict_of,
)
from processors.coexist.cutover import load_events
from processors.coexist.errors import MigrationNotFound
from processors.coexist.model import Check, PairResult, Ref
from processors.coexist.price_store import load_prices
from processors.coexist.prices import PriceMap
from processors.coexist.report import Accumulator, Changes, RunSummary, Signature
from processors.model import Body, Customer, Subscription

__all__ = ["AuthorityView", "RunReport", "Schema", "run_verification", "tolerances_of"]

Schema = Literal["processors", "processors_replay"]
_body: msgspec.json.Decoder[Body] = msgspec.json.Decoder(Body)
_checks_encoder = msgspec.json.Encoder()
_checks_decoder = msgspec.json.Decoder(list[Check])


class AuthorityView(msgspec.Struct, frozen=True, kw_only=True):
    """A cohort's authority as a report shows it (unix seconds)."""

    side: str
    phase: str
    since: int | None
    planned_at: int | None
    cutover_at: int | None
    # Directions of the cohort's links, e.g. ["chargebee -> stripe"].
    directions: list[str] = []

    @classmethod
    def of(cls, a: Authority, directions: list[str]) -> AuthorityView:
        return cls(
            side=a.side,
            phase=a.phase,
            since=a.since,
            planned_at=a.planned_at,
            cutover_at=a.cutover_at,
            directions=directions,
        )


class RunReport(msgspec.Struct, frozen=True, kw_only=True):
    run_id: int
    cohort: str
    schema: str
    as_of: int
    authority: AuthorityView
    summary: RunSummary
    changes: Changes


def tolerances_of(settings: Settings) -> Tolerances:
    c = settings.coexist
    return Tolerances(
        period_seconds=c.period_tolerance_seconds,
        amount_minor=c.amount_tolerance_minor,
        grace_seconds=c.grace_seconds,
    )


def _page_sql(schema: Schema, kind: str) -> str:
    """One page of a cohort's links of one kind, with both sides' state rows (customers: only
    whether they are there; their fields are not compared)."""
    assert schema in ("processors", "processors_replay")
    assert kind in ("customer", "subscription")

    def join(alias: str, side: str) -> str:
        return (
            f"({alias}.provider, {alias}.account, {alias}.id) = "
            f"(l.{side}_provider, l.{side}_account, l.{side}_id)"
        )

    if kind == "customer":
        table = f"{schema}.customers"
        state = (
            "NULL::text AS s_data, (s.id IS NOT NULL AND NOT s.deleted) AS s_present, "
            "NULL::text AS t_data, (t.id IS NOT NULL AND NOT t.deleted) AS t_present"
        )
    else:
        table = f"{schema}.subscriptions"
        state = (
            "s.data::text AS s_data, s.deleted AS s_deleted, s.id IS NOT NULL AS s_present, "
            "t.data::text AS t_data, t.deleted AS t_deleted, t.id IS NOT NULL AS t_present"
        )
    return f"""
        SELECT l.id, l.kind, l.billing_account,
               l.source_provider, l.source_account, l.source_id,
               l.target_provider, l.target_account, l.target_id, {state}
        FROM coexist.links l
        LEFT JOIN {table} s ON {join("s", "source")}
        LEFT JOIN {table} t ON {join("t", "target")}
        WHERE l.cohort = $1 AND l.kind = '{kind}' AND l.id > $2
        ORDER BY l.id
        LIMIT $3
    """


def _subscription(data: str | None, deleted: bool | None) -> Subscription | None:
    if data is None:
        return None
    body = _body.decode(data)
    if not isinstance(body, Subscription):
        return None
    # A deleted subscription has ended, whatever its last snapshot said.
    return msgspec.structs.replace(body, status="canceled") if deleted else body


def _ref(r: Any, side: str) -> Ref:
    return Ref(provider=r[f"{side}_provider"], account=r[f"{side}_account"], id=r[f"{side}_id"])


class Compared(msgspec.Struct, frozen=True, kw_only=True):
    result: PairResult
    source: Subscription | None = None
    target: Subscription | None = None
    # Both sides' priced MRR (subscriptions present on both sides only).
    priced: tuple[int, int] | None = None


def compare_row(
    r: Any, book: AuthorityBook, cohort: str, prices: PriceMap, tolerances: Tolerances
) -> Compared:
    """One page row -> its result, with what the totals need."""
    source, target = _ref(r, "source"), _ref(r, "target")
    ss = ts = None
    priced = None
    checks: list[Check]
    if r["kind"] == "customer":
        checks = compare_customers(
            Customer() if r["s_present"] else None, Customer() if r["t_present"] else None
        )
    else:
        ss = _subscription(r["s_data"], r["s_deleted"])
        ts = _subscription(r["t_data"], r["t_deleted"])
        a = book.resolve(cohort, r["billing_account"])
        ctx = Context(
            now=book.now,
            authority=a.side,
            since=a.since,
            cutover_at=a.cutover_at,
            tolerances=tolerances,
        )
        if ss is not None and ts is not None:
            priced = (priced_mrr(ss), priced_mrr(ts))
        checks = compare_subscriptions(
            ss, ts, source_ref=source, target_ref=target, prices=prices, ctx=ctx, priced=priced
        )
    result = PairResult(
        pair_key=f"{r['kind']}:{source}",
        kind=r["kind"],
        billing_account=r["billing_account"],
        source=str(source),
        target=str(target),
        verdict=verdict_of(checks),
        checks=tuple(checks),
    )
    return Compared(result=result, source=ss, target=ts, priced=priced)


class _Walk:
    """One run's pass over its pairs: compare a page, fold it, COPY its non-matching results."""

    def __init__(
        self,
        *,
        conn: Conn,
        cohort: str,
        run_id: int,
        acc: Accumulator,
        book: AuthorityBook,
        prices: PriceMap,
        tolerances: Tolerances,
        progress: Callable[[int], None] | None,
    ) -> None:
        self.conn, self.cohort, self.run_id, self.acc = conn, cohort, run_id, acc
        self.book, self.prices, self.tolerances, self.progress = book, prices, tolerances, progress

    async def pages(self, sql: str, page_size: int) -> None:
        last = 0
        while True:
            rows = await self.conn.fetch(sql, self.cohort, last, page_size)
            if not rows:
                return
            last = rows[-1]["id"]
            records = []
            for r in rows:
                c = compare_row(r, self.book, self.cohort, self.prices, self.tolerances)
                result = c.result
                self.acc.add(result, c.source, c.target, c.priced)
                if result.verdict != "match":
                    records.append(
                        (
                            self.run_id,
                            result.pair_key,
                            result.kind,
                            result.billing_account,
                            result.source,
                            result.target,
                            result.verdict,
                            _checks_encoder.encode(result.checks).decode(),
                        )
                    )
            if records:
                await self.conn.copy_records_to_table(
                    "run_results", schema_name="coexist", records=records
                )
            if self.progress is not None:
                self.progress(len(rows))


async def _previous(
    conn: Conn, cohort: str, schema: str
) -> tuple[int | None, dict[str, Signature]]:
    prev: int | None = await conn.fetchval(
        "SELECT max(id) FROM coexist.runs WHERE cohort = $1 AND state_schema = $2 "
        "AND finished_at IS NOT NULL",
        cohort,
        schema,
    )
    if prev is None:
        return None, {}
    rows = await conn.fetch(
        "SELECT pair_key, verdict, checks::text AS checks FROM coexist.run_results WHERE run_id = $1",
        prev,
    )
    return prev, {
        r["pair_key"]: (
            r["verdict"],
            tuple(sorted({c.kind for c in _checks_decoder.decode(r["checks"])})),
        )
        for r in rows
    }


async def run_verification(
    conn: Conn,
    cohort: str,
    *,
    now: int,
    actor: str,
    tolerances: Tolerances | None = None,
    schema: Schema = "processors",
    page_size: int = 2_000,
    progress: Callable[[int], None] | None = None,
) -> RunReport:
    """Verify every linked pair of ``cohort`` as of ``now`` and record the run."""
    tolerances = tolerances or Tolerances()
    async with conn.transaction(isolation="repeatable_read"):
        directions = [
            f"{r['source_provider']} -> {r['target_provider']}"
            for r in await conn.fetch(
                "SELECT DISTINCT source_provider, target_provider FROM coexist.links "
                "WHERE cohort = $1 ORDER BY 1, 2",
                cohort,
            )
        ]
        if not directions:
            raise MigrationNotFound(f"cohort {cohort!r} has no links")
        book = AuthorityBook(await load_events(conn, [cohort]), now)
        prices = PriceMap.of(await load_prices(conn))
        previous_id, previous = await _previous(conn, cohort, schema)
        run_id: int = await conn.fetchval(
            "INSERT INTO coexist.runs (cohort, state_schema, actor, as_of, previous_run_id) "
            "VALUES ($1, $2, $3, $4, $5) RETURNING id",
            cohort,
            schema,
            actor,
            now,
            previous_id,
        )
        walk = _Walk(
            conn=conn,
            cohort=cohort,
            run_id=run_id,
            acc=Accumulator(previous),
            book=book,
            prices=prices,
            tolerances=tolerances,
            progress=progress,
        )
        for kind in ("customer", "subscription"):
            await walk.pages(_page_sql(schema, kind), page_size)
        acc = walk.acc
        report = RunReport(
            run_id=run_id,
            cohort=cohort,
            schema=schema,
            as_of=now,
            authority=AuthorityView.of(book.resolve(cohort), directions),
            summary=acc.summary(),
            changes=acc.changes(previous_id),
        )
        await conn.execute(
            "UPDATE coexist.runs SET finished_at = clock_timestamp(), authority = $2::jsonb, "
            "summary = $3::jsonb, changes = $4::jsonb WHERE id = $1",
            run_id,
            _checks_encoder.encode(report.authority).decode(),
            _checks_encoder.encode(report.summary).decode(),
            _checks_encoder.encode(report.changes).decode(),
        )
    return report
