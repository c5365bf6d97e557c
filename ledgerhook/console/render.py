"""Building console pages: the context every template gets, and the sign-in page.

Handlers return :func:`page`; it adds who is signed in, this session's CSRF token (for the
sign-out form every page has, and any other form) and what the role may do, read from
:mod:`audit.permissions` through :func:`audit.tokens.role_allows`, the same rule the API's guards
apply. Templates only decide what to show; the guard decides what is allowed.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from typing import Any

import msgspec
from litestar import Request
from litestar.datastructures import Cookie
from litestar.response import Template

from audit import permissions
from audit.sessions import ConsoleSession
from audit.tokens import Principal, role_allows
from ledgerhook.console import seams, security
from ledgerhook.settings import Settings

__all__ = ["Signed", "page", "sign_in_page", "signed", "tls"]

STATE_KEY = "console_signed"


class Signed(msgspec.Struct, frozen=True, kw_only=True):
    """The request's live session (set by the console guard) and its form token."""

    session: ConsoleSession
    csrf: str

    @property
    def principal(self) -> Principal:
        return self.session.principal


def signed(request: Request[Any, Any, Any]) -> Signed | None:
    value = request.state.get(STATE_KEY)
    return value if isinstance(value, Signed) else None


def tls(request: Request[Any, Any, Any], settings: Settings) -> bool:
    """Whether cookies must be Secure: the request came over TLS, or settings say always."""
    return settings.console.secure_cookie == "always" or seams.request_is_tls(request)


def _may(principal: Principal | None) -> dict[str, bool]:
    role = principal.role if principal else ""
    return {
        "acknowledge": bool(role) and role_allows(role, permissions.ACKNOWLEDGE),
        "resolve": bool(role) and role_allows(role, permissions.RESOLVE),
        "replay": bool(role) and role_allows(role, permissions.REPLAY),
    }


def page(
    request: Request[Any, Any, Any],
    template: str,
    *,
    status: int = 200,
    headers: Mapping[str, str] | None = None,
    cookies: Iterable[Cookie] = (),
    **context: Any,
) -> Template:
    s = signed(request)
    principal = s.principal if s else None
    return Template(
        template,
        context={
            "me": principal,
            "csrf": s.csrf if s else None,
            "csrf_field": security.CSRF_FIELD,
            "may": _may(principal),
            "title": "",
            **context,
        },
        status_code=status,
        headers=dict(headers or {}),
        cookies=list(cookies),
    )


def sign_in_page(
    request: Request[Any, Any, Any],
    *,
    status: int,
    next_path: str,
    message: str | None = None,
    extra_cookies: Iterable[Cookie] = (),
) -> Template:
    """The sign-in form, with a fresh pre-session cookie its CSRF token is tied to."""
    settings: Settings = request.app.state.settings
    pre = security.new_pre_session_id()
    cookie = security.secret_cookie(
        security.PRE_COOKIE, pre, secure=tls(request, settings), max_age=security.PRE_SESSION_TTL
    )
    return page(
        request,
        "sign_in.html",
        status=status,
        cookies=[*extra_cookies, cookie],
        title="Sign in",
        sign_in_csrf=security.csrf_token(pre, "sign-in"),
        next_path=security.safe_next(next_path),
        message=message,
    )
