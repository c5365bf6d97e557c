"""Signing in with an API token, and signing out.

Sign-in: the form's CSRF token must match the pre-session cookie set with the form; the source
address must not be braked (:mod:`ledgerhook.console.seams`, the API's limiter); the token must be
live (:func:`audit.sessions.open_session` checks it with the API's own lookup). A failed attempt
counts against the address like a failed API token, is recorded in ``audit.access_log`` and is
answered with the same words whatever was wrong with the token. On success the browser gets the
session cookie only; the token stays on the server side as the session row's token id.

Sign-out revokes the session row; the old cookie is refused from then on, whoever holds it.
"""

from __future__ import annotations

from typing import Any

import asyncpg
from litestar import Request, get, post
from litestar.di import NamedDependency
from litestar.response import Redirect, Template

from audit import permissions
from audit.sessions import end_session, find_session, open_session
from ledgerhook.console import seams, security
from ledgerhook.console.auth import PUBLIC
from ledgerhook.console.errors import CsrfRefused, SignInBraked
from ledgerhook.console.render import sign_in_page, signed, tls
from ledgerhook.settings import Settings

__all__ = ["handlers"]

_MAX_TOKEN = 200


@get("/", opt={PUBLIC: True}, name="console_home")
async def home() -> Redirect:
    return Redirect(security.HOME, status_code=303)


@get("/sign-in", opt={PUBLIC: True}, name="console_sign_in_form")
async def sign_in_form(
    request: Request[Any, Any, Any], pool: NamedDependency[asyncpg.Pool]
) -> Template | Redirect:
    next_path = security.safe_next(request.query_params.get("next"))
    session_id = request.cookies.get(security.SESSION_COOKIE)
    if session_id:
        async with pool.acquire() as conn:
            if await find_session(conn, session_id) is not None:
                return Redirect(next_path, status_code=303)
    return sign_in_page(request, status=200, next_path=next_path)


@post("/sign-in", opt={PUBLIC: True}, name="console_sign_in", status_code=303)
async def sign_in(
    request: Request[Any, Any, Any],
    settings: NamedDependency[Settings],
    pool: NamedDependency[asyncpg.Pool],
) -> Template | Redirect:
    form = await request.form()
    presented = form.get(security.CSRF_FIELD)
    pre = request.cookies.get(security.PRE_COOKIE)
    if not security.csrf_ok(pre, "sign-in", presented if isinstance(presented, str) else None):
        raise CsrfRefused(
            "The sign-in form is missing its security token or it has expired. "
            "Reload the page and try again."
        )
    next_value = form.get("next")
    next_path = security.safe_next(next_value if isinstance(next_value, str) else None)
    address = seams.client_address(request)
    wait = await seams.sign_in_wait(request, settings, address)
    if wait is not None:
        raise SignInBraked(wait)
    token = form.get("token")
    token = token.strip() if isinstance(token, str) and len(token) <= _MAX_TOKEN else ""
    opened = None
    if token:
        async with pool.acquire() as conn:
            opened = await open_session(
                conn,
                token,
                ttl_seconds=settings.console.session_ttl_seconds,
                source_address=address,
            )
    if opened is None:
        await seams.sign_in_failed(request, settings, address)
        await seams.record_access(
            request, principal=None, decision="unauthenticated", required=permissions.READ
        )
        return sign_in_page(
            request, status=401, next_path=next_path, message="That token is not valid."
        )
    session_id, session = opened
    await seams.record_access(
        request, principal=session.principal, decision="allowed", required=permissions.READ
    )
    secure = tls(request, settings)
    return Redirect(
        next_path,
        status_code=303,
        cookies=[
            security.secret_cookie(
                security.SESSION_COOKIE,
                session_id,
                secure=secure,
                max_age=settings.console.session_ttl_seconds,
            ),
            security.expired_cookie(security.PRE_COOKIE, secure=secure),
        ],
    )


@post("/sign-out", name="console_sign_out", status_code=303)
async def sign_out(
    request: Request[Any, Any, Any],
    settings: NamedDependency[Settings],
    pool: NamedDependency[asyncpg.Pool],
) -> Redirect:
    s = signed(request)
    if s is not None:
        async with pool.acquire() as conn:
            await end_session(conn, s.session.id)
    return Redirect(
        "/console/sign-in",
        status_code=303,
        cookies=[security.expired_cookie(security.SESSION_COOKIE, secure=tls(request, settings))],
    )


handlers = [home, sign_in_form, sign_in, sign_out]
