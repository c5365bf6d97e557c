"""The console's browser-facing defences: cookies, CSRF tokens, security headers, safe redirects.

- **Cookies.** The session cookie holds only a random session id (see :mod:`audit.sessions`);
  it is ``HttpOnly`` (no script can read it), ``SameSite=Strict`` (no other site's page can make
  the browser send it), ``Path=/console``, and ``Secure`` whenever the request came over TLS (or
  ``LEDGERHOOK_CONSOLE__SECURE_COOKIE=always``). The sign-in form gets a pre-session cookie of
  the same kind, so that form has a CSRF token too.
- **CSRF.** Every form carries a synchronizer token derived from the secret it is tied to (the
  session id, or the pre-session id for the sign-in form): ``HMAC-SHA256(secret, purpose)``. The
  server stores nothing more and recomputes it on each POST; a page on another origin can neither
  read the cookie nor the token, so it cannot forge a POST. Checked for every unsafe method by the
  console's guard, before anything else happens.
- **Headers** on every console response: a Content-Security-Policy allowing only this origin's
  own files (no inline script or style, no eval, no framing, forms post only here), plus
  ``X-Content-Type-Options: nosniff``, ``Referrer-Policy: no-referrer``, ``X-Frame-Options: DENY``,
  ``Cross-Origin-Opener-Policy``/``-Resource-Policy: same-origin`` and ``Cache-Control: no-store``
  (pages hold audit data; static files say otherwise).
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import secrets
import urllib.parse

from litestar.datastructures import Cookie
from litestar.enums import ScopeType
from litestar.types import ASGIApp, Message, Receive, Scope, Send

__all__ = [
    "CSP",
    "CSRF_FIELD",
    "PRE_COOKIE",
    "SESSION_COOKIE",
    "SecurityHeadersMiddleware",
    "csrf_ok",
    "csrf_token",
    "expired_cookie",
    "new_pre_session_id",
    "safe_next",
    "secret_cookie",
]

SESSION_COOKIE = "lh_console"
PRE_COOKIE = "lh_console_signin"
CSRF_FIELD = "csrf"
COOKIE_PATH = "/console"
PRE_SESSION_TTL = 3600
HOME = "/console/deliveries"

CSP = (
    "default-src 'self'; script-src 'self'; style-src 'self'; img-src 'self'; "
    "connect-src 'self'; font-src 'self'; object-src 'none'; base-uri 'none'; "
    "form-action 'self'; frame-ancestors 'none'"
)
HEADERS: tuple[tuple[bytes, bytes], ...] = (
    (b"content-security-policy", CSP.encode()),
    (b"x-content-type-options", b"nosniff"),
    (b"referrer-policy", b"no-referrer"),
    (b"x-frame-options", b"DENY"),
    (b"cross-origin-opener-policy", b"same-origin"),
    (b"cross-origin-resource-policy", b"same-origin"),
    (b"cache-control", b"no-store"),
)


def new_pre_session_id() -> str:
    return secrets.token_urlsafe(32)


def csrf_token(secret: str, purpose: str) -> str:
    """The form token for ``secret`` (a session or pre-session id) and a purpose."""
    mac = hmac.new(
        secret.encode(), b"ledgerhook-console-csrf|" + purpose.encode(), hashlib.sha256
    ).digest()
    return base64.urlsafe_b64encode(mac).decode().rstrip("=")


def csrf_ok(secret: str | None, purpose: str, presented: str | None) -> bool:
    if not secret or not presented:
        return False
    return hmac.compare_digest(csrf_token(secret, purpose), presented)


def secret_cookie(name: str, value: str, *, secure: bool, max_age: int) -> Cookie:
    return Cookie(
        key=name,
        value=value,
        path=COOKIE_PATH,
        max_age=max_age,
        secure=secure,
        httponly=True,
        samesite="strict",
    )


def expired_cookie(name: str, *, secure: bool) -> Cookie:
    return Cookie(
        key=name,
        value="",
        path=COOKIE_PATH,
        max_age=0,
        secure=secure,
        httponly=True,
        samesite="strict",
    )


def safe_next(value: str | None) -> str:
    """Where to go after signing in: a console path of this site, else the console's home.

    Only a path under ``/console`` with no scheme, host or backslash passes, so a crafted sign-in
    link cannot send anyone elsewhere (no open redirect)."""
    if not value or len(value) > 2000 or "\\" in value or any(ord(c) < 0x20 for c in value):
        return HOME
    parts = urllib.parse.urlsplit(value)
    if parts.scheme or parts.netloc or value.startswith("//"):
        return HOME
    if parts.path != "/console" and not parts.path.startswith("/console/"):
        return HOME
    return value


class SecurityHeadersMiddleware:
    """Adds :data:`HEADERS` to every response of the routes it wraps (errors included), keeping
    any a handler set itself (the raw-body download sets a stricter CSP; static files their own
    cache policy)."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != ScopeType.HTTP:
            await self.app(scope, receive, send)
            return

        async def send_with_headers(message: Message) -> None:
            if message["type"] == "http.response.start":
                headers = list(message.get("headers", []))
                present = {name.lower() for name, _ in headers}
                headers.extend((k, v) for k, v in HEADERS if k not in present)
                message["headers"] = headers
            await send(message)

        await self.app(scope, receive, send_with_headers)
