"""Reads of the migration for the API and the CLI: links, accounts, cohorts, runs, and the
coexistence view the state routes add to a linked customer or subscription.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from datetime import datetime

import asyncpg
import msgspec

from audit.dbtypes import Conn
from processors.coexist.authority import AuthorityBook, AuthorityEvent
from processors.coexist.cutover import load_events
from processors.coexist.errors import MigrationNotFound
from processors.coexist.model import Check, Ref
from processors.coexist.report import Changes, RunSummary
from processors.coexist.verify import AuthorityView
from processors.errors import StateNotFound
from processors.queries import StateRow, get_object

__all__ = [
    "AccountDetail",
    "Coexistence",
    "CohortRow",
    "LinkEventRow",
    "LinkPage",
    "LinkRow",
    "ResultRow",
    "RunRow",
    "account_detail",
    "coexistence",
    "cohort_detail",
    "get_run",
    "iter_results",
    "list_cohorts",
    "list_links",
    "result_page",
]

_checks = msgspec.json.Decoder(list[Check])
_summary = msgspec.json.Decoder(RunSummary)
_changes = msgspec.json.Decoder(Changes)
_authority = msgspec.json.Decoder(AuthorityView)


class LinkRow(msgspec.Struct, frozen=True, kw_only=True):
    id: int
    kind: str
    billing_account: str
    cohort: str
    source: Ref
    target: Ref
    origin: str
    import_id: int | None
    evidence: str | None
    actor: str
    linked_at: datetime


class LinkPage(msgspec.Struct, frozen=True, kw_only=True):
    items: list[LinkRow]
    next_cursor: str | None


class LinkEventRow(msgspec.Struct, frozen=True, kw_only=True):
    id: int
    link_id: int
    action: str
    kind: str
    cohort: str
    source: Ref
    target: Ref
    origin: str
    import_id: int | None
    evidence: str | None
    actor: str
    note: str | None
    at: datetime


class AccountDetail(msgspec.Struct, frozen=True, kw_only=True):
    billing_account: str
    cohort: str
    authority: AuthorityView
    customer: LinkRow
    subscriptions: list[LinkRow]
    link_history: list[LinkEventRow]
    authority_history: list[AuthorityEvent]


class RunRow(msgspec.Struct, frozen=True, kw_only=True):
    id: int
    cohort: str
    state_schema: str
    actor: str
    as_of: int
    started_at: datetime
    finished_at: datetime | None
    previous_run_id: int | None
    authority: AuthorityView | None
    summary: RunSummary | None
    changes: Changes | None


class CohortRow(msgspec.Struct, frozen=True, kw_only=True):
    cohort: str
    customers: int
    subscriptions: int
    authority: AuthorityView
    last_run: RunRow | None = None


class CohortDetail(msgspec.Struct, frozen=True, kw_only=True):
    cohort: CohortRow
    authority_history: list[AuthorityEvent]
    overrides: dict[str, AuthorityView]
    runs: list[RunRow]


class ResultRow(msgspec.Struct, frozen=True, kw_only=True):
    pair_key: str
    kind: str
    billing_account: str
    source: str
    target: str
    verdict: str
    checks: list[Check]


class Coexistence(msgspec.Struct, frozen=True, kw_only=True):
    """What a state read adds for a linked object: its account, who is authoritative now, and
    both sides as the state has them (None: not in the state)."""

    billing_account: str
    cohort: str
    kind: str
    authority: AuthorityView
    authoritative: Ref
    source: Ref
    target: Ref
    source_state: StateRow | None
    target_state: StateRow | None


_LINK_COLUMNS = (
    "id, kind, billing_account, cohort, source_provider, source_account, source_id, "
    "target_provider, target_account, target_id, origin, import_id, evidence, actor"
)


def _ref(r: asyncpg.Record, side: str) -> Ref:
    return Ref(provider=r[f"{side}_provider"], account=r[f"{side}_account"], id=r[f"{side}_id"])


def _link(r: asyncpg.Record) -> LinkRow:
    return LinkRow(
        id=r["id"],
        kind=r["kind"],
        billing_account=r["billing_account"],
        cohort=r["cohort"],
        source=_ref(r, "source"),
        target=_ref(r, "target"),
        origin=r["origin"],
        import_id=r["import_id"],
        evidence=r["evidence"],
        actor=r["actor"],
        linked_at=r["linked_at"],
    )


def _view(
    book: AuthorityBook, cohort: str, account: str | None, directions: list[str]
) -> AuthorityView:
    return AuthorityView.of(book.resolve(cohort, account), directions)


async def _directions(conn: Conn, cohort: str) -> list[str]:
    rows = await conn.fetch(
        "SELECT DISTINCT source_provider, target_provider FROM coexist.links WHERE cohort = $1 "
        "ORDER BY 1, 2",
        cohort,
    )
    return [f"{r[0]} -> {r[1]}" for r in rows]


async def list_links(
    conn: Conn,
    *,
    cohort: str | None,
    billing_account: str | None,
    cursor: str | None,
    limit: int,
) -> LinkPage:
    after = 0
    if cursor is not None:
        if not cursor.isdigit() or len(cursor) > 18:
            raise MigrationNotFound("cursor: malformed (use the next_cursor of a previous page)")
        after = int(cursor)
    rows = await conn.fetch(
        f"SELECT {_LINK_COLUMNS}, linked_at FROM coexist.links "
        "WHERE ($1::text IS NULL OR cohort = $1) AND ($2::text IS NULL OR billing_account = $2) "
        "AND id > $3 ORDER BY id LIMIT $4",
        cohort,
        billing_account,
        after,
        limit + 1,
    )
    items = [_link(r) for r in rows[:limit]]
    more = len(rows) > limit
    return LinkPage(items=items, next_cursor=str(items[-1].id) if more and items else None)


async def account_detail(conn: Conn, billing_account: str, now: int) -> AccountDetail:
    rows = await conn.fetch(
        f"SELECT {_LINK_COLUMNS}, linked_at FROM coexist.links WHERE billing_account = $1 "
        "ORDER BY kind, id",
        billing_account,
    )
    customer = next((_link(r) for r in rows if r["kind"] == "customer"), None)
    if customer is None:
        raise MigrationNotFound(f"billing account {billing_account!r} has no link")
    events = await conn.fetch(
        "SELECT id, link_id, action, kind, cohort, source_provider, source_account, source_id, "
        "target_provider, target_account, target_id, origin, import_id, evidence, actor, note, at "
        "FROM coexist.link_events WHERE billing_account = $1 ORDER BY id",
        billing_account,
    )
    book = AuthorityBook(await load_events(conn, [customer.cohort]), now)
    return AccountDetail(
        billing_account=billing_account,
        cohort=customer.cohort,
        authority=_view(
            book, customer.cohort, billing_account, await _directions(conn, customer.cohort)
        ),
        customer=customer,
        subscriptions=[_link(r) for r in rows if r["kind"] == "subscription"],
        link_history=[
            LinkEventRow(
                id=e["id"],
                link_id=e["link_id"],
                action=e["action"],
                kind=e["kind"],
                cohort=e["cohort"],
                source=_ref(e, "source"),
                target=_ref(e, "target"),
                origin=e["origin"],
                import_id=e["import_id"],
                evidence=e["evidence"],
                actor=e["actor"],
                note=e["note"],
                at=e["at"],
            )
            for e in events
        ],
        authority_history=book.events(customer.cohort, billing_account),
    )


_RUN_COLUMNS = (
    "id, cohort, state_schema, actor, as_of, started_at, finished_at, previous_run_id, "
    "authority::text AS authority, summary::text AS summary, changes::text AS changes"
)


def _run(r: asyncpg.Record) -> RunRow:
    return RunRow(
        id=r["id"],
        cohort=r["cohort"],
        state_schema=r["state_schema"],
        actor=r["actor"],
        as_of=r["as_of"],
        started_at=r["started_at"],
        finished_at=r["finished_at"],
        previous_run_id=r["previous_run_id"],
        authority=None if r["authority"] is None else _authority.decode(r["authority"]),
        summary=None if r["summary"] is None else _summary.decode(r["summary"]),
        changes=None if r["changes"] is None else _changes.decode(r["changes"]),
    )


async def list_cohorts(conn: Conn, now: int) -> list[CohortRow]:
    rows = await conn.fetch(
        "SELECT cohort, count(*) FILTER (WHERE kind = 'customer') AS customers, "
        "count(*) FILTER (WHERE kind = 'subscription') AS subscriptions, "
        "array_agg(DISTINCT source_provider || ' -> ' || target_provider) AS directions "
        "FROM coexist.links GROUP BY cohort ORDER BY cohort"
    )
    book = AuthorityBook(await load_events(conn, [r["cohort"] for r in rows]), now)
    runs = {
        r["cohort"]: _run(r)
        for r in await conn.fetch(
            f"SELECT DISTINCT ON (cohort) {_RUN_COLUMNS} FROM coexist.runs "
            "WHERE finished_at IS NOT NULL AND state_schema = 'processors' "
            "ORDER BY cohort, id DESC"
        )
    }
    return [
        CohortRow(
            cohort=r["cohort"],
            customers=r["customers"],
            subscriptions=r["subscriptions"],
            authority=_view(book, r["cohort"], None, sorted(r["directions"])),
            last_run=runs.get(r["cohort"]),
        )
        for r in rows
    ]


async def cohort_detail(conn: Conn, cohort: str, now: int) -> CohortDetail:
    row = next((c for c in await list_cohorts(conn, now) if c.cohort == cohort), None)
    if row is None:
        raise MigrationNotFound(f"cohort {cohort!r} has no links")
    book = AuthorityBook(await load_events(conn, [cohort]), now)
    runs = await conn.fetch(
        f"SELECT {_RUN_COLUMNS} FROM coexist.runs WHERE cohort = $1 ORDER BY id DESC LIMIT 20",
        cohort,
    )
    return CohortDetail(
        cohort=row,
        authority_history=book.events(cohort),
        overrides={
            account: _view(book, cohort, account, row.authority.directions)
            for c, account in sorted(book.overridden())
            if c == cohort
        },
        runs=[_run(r) for r in runs],
    )


async def get_run(conn: Conn, *, run_id: int | None = None, cohort: str | None = None) -> RunRow:
    """A run by id, or the latest finished live run of a cohort."""
    if run_id is not None:
        r = await conn.fetchrow(f"SELECT {_RUN_COLUMNS} FROM coexist.runs WHERE id = $1", run_id)
    else:
        r = await conn.fetchrow(
            f"SELECT {_RUN_COLUMNS} FROM coexist.runs WHERE cohort = $1 AND finished_at IS NOT NULL "
            "AND state_schema = 'processors' ORDER BY id DESC LIMIT 1",
            cohort,
        )
    if r is None:
        what = f"run {run_id}" if run_id is not None else f"a verification run of cohort {cohort!r}"
        raise MigrationNotFound(f"no {what}")
    return _run(r)


def _result(r: asyncpg.Record) -> ResultRow:
    return ResultRow(
        pair_key=r["pair_key"],
        kind=r["kind"],
        billing_account=r["billing_account"],
        source=r["source"],
        target=r["target"],
        verdict=r["verdict"],
        checks=_checks.decode(r["checks"]),
    )


_RESULT_SQL = (
    "SELECT pair_key, kind, billing_account, source, target, verdict, checks::text AS checks "
    "FROM coexist.run_results WHERE run_id = $1 AND pair_key > $2 "
    "AND ($3::text IS NULL OR verdict = $3) ORDER BY pair_key LIMIT $4"
)


async def result_page(
    conn: Conn, run_id: int, *, after: str, verdict: str | None, limit: int
) -> list[ResultRow]:
    return [_result(r) for r in await conn.fetch(_RESULT_SQL, run_id, after, verdict, limit)]


async def iter_results(
    conn: Conn, run_id: int, *, verdict: str | None = None, page: int = 2_000
) -> AsyncIterator[ResultRow]:
    """Every non-matching result of a run, in pair order, a page at a time (constant memory)."""
    after = ""
    while True:
        rows = await result_page(conn, run_id, after=after, verdict=verdict, limit=page)
        for r in rows:
            yield r
        if len(rows) < page:
            return
        after = rows[-1].pair_key


async def _state(conn: Conn, kind: str, ref: Ref) -> StateRow | None:
    try:
        return await get_object(conn, f"{kind}s", ref.provider, ref.id, ref.account)
    except StateNotFound:
        return None


async def coexistence(conn: Conn, kind: str, ref: Ref, now: int) -> Coexistence | None:
    """The coexistence view of a linked customer or subscription; None when it is not linked."""
    r = await conn.fetchrow(
        f"SELECT {', '.join('l.' + c.strip() for c in _LINK_COLUMNS.split(','))} "
        "FROM coexist.linked_objects o JOIN coexist.links l ON l.id = o.link_id "
        "WHERE (o.kind, o.provider, o.account, o.id) = ($1, $2, $3, $4)",
        kind,
        ref.provider,
        ref.account,
        ref.id,
    )
    if r is None:
        return None
    source, target = _ref(r, "source"), _ref(r, "target")
    book = AuthorityBook(await load_events(conn, [r["cohort"]]), now)
    view = _view(
        book, r["cohort"], r["billing_account"], [f"{source.provider} -> {target.provider}"]
    )
    return Coexistence(
        billing_account=r["billing_account"],
        cohort=r["cohort"],
        kind=kind,
        authority=view,
        authoritative=source if view.side == "source" else target,
        source=source,
        target=target,
        source_state=await _state(conn, kind, source),
        target_state=await _state(conn, kind, target),
    )
