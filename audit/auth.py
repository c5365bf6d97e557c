"""Bearer-token guards for the read/ops API, with an append-only access log and a brute-force brake.

``require_role(role)`` returns a Litestar guard. On every request it:

1. reads ``Authorization: Bearer lh_...`` and looks the token's SHA-256 up in PostgreSQL (no cache,
   so a revocation takes effect on the next request). A valid token goes on to step 3 without
   ever consulting the brake: failures from the same address, or from everyone behind the same
   proxy, can never lock a valid token out;
2. refuses the rest: no bearer token at all → 401 (not counted: nothing was guessed); an unknown,
   malformed or revoked token → counted by the brake (:mod:`audit.brake`, shared by all API
   processes through Redis) under the client's address, then 401, or 429 with ``Retry-After``
   once the address spent ``settings.api.auth_failures_per_minute`` in the current minute. With
   Redis down the brake lets everything through (401), it never turns a refusal into a 500;
3. compares the token's role with the required one (admin ⊇ oncall ⊇ auditor); too low → 403;
4. appends one ``audit.access_log`` row (who, role, method, path, query, decision, address) before
   the handler runs, so every answered read has its record (a 429 writes none: a flood past its
   budget costs the database one indexed read per request, no write);
5. puts the :class:`audit.tokens.Principal` in ``scope["user"]`` (``request.user``).

The client's address is resolved by :mod:`ledgerhook.client_address` from the trusted proxies in
``settings.api``. The token never reaches a log, an error message, Redis or the access log.
"""

from __future__ import annotations

import logging
from typing import Any

import asyncpg
from litestar.connection import ASGIConnection
from litestar.handlers.base import BaseRouteHandler
from litestar.types import Guard

from audit.brake import Brake
from audit.errors import Forbidden, TooManyAttempts, Unauthenticated
from audit.tokens import Principal, Role, find_principal, role_allows
from ledgerhook import metrics
from ledgerhook.client_address import scope_address
from ledgerhook.settings import Settings

__all__ = ["principal_of", "request_address", "require_role"]

log = logging.getLogger(__name__)


def request_address(connection: ASGIConnection[Any, Any, Any, Any]) -> str | None:
    """The client's address behind the trusted proxies of the app's settings."""
    settings: Settings = connection.app.state.settings
    api = settings.api
    return scope_address(connection.scope, api.trusted_proxies, api.proxy_header)


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
        state = connection.app.state
        pool: asyncpg.Pool = state.pool
        address = request_address(connection)
        token = _bearer(connection)
        principal = None
        if token is not None:
            async with pool.acquire() as conn:
                principal = await find_principal(conn, token)
        if principal is None:
            if token is not None:
                brake: Brake = state.brake
                wait = await brake.record_failure(address)
                if wait is not None:
                    metrics.auth_refusals.labels("throttled").inc()
                    raise TooManyAttempts("too many failed authentications; try again later", wait)
            reason = "missing" if token is None else "invalid"
            metrics.auth_refusals.labels(reason).inc()
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
                extra={"path": connection.url.path, "source_address": address, "reason": reason},
            )
            if token is None:
                raise Unauthenticated("missing bearer token (Authorization: Bearer lh_...)")
            raise Unauthenticated("invalid or revoked bearer token")
        if not role_allows(principal.role, role):
            metrics.auth_refusals.labels("forbidden").inc()
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
