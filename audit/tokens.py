"""API bearer tokens: creation, lookup, listing and revocation.

A token is ``lh_`` + 43 URL-safe characters (256 random bits). Only its SHA-256 is stored: a
token is not a password (it cannot be guessed), so a fast hash is enough and the lookup is one
indexed equality, done on every request. Revocation appends a row to
``audit.api_token_revocations``; the lookup joins it, so a revoked token fails on its very next
request (no cache to invalidate). Names are never reused, so the access log's names stay
unambiguous.
"""

from __future__ import annotations

import hashlib
import secrets
from datetime import datetime
from typing import Literal, get_args

import asyncpg
import msgspec

from audit.dbtypes import Conn
from audit.errors import TokenError

__all__ = [
    "PREFIX",
    "ROLES",
    "Principal",
    "Role",
    "TokenInfo",
    "create_token",
    "find_principal",
    "hash_token",
    "list_tokens",
    "looks_like_token",
    "revoke_token",
    "role_allows",
]

Role = Literal["auditor", "oncall", "admin"]
ROLES: tuple[Role, ...] = get_args(Role)
PREFIX = "lh_"
_RANK: dict[str, int] = {"auditor": 1, "oncall": 2, "admin": 3}
_TOKEN_CHARS = frozenset("ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_")


class Principal(msgspec.Struct, frozen=True, kw_only=True):
    """Who is calling: available to handlers as ``request.user``."""

    name: str
    role: Role


class TokenInfo(msgspec.Struct, frozen=True, kw_only=True):
    name: str
    role: Role
    created_at: datetime
    revoked_at: datetime | None


def role_allows(have: str, need: str) -> bool:
    """admin ⊇ oncall ⊇ auditor."""
    return _RANK.get(have, 0) >= _RANK[need]


def hash_token(token: str) -> bytes:
    return hashlib.sha256(token.encode("utf-8")).digest()


def looks_like_token(token: str) -> bool:
    """Cheap shape check, so garbage never reaches the database."""
    body = token.removeprefix(PREFIX)
    return token.startswith(PREFIX) and 32 <= len(body) <= 128 and set(body) <= _TOKEN_CHARS


async def create_token(conn: Conn, *, name: str, role: Role) -> str:
    """Store a new token's hash and return the token itself (the only time it exists in clear)."""
    if role not in ROLES:
        raise TokenError(f"unknown role {role!r}: use one of {', '.join(ROLES)}")
    token = PREFIX + secrets.token_urlsafe(32)
    try:
        await conn.execute(
            "INSERT INTO audit.api_tokens (name, role, token_hash) VALUES ($1, $2, $3)",
            name,
            role,
            hash_token(token),
        )
    except asyncpg.UniqueViolationError:
        raise TokenError(f"a token named {name!r} exists (names are never reused)") from None
    except asyncpg.CheckViolationError:
        raise TokenError(f"invalid token name {name!r}: use [A-Za-z0-9_.@-], at most 64") from None
    return token


async def find_principal(conn: Conn, token: str) -> Principal | None:
    """The live (unrevoked) token's principal, or None."""
    if not looks_like_token(token):
        return None
    row = await conn.fetchrow(
        """
        SELECT t.name, t.role FROM audit.api_tokens t
        WHERE t.token_hash = $1
          AND NOT EXISTS (SELECT 1 FROM audit.api_token_revocations r WHERE r.token_id = t.id)
        """,
        hash_token(token),
    )
    return None if row is None else Principal(name=row["name"], role=row["role"])


async def list_tokens(conn: Conn) -> list[TokenInfo]:
    rows = await conn.fetch(
        """
        SELECT t.name, t.role, t.created_at, r.revoked_at
        FROM audit.api_tokens t LEFT JOIN audit.api_token_revocations r ON r.token_id = t.id
        ORDER BY t.id
        """
    )
    return [
        TokenInfo(
            name=r["name"], role=r["role"], created_at=r["created_at"], revoked_at=r["revoked_at"]
        )
        for r in rows
    ]


async def revoke_token(conn: Conn, name: str) -> bool:
    """Revoke by name; False when it was already revoked. Unknown names raise TokenError."""
    token_id = await conn.fetchval("SELECT id FROM audit.api_tokens WHERE name = $1", name)
    if token_id is None:
        raise TokenError(f"no token named {name!r}")
    status = await conn.execute(
        "INSERT INTO audit.api_token_revocations (token_id) VALUES ($1) ON CONFLICT DO NOTHING",
        token_id,
    )
    return bool(status.endswith(" 1"))
