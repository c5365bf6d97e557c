"""Where each listing stands (``processors.sync_cursors``). Functions take a connection.

A row is keyed (provider, endpoint, list). :func:`begin` resumes a row that did not finish
(``running`` when its process was killed, ``failed`` when the provider kept failing) with the
``since`` it started with, and starts a fresh row otherwise. :func:`advance` runs in the
transaction that appends a page's deliveries, so the cursor and the log never disagree.
"""

from __future__ import annotations

from datetime import datetime

import msgspec

from audit.dbtypes import Conn

__all__ = ["Cursor", "advance", "applied", "begin", "fail", "finish", "list_cursors", "load"]

_COLUMNS = (
    "provider, endpoint, object_type, status, since, cursor, cursor_created, total, pages, "
    "listed, stored, duplicates, pending, consecutive_failures, last_error, started_at, "
    "updated_at, finished_at"
)


class Cursor(msgspec.Struct, frozen=True, kw_only=True):
    provider: str
    endpoint: str
    object_type: str
    status: str
    since: int | None
    cursor: str | None
    cursor_created: int | None
    total: int | None
    pages: int
    listed: int
    stored: int
    duplicates: int
    pending: list[int]
    consecutive_failures: int
    last_error: str | None
    started_at: datetime
    updated_at: datetime
    finished_at: datetime | None

    @property
    def resumed(self) -> bool:
        return self.pages > 0

    @property
    def key(self) -> tuple[str, str, str]:
        return (self.provider, self.endpoint, self.object_type)


def _cursor(row: object) -> Cursor:
    return msgspec.convert(dict(row), Cursor)  # type: ignore[call-overload]


async def load(conn: Conn, provider: str, endpoint: str, object_type: str) -> Cursor | None:
    row = await conn.fetchrow(
        f"SELECT {_COLUMNS} FROM processors.sync_cursors "
        "WHERE provider = $1 AND endpoint = $2 AND object_type = $3",
        provider,
        endpoint,
        object_type,
    )
    return None if row is None else _cursor(row)


async def begin(
    conn: Conn,
    provider: str,
    endpoint: str,
    object_type: str,
    *,
    since: int | None,
    restart: bool,
    now: datetime,
) -> Cursor:
    """The row this run works from: an unfinished one resumed (its own ``since``), or a new one."""
    async with conn.transaction():
        prior = await conn.fetchrow(
            "SELECT status FROM processors.sync_cursors "
            "WHERE provider = $1 AND endpoint = $2 AND object_type = $3 FOR UPDATE",
            provider,
            endpoint,
            object_type,
        )
        if prior is not None and prior["status"] != "done" and not restart:
            row = await conn.fetchrow(
                f"UPDATE processors.sync_cursors SET status = 'running', updated_at = $4 "
                "WHERE provider = $1 AND endpoint = $2 AND object_type = $3 "
                f"RETURNING {_COLUMNS}",
                provider,
                endpoint,
                object_type,
                now,
            )
        else:
            # A new listing keeps pending deliveries a killed run left (they are applied first).
            row = await conn.fetchrow(
                f"""
                INSERT INTO processors.sync_cursors
                    (provider, endpoint, object_type, status, since, started_at, updated_at)
                VALUES ($1, $2, $3, 'running', $4, $5, $5)
                ON CONFLICT (provider, endpoint, object_type) DO UPDATE SET
                    status = 'running', since = EXCLUDED.since, cursor = NULL,
                    cursor_created = NULL, total = NULL, pages = 0, listed = 0, stored = 0,
                    duplicates = 0, consecutive_failures = 0, last_error = NULL,
                    started_at = EXCLUDED.started_at, updated_at = EXCLUDED.updated_at,
                    finished_at = NULL
                RETURNING {_COLUMNS}
                """,
                provider,
                endpoint,
                object_type,
                since,
                now,
            )
    return _cursor(row)


async def advance(
    conn: Conn,
    key: tuple[str, str, str],
    *,
    cursor: str | None,
    cursor_created: int | None,
    total: int | None,
    listed: int,
    stored: int,
    duplicates: int,
    pending: list[int],
    now: datetime,
) -> None:
    """One page stored: move the cursor, count it, remember what is still to apply."""
    await conn.execute(
        """
        UPDATE processors.sync_cursors SET
            cursor = $4, cursor_created = $5, total = coalesce($6, total), pages = pages + 1,
            listed = listed + $7, stored = stored + $8, duplicates = duplicates + $9,
            pending = $10::bigint[], consecutive_failures = 0, last_error = NULL, updated_at = $11
        WHERE provider = $1 AND endpoint = $2 AND object_type = $3
        """,
        *key,
        cursor,
        cursor_created,
        total,
        listed,
        stored,
        duplicates,
        pending,
        now,
    )


async def applied(conn: Conn, key: tuple[str, str, str], ids: list[int], now: datetime) -> None:
    """The page's deliveries were applied (or left to the sweeper): nothing pending."""
    await conn.execute(
        "UPDATE processors.sync_cursors SET pending = ARRAY(SELECT unnest(pending) EXCEPT "
        "SELECT unnest($4::bigint[])), updated_at = $5 "
        "WHERE provider = $1 AND endpoint = $2 AND object_type = $3",
        *key,
        ids,
        now,
    )


async def finish(conn: Conn, key: tuple[str, str, str], now: datetime) -> None:
    await conn.execute(
        "UPDATE processors.sync_cursors SET status = 'done', cursor = NULL, "
        "cursor_created = NULL, pending = '{}', finished_at = $4, updated_at = $4 "
        "WHERE provider = $1 AND endpoint = $2 AND object_type = $3",
        *key,
        now,
    )


async def fail(conn: Conn, key: tuple[str, str, str], error: str, now: datetime) -> None:
    """The provider kept failing: the cursor stays (a rerun resumes), the failure is counted."""
    await conn.execute(
        "UPDATE processors.sync_cursors SET status = 'failed', "
        "consecutive_failures = consecutive_failures + 1, last_error = $4, updated_at = $5 "
        "WHERE provider = $1 AND endpoint = $2 AND object_type = $3",
        *key,
        error[:500],
        now,
    )


async def list_cursors(conn: Conn, provider: str | None = None) -> list[Cursor]:
    rows = await conn.fetch(
        f"SELECT {_COLUMNS} FROM processors.sync_cursors "
        "WHERE $1::text IS NULL OR provider = $1 ORDER BY provider, endpoint, object_type",
        provider,
    )
    return [_cursor(r) for r in rows]
