"""Authority I/O: plan, cut over, roll back (per cohort or per billing account), and reading
the history back. Every function takes a connection.

Each change is one append-only ``coexist.authority_events`` row, written under a per-cohort
advisory lock after :func:`processors.coexist.authority.check_change` accepted it against the
history as it stands; so the history of a cohort is in id order, and a refused change writes
nothing.
"""

from __future__ import annotations

from datetime import datetime
from typing import Literal

import asyncpg

from audit.dbtypes import Conn
from processors.coexist.authority import AuthorityBook, AuthorityEvent, check_change
from processors.coexist.errors import InvalidChange, MigrationNotFound
from processors.coexist.imports import valid_name
from processors.coexist.model import Action

__all__ = ["change_authority", "cohort_of", "load_book", "load_events"]

_COLUMNS = "id, cohort, billing_account, action, effective_at, actor, recorded_at, note"


def _ts(t: datetime) -> int:
    return int(t.timestamp())


def _event(row: asyncpg.Record) -> AuthorityEvent:
    return AuthorityEvent(
        seq=row["id"],
        cohort=row["cohort"],
        billing_account=row["billing_account"],
        action=row["action"],
        effective_at=_ts(row["effective_at"]),
        actor=row["actor"],
        recorded_at=_ts(row["recorded_at"]),
        note=row["note"],
    )


async def load_events(conn: Conn, cohorts: list[str] | None = None) -> list[AuthorityEvent]:
    """The authority history of ``cohorts`` (all cohorts when None), in record order."""
    rows = await conn.fetch(
        f"SELECT {_COLUMNS} FROM coexist.authority_events "
        "WHERE $1::text[] IS NULL OR cohort = ANY($1::text[]) ORDER BY id",
        cohorts,
    )
    return [_event(r) for r in rows]


async def load_book(conn: Conn, now: int, cohorts: list[str] | None = None) -> AuthorityBook:
    return AuthorityBook(await load_events(conn, cohorts), now)


async def cohort_of(conn: Conn, billing_account: str) -> str:
    cohort: str | None = await conn.fetchval(
        "SELECT cohort FROM coexist.links WHERE kind = 'customer' AND billing_account = $1",
        billing_account,
    )
    if cohort is None:
        raise MigrationNotFound(f"billing account {billing_account!r} has no link")
    return cohort


async def change_authority(
    conn: Conn,
    action: Action,
    *,
    cohort: str | None = None,
    billing_account: str | None = None,
    effective_at: int | None = None,
    now: int,
    actor: str,
    origin: Literal["cli", "api"],
    note: str | None = None,
) -> AuthorityEvent:
    """Record one change for a cohort, or for one billing account (exactly one of them).

    ``effective_at`` defaults to ``now`` (required for a plan). Raises
    :class:`MigrationNotFound` for a cohort or account with no link, and what ``check_change``
    raises for a change that does not fit the history.
    """
    if (cohort is None) == (billing_account is None):
        raise InvalidChange("name a cohort or a billing account (one of them)")
    if action == "plan" and effective_at is None:
        raise InvalidChange("a plan needs the planned cut-over time")
    at = now if effective_at is None else effective_at
    async with conn.transaction():
        if billing_account is not None:
            cohort = await cohort_of(conn, billing_account)
        else:
            assert cohort is not None
            if not valid_name(cohort) or not await conn.fetchval(
                "SELECT EXISTS (SELECT 1 FROM coexist.links WHERE cohort = $1)", cohort
            ):
                raise MigrationNotFound(f"cohort {cohort!r} has no links")
        await conn.execute(
            "SELECT pg_advisory_xact_lock(hashtextextended($1, 0))",
            f"coexist\x1fauthority\x1f{cohort}",
        )
        book = AuthorityBook(await load_events(conn, [cohort]), now)
        check_change(book.events(cohort, billing_account), action, at, now)
        row = await conn.fetchrow(
            f"""
            INSERT INTO coexist.authority_events
                (cohort, billing_account, action, effective_at, actor, origin, note)
            VALUES ($1, $2, $3, to_timestamp($4), $5, $6, $7)
            RETURNING {_COLUMNS}
            """,
            cohort,
            billing_account,
            action,
            at,
            actor,
            origin,
            note,
        )
    assert row is not None
    return _event(row)
