"""Web console sessions: opened with an API token, held by the browser as a random session id.

The browser gets a 256-bit random session id (``secrets.token_urlsafe(32)``) and nothing else;
only the id's SHA-256 is stored (``audit.console_sessions``), with the token the session was opened
with, so a stolen database copy cannot be replayed as a cookie and the token never leaves the
server. Like tokens, sessions are append-only: ending one appends a row to
``audit.console_session_revocations``. :func:`find_session` checks, on every request and without a
cache, that the session has not expired, has not been revoked, and that its token has not been
revoked (``ledgerhook token revoke`` ends every session opened with it on the next request).

The token is checked by :func:`audit.tokens.find_principal`, the same lookup the API's bearer
guard uses, so a token that the API refuses cannot open a session either.
"""

from __future__ import annotations

import hashlib
import secrets
from datetime import datetime

import msgspec

from audit.dbtypes import Conn
from audit.tokens import Principal, find_principal

__all__ = [
    "ConsoleSession",
    "end_session",
    "find_session",
    "hash_session_id",
    "looks_like_session_id",
    "open_session",
]

_ID_CHARS = frozenset("ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_")


class ConsoleSession(msgspec.Struct, frozen=True, kw_only=True):
    """A live session: its row id (never the session id itself), who, and until when."""

    id: int
    principal: Principal
    expires_at: datetime


def hash_session_id(session_id: str) -> bytes:
    return hashlib.sha256(session_id.encode("ascii")).digest()


def looks_like_session_id(value: str) -> bool:
    """Cheap shape check (43 URL-safe characters), so garbage never reaches the database."""
    return len(value) == 43 and set(value) <= _ID_CHARS


async def open_session(
    conn: Conn, token: str, *, ttl_seconds: int, source_address: str | None
) -> tuple[str, ConsoleSession] | None:
    """A new session for a live token: (the session id for the cookie, the session); None when
    the token is unknown, malformed or revoked."""
    principal = await find_principal(conn, token)
    if principal is None:
        return None
    session_id = secrets.token_urlsafe(32)
    # Token names are unique and never reused, so the name identifies the token row.
    row = await conn.fetchrow(
        """
        INSERT INTO audit.console_sessions (session_hash, token_id, expires_at, source_address)
        SELECT $1, t.id, now() + make_interval(secs => $3::float8), $4
        FROM audit.api_tokens t WHERE t.name = $2
        RETURNING id, expires_at
        """,
        hash_session_id(session_id),
        principal.name,
        float(ttl_seconds),
        source_address,
    )
    if row is None:  # pragma: no cover - the token row was found a moment ago and is never deleted
        return None
    return session_id, ConsoleSession(
        id=row["id"], principal=principal, expires_at=row["expires_at"]
    )


async def find_session(conn: Conn, session_id: str) -> ConsoleSession | None:
    """The live session with this id, or None (unknown, expired, signed out, or token revoked)."""
    if not looks_like_session_id(session_id):
        return None
    row = await conn.fetchrow(
        """
        SELECT s.id, s.expires_at, t.name, t.role
        FROM audit.console_sessions s JOIN audit.api_tokens t ON t.id = s.token_id
        WHERE s.session_hash = $1 AND s.expires_at > now()
          AND NOT EXISTS (SELECT 1 FROM audit.console_session_revocations r WHERE r.session_id = s.id)
          AND NOT EXISTS (SELECT 1 FROM audit.api_token_revocations r WHERE r.token_id = t.id)
        """,
        hash_session_id(session_id),
    )
    if row is None:
        return None
    return ConsoleSession(
        id=row["id"],
        principal=Principal(name=row["name"], role=row["role"]),
        expires_at=row["expires_at"],
    )


async def end_session(conn: Conn, session_row_id: int, reason: str = "signed_out") -> bool:
    """Revoke a session; False when it was already revoked."""
    status: str = await conn.execute(
        "INSERT INTO audit.console_session_revocations (session_id, reason) VALUES ($1, $2) "
        "ON CONFLICT DO NOTHING",
        session_row_id,
        reason,
    )
    return status.endswith(" 1")
