"""The console's guard: a live session, this session's CSRF token on every unsafe request, and
the role the page needs, checked with the API's own rules.

On every request to a console route (except the sign-in form and static files):

1. the ``lh_console`` cookie is looked up with :func:`audit.sessions.find_session` (no cache: a
   sign-out, an expiry or a token revocation takes effect on the next request); none → 401
   sign-in page;
2. for POST (every other method is refused by routing), the form's CSRF token must be the one
   derived from this session's id (:mod:`ledgerhook.console.security`); otherwise 403;
3. the session's role must allow the route's action (``opt["role"]``, one of
   :mod:`audit.permissions`; reads by default) by :func:`audit.tokens.role_allows`; otherwise 403;
4. one ``audit.access_log`` row is written, as the API's guard writes (allowed, forbidden or
   unauthenticated; never the token or the session id).
"""

from __future__ import annotations

from typing import Any

import asyncpg
from litestar import Request
from litestar.connection import ASGIConnection
from litestar.handlers.base import BaseRouteHandler

from audit import permissions
from audit.sessions import find_session
from audit.tokens import Role, role_allows
from ledgerhook.console import seams, security
from ledgerhook.console.errors import ConsoleForbidden, CsrfRefused, SignInRequired
from ledgerhook.console.render import STATE_KEY, Signed

__all__ = ["PUBLIC", "ROLE", "SAFE_METHODS", "console_guard"]

PUBLIC = "console_public"
ROLE = "console_role"
SAFE_METHODS = frozenset({"GET", "HEAD"})


async def console_guard(
    connection: ASGIConnection[Any, Any, Any, Any], handler: BaseRouteHandler
) -> None:
    if handler.opt.get(PUBLIC):
        return
    need: Role = handler.opt.get(ROLE, permissions.READ)
    pool: asyncpg.Pool = connection.app.state.pool
    session_id = connection.cookies.get(security.SESSION_COOKIE)
    session = None
    if session_id:
        async with pool.acquire() as conn:
            session = await find_session(conn, session_id)
    if session is None or session_id is None:
        await seams.record_access(
            connection, principal=None, decision="unauthenticated", required=need
        )
        raise SignInRequired(
            "Your session has ended; sign in again.", stale_cookie=session_id is not None
        )
    principal = session.principal
    if connection.scope.get("method", "GET") not in SAFE_METHODS:
        assert isinstance(connection, Request)
        form = await connection.form()
        presented = form.get(security.CSRF_FIELD)
        if not security.csrf_ok(
            session_id, "session", presented if isinstance(presented, str) else None
        ):
            await seams.record_access(
                connection, principal=principal, decision="forbidden", required=need
            )
            raise CsrfRefused(
                "This form is missing its security token or it does not match your session. "
                "Reload the page and try again."
            )
    if not role_allows(principal.role, need):
        await seams.record_access(
            connection, principal=principal, decision="forbidden", required=need
        )
        raise ConsoleForbidden(principal, need)
    await seams.record_access(connection, principal=principal, decision="allowed", required=need)
    connection.scope["user"] = principal
    connection.state[STATE_KEY] = Signed(
        session=session, csrf=security.csrf_token(session_id, "session")
    )
