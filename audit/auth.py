"""Bearer-token guards for the read/ops API, with an append-only access log and a brute-force brake.

``require_role(role)`` returns a Litestar guard. On every request it:

1. refuses with 429 when the source address already failed to authenticate
   ``settings.api.auth_failures_per_minute`` times in the last 60 seconds (:class:`FailureLimiter`);
2. reads ``Authorization: Bearer lh_...`` and looks the token's SHA-256 up in PostgreSQL (no cache,
   so a revocation takes effect on the next request); missing, malformed, unknown or revoked → 401;
3. compares the token's role with the required one (admin ⊇ oncall ⊇ auditor); too low → 403;
4. appends one ``audit.access_log`` row (who, role, method, path, query, decision, address) before
   the handler runs, so every answered read has its record;
5. puts the :class:`audit.tokens.Principal` in ``scope["user"]`` (``request.user``).

The failure counter is in-process memory: with N server processes an attacker gets N times the
budget, which still slows guessing of a 256-bit token to no effect. The token never reaches a log,
an error message or the access log.
"""

from __future__ import annotations

import logging
import time
from collections import OrderedDict, deque
from typing import Any

import asyncpg
from litestar.connection import ASGIConnection
from litestar.handlers.base import BaseRouteHandler
from litestar.types import Guard

from audit.errors import Forbidden, TooManyAttempts, Unauthenticated
from audit.tokens import Principal, Role, find_principal, role_allows
from ledgerhook.settings import Settings

__all__ = ["FailureLimiter", "principal_of", "require_role"]

log = logging.getLogger(__name__)

WINDOW_SECONDS = 60.0
_MAX_TRACKED = 10_000  # addresses remembered; the oldest are forgotten first


class FailureLimiter:
    """Failed authentications per source address in a sliding window (in-process)."""

    def __init__(self, limit: int, window: float = WINDOW_SECONDS) -> None:
        self.limit = limit
        self.window = window
        self._failures: OrderedDict[str, deque[float]] = OrderedDict()

    def _recent(self, address: str, now: float) -> deque[float]:
        q = self._failures.get(address)
        if q is None:
            return deque()
        while q and q[0] <= now - self.window:
            q.popleft()
        if not q:
            del self._failures[address]
        return q

    def retry_after(self, address: str, now: float) -> int | None:
        """Seconds until the address may try again, or None when it is not blocked."""
        q = self._recent(address, now)
        if len(q) < self.limit:
            return None
        return max(1, int(q[0] + self.window - now) + 1)

    def fail(self, address: str, now: float) -> None:
        q = self._failures.setdefault(address, deque())
        q.append(now)
        self._failures.move_to_end(address)
        while len(self._failures) > _MAX_TRACKED:
            self._failures.popitem(last=False)


def _limiter(connection: ASGIConnection[Any, Any, Any, Any], settings: Settings) -> FailureLimiter:
    state = connection.app.state
    limiter: FailureLimiter | None = state.get("auth_failure_limiter")
    if limiter is None:
        limiter = FailureLimiter(settings.api.auth_failures_per_minute)
        state.auth_failure_limiter = limiter
    return limiter


def _bearer(connection: ASGIConnection[Any, Any, Any, Any]) -> str | None:
    header = connection.headers.get("authorization")
    if header is None:
        return None
    scheme, _, token = header.strip().partition(" ")
    if scheme.lower() != "bearer":
        return None
    return token.strip() or None


async def _record(
    pool: asyncpg.Pool,
    *,
    connection: ASGIConnection[Any, Any, Any, Any],
    principal: Principal | None,
    decision: str,
    required: Role,
    address: str | None,
) -> None:
    query = connection.scope.get("query_string", b"").decode("latin-1")
    async with pool.acquire() as conn:
        await conn.execute(
            """
            INSERT INTO audit.access_log
                (token_name, role, method, path, query, decision, required_role, source_address)
            VALUES ($1, $2, $3, $4, $5, $6, $7, $8)
            """,
            None if principal is None else principal.name,
            None if principal is None else principal.role,
            connection.scope.get("method", "WS"),
            connection.url.path,
            query,
            decision,
            required,
            address,
        )


def require_role(role: Role) -> Guard:
    """A guard admitting tokens whose role is ``role`` or above."""

    async def guard(connection: ASGIConnection[Any, Any, Any, Any], _: BaseRouteHandler) -> None:
        settings: Settings = connection.app.state.settings
        pool: asyncpg.Pool = connection.app.state.pool
        address = connection.client.host if connection.client else None
        limiter = _limiter(connection, settings)
        now = time.monotonic()
        wait = limiter.retry_after(address or "", now)
        if wait is not None:
            raise TooManyAttempts("too many failed authentications; try again later", wait)
        token = _bearer(connection)
        principal = None
        if token is not None:
            async with pool.acquire() as conn:
                principal = await find_principal(conn, token)
        if principal is None:
            limiter.fail(address or "", now)
            await _record(
                pool,
                connection=connection,
                principal=None,
                decision="unauthenticated",
                required=role,
                address=address,
            )
            log.info(
                "api authentication failed",
                extra={
                    "path": connection.url.path,
                    "source_address": address,
                    "reason": "missing" if token is None else "invalid",
                },
            )
            if token is None:
                raise Unauthenticated("missing bearer token (Authorization: Bearer lh_...)")
            raise Unauthenticated("invalid or revoked bearer token")
        if not role_allows(principal.role, role):
            await _record(
                pool,
                connection=connection,
                principal=principal,
                decision="forbidden",
                required=role,
                address=address,
            )
            raise Forbidden(
                f"this route needs role {role!r}; token {principal.name!r} has {principal.role!r}"
            )
        await _record(
            pool,
            connection=connection,
            principal=principal,
            decision="allowed",
            required=role,
            address=address,
        )
        connection.scope["user"] = principal

    guard.__name__ = f"require_{role}"
    return guard


def principal_of(connection: ASGIConnection[Any, Any, Any, Any]) -> Principal:
    """The caller set by the guard (handlers may also use ``request.user``)."""
    user = connection.scope.get("user")
    if not isinstance(user, Principal):
        raise Unauthenticated("no authenticated principal")
    return user
