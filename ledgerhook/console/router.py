"""The ``/console`` router: pages, static files, the guard, the headers and the error pages."""

from __future__ import annotations

from collections.abc import Iterable
from pathlib import Path
from typing import Any

from litestar import Router
from litestar.datastructures import CacheControlHeader
from litestar.exceptions import HTTPException
from litestar.static_files import create_static_files_router

from ledgerhook.console.auth import PUBLIC, console_guard
from ledgerhook.console.errors import error_page
from ledgerhook.console.pages import alerts, deliveries, health, objects, session
from ledgerhook.console.security import SecurityHeadersMiddleware

__all__ = ["STATIC_DIR", "console_router"]

STATIC_DIR = Path(__file__).resolve().parent / "static"


def console_router(api_error_keys: Iterable[type[Exception] | int] = ()) -> Router:
    """The console. ``api_error_keys`` are the exception types the app maps to JSON errors: under
    ``/console`` each of them (and anything else) is rendered as an HTML error page instead."""
    static = create_static_files_router(
        path="/static",
        directories=[STATIC_DIR],
        name="console_static",
        opt={PUBLIC: True},
        cache_control=CacheControlHeader(max_age=3600),
        include_in_schema=False,
    )
    handlers: dict[Any, Any] = dict.fromkeys(api_error_keys, error_page)
    handlers.update({HTTPException: error_page, Exception: error_page})
    return Router(
        path="/console",
        route_handlers=[
            *session.handlers,
            *deliveries.handlers,
            *objects.handlers,
            *alerts.handlers,
            *health.handlers,
            static,
        ],
        guards=[console_guard],
        middleware=[SecurityHeadersMiddleware],
        exception_handlers=handlers,
        include_in_schema=False,
    )
