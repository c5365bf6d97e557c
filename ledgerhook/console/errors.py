"""Errors of the console, and the one function that turns any error under ``/console`` into a page.

    ConsoleError
    ├── SignInRequired   no live session (none, expired, signed out, token revoked): 401 sign-in page
    ├── CsrfRefused      an unsafe request without this session's form token: 403
    ├── ConsoleForbidden a live session whose token's role is too low: 403
    ├── SignInBraked     too many failed sign-ins from the address: 429
    └── BadForm          a form value the console cannot use: 400

Every other package's errors are the same ones the JSON API maps in ``ledgerhook.app``; here they
become HTML pages with the same status codes (404, 400, 409, 503, ...). Messages are plain text
and always escaped by the templates.
"""

from __future__ import annotations

import logging
import urllib.parse
from typing import Any

import asyncpg
from litestar import Request, Response
from litestar.exceptions import HTTPException
from litestar.response import Template

from alerts.errors import AlertNotFound, AlertsError, IllegalTransition, InvalidAlertQuery
from audit.errors import AuthError, InvalidQuery, InvalidRange, NotFound
from audit.tokens import Principal, Role
from ledgerhook.console import security
from ledgerhook.console.render import page, sign_in_page, tls
from ledgerhook.settings import Settings
from processors.errors import DeliveryNotFound, InvalidStateQuery, ProcessorError, StateNotFound

__all__ = [
    "BadForm",
    "ConsoleError",
    "ConsoleForbidden",
    "CsrfRefused",
    "SignInBraked",
    "SignInRequired",
    "error_page",
]

log = logging.getLogger(__name__)


class ConsoleError(Exception):
    pass


class SignInRequired(ConsoleError):
    def __init__(self, message: str, *, stale_cookie: bool) -> None:
        super().__init__(message)
        self.stale_cookie = stale_cookie


class CsrfRefused(ConsoleError):
    pass


class ConsoleForbidden(ConsoleError):
    def __init__(self, principal: Principal, need: Role) -> None:
        super().__init__(
            f"This needs role {need}; your token {principal.name} has role {principal.role}."
        )
        self.principal = principal


class SignInBraked(ConsoleError):
    def __init__(self, retry_after: int) -> None:
        super().__init__(
            f"Too many failed sign-ins from your address; try again in {retry_after} s."
        )
        self.retry_after = retry_after


class BadForm(ConsoleError):
    pass


def _status(exc: Exception) -> tuple[int, str]:
    """(status, title) for an exception; the one mapping of errors to console pages."""
    if isinstance(exc, CsrfRefused | ConsoleForbidden):
        return 403, "Forbidden"
    if isinstance(exc, SignInBraked):
        return 429, "Too many attempts"
    if isinstance(
        exc, BadForm | InvalidQuery | InvalidRange | InvalidStateQuery | InvalidAlertQuery
    ):
        return 400, "Bad request"
    if isinstance(exc, NotFound | StateNotFound | DeliveryNotFound | AlertNotFound):
        return 404, "Not found"
    if isinstance(exc, IllegalTransition):
        return 409, "Not possible now"
    if isinstance(exc, asyncpg.DataError):
        return 400, "Bad request"
    if isinstance(
        exc,
        asyncpg.PostgresConnectionError
        | asyncpg.CannotConnectNowError
        | asyncpg.TooManyConnectionsError
        | ConnectionError,
    ):
        return 503, "Unavailable"
    if isinstance(exc, HTTPException):
        return exc.status_code, "Bad request" if exc.status_code == 400 else "Error"
    if isinstance(exc, AuthError | AlertsError | ProcessorError | ConsoleError):
        return 400, "Bad request"
    return 500, "Error"


def _message(exc: Exception, status: int) -> str:
    if status == 500:
        return "Something went wrong on our side; it has been logged."
    if status == 503:
        return "The database is unavailable; try again in a moment."
    if isinstance(exc, asyncpg.DataError):
        return "A value is out of range."
    if isinstance(exc, HTTPException):
        return str(exc.detail)
    return str(exc) or "Refused."


def _sign_in_page(request: Request[Any, Any, Any], exc: SignInRequired) -> Response[Any]:
    settings: Settings = request.app.state.settings
    secure = tls(request, settings)
    if request.method == "GET" and request.headers.get("sec-fetch-site") == "cross-site":
        # A link followed from another site (a chat message, a pager) arrives without the
        # SameSite=Strict cookie. Reload once from here: that navigation is same-site, so the
        # browser sends the cookie if there is one (and shows the sign-in page if not).
        return Template("bounce.html", context={}, status_code=200)
    cookies = [security.expired_cookie(security.SESSION_COOKIE, secure=secure)]
    next_path = request.url.path + (f"?{request.url.query}" if request.url.query else "")
    if request.method != "GET":
        next_path = request.headers.get("referer", "") or security.HOME
        next_path = security.safe_next(_path_only(next_path))
    return sign_in_page(
        request,
        status=401,
        next_path=next_path,
        message=str(exc) if exc.stale_cookie else None,
        extra_cookies=cookies if exc.stale_cookie else [],
    )


def _path_only(url: str) -> str:
    parts = urllib.parse.urlsplit(url)
    return parts.path + (f"?{parts.query}" if parts.query else "")


def error_page(request: Request[Any, Any, Any], exc: Exception) -> Response[Any]:
    """Every error under ``/console`` as an HTML page with the API's status code."""
    if isinstance(exc, SignInRequired):
        return _sign_in_page(request, exc)
    status, title = _status(exc)
    if status >= 500:
        log.error("console error on %s", request.url.path, exc_info=exc)
    headers = {"Retry-After": str(exc.retry_after)} if isinstance(exc, SignInBraked) else {}
    if status == 503:
        headers["Retry-After"] = "5"
    return page(
        request,
        "error.html",
        status=status,
        headers=headers,
        title=f"{status} {title}",
        message=_message(exc, status),
    )
