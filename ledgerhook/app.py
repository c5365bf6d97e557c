"""The Litestar application: one app for webhooks, health, audit, state and alerts routes.

``create_app(settings)`` builds everything from the settings it is given; nothing is created at
import time. Long-lived resources (the PostgreSQL pool, the Redis pool, the ingest appender) are
opened in the lifespan and reached by handlers through ``app.state`` / dependencies. Each
package's errors are mapped to HTTP responses here, in one place (:data:`EXCEPTION_HANDLERS`).
"""

from __future__ import annotations

import logging
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any

import asyncpg
from litestar import Litestar, Request, Response
from litestar.datastructures import State
from litestar.di import Provide
from litestar.openapi import OpenAPIConfig
from litestar.openapi.spec import Components, SecurityScheme

from alerts.errors import (
    AlertNotFound,
    AlertsError,
    IllegalTransition,
    InvalidAlertQuery,
    NotConfigured,
    ProviderApiError,
)
from audit.errors import (
    AuditError,
    AuthError,
    Forbidden,
    InvalidQuery,
    NotFound,
    TooManyAttempts,
    Unauthenticated,
)
from ingest.errors import (
    BodyTimeout,
    BodyTooLarge,
    CredentialsError,
    HeadersTooLarge,
    IngestError,
    Rejected,
    Unavailable,
    UnknownEndpoint,
)
from ingest.latency import latency_middleware
from ingest.providers.chargebee import WWW_AUTHENTICATE
from ingest.runtime import ingest_lifespan, record_rejection
from ledgerhook.db import create_pool
from ledgerhook.gc_tuning import freeze_startup_objects
from ledgerhook.observability import RequestIdMiddleware, init_sentry
from ledgerhook.settings import Settings
from processors.coexist.errors import (
    AuthorityConflict,
    InvalidChange,
    InvalidImport,
    LinkConflict,
    MigrationNotFound,
)
from processors.errors import DeliveryNotFound, InvalidStateQuery, ProcessorError, StateNotFound

__all__ = ["create_app"]


def _error(
    status: int, reason: str, detail: str | None = None, headers: dict[str, str] | None = None
) -> Response[dict[str, Any]]:
    """Every error has one shape: Litestar's documented ``{status_code, detail}`` plus our
    ``error`` (a short reason code for ingest refusals, else the message)."""
    return Response(
        {"status_code": status, "detail": detail or reason, "error": reason},
        status_code=status,
        headers=headers,
    )


def _database_error(request: Request[Any, Any, Any], exc: Exception) -> Response[dict[str, Any]]:
    """PostgreSQL refused a value the caller sent (an id beyond bigint, a NUL in a text): 400.
    Unreachable: 503, so callers retry. Never a 500 for input or an outage."""
    if isinstance(exc, asyncpg.DataError):
        return _error(400, "invalid value", "a parameter value is out of range or not storable")
    return _error(503, "unavailable", "the database is unavailable", {"Retry-After": "5"})


def _audit_error(request: Request[Any, Any, Any], exc: AuditError) -> Response[dict[str, Any]]:
    if isinstance(exc, NotFound):
        return _error(404, str(exc) or "not found")
    if isinstance(exc, InvalidQuery):
        return _error(400, str(exc))
    return _error(500, "audit error")


def _auth_error(request: Request[Any, Any, Any], exc: AuthError) -> Response[dict[str, Any]]:
    if isinstance(exc, Unauthenticated):
        return _error(401, str(exc), headers={"WWW-Authenticate": "Bearer"})
    if isinstance(exc, Forbidden):
        return _error(403, str(exc))
    if isinstance(exc, TooManyAttempts):
        return _error(429, str(exc), headers={"Retry-After": str(exc.retry_after)})
    return _error(401, "not authenticated")


def _ingest_error(request: Request[Any, Any, Any], exc: IngestError) -> Response[dict[str, Any]]:
    if isinstance(exc, Unavailable):
        return _error(503, "unavailable", str(exc), {"Retry-After": str(exc.retry_after)})
    if not isinstance(exc, Rejected):  # ClientGone: nobody is listening
        return _error(400, "incomplete request")
    headers: dict[str, str] = {}
    if isinstance(exc, UnknownEndpoint):
        status = 404
    elif isinstance(exc, BodyTooLarge):
        status = 413
    elif isinstance(exc, HeadersTooLarge):
        status = 431
    elif isinstance(exc, BodyTimeout):
        status = 408
        headers["Connection"] = "close"
    elif isinstance(exc, CredentialsError):
        status = 401
        headers["WWW-Authenticate"] = WWW_AUTHENTICATE
    else:  # bad envelope, bad Stripe signature: 400, as Stripe expects
        status = 400
    record_rejection(request.app.state, exc, status)
    return _error(status, exc.reason, str(exc), headers)


def _alerts_error(request: Request[Any, Any, Any], exc: AlertsError) -> Response[dict[str, Any]]:
    if isinstance(exc, AlertNotFound):
        return _error(404, str(exc) or "not found")
    if isinstance(exc, InvalidAlertQuery | NotConfigured):
        return _error(400, str(exc))
    if isinstance(exc, IllegalTransition):
        return _error(409, str(exc))
    if isinstance(exc, ProviderApiError):
        return _error(502, str(exc))
    return _error(500, "alerts error")


def _processor_error(
    request: Request[Any, Any, Any], exc: ProcessorError
) -> Response[dict[str, Any]]:
    if isinstance(exc, StateNotFound | DeliveryNotFound | MigrationNotFound):
        return _error(404, str(exc) or "not found")
    if isinstance(exc, InvalidStateQuery | InvalidImport | InvalidChange):
        return _error(400, str(exc))
    if isinstance(exc, LinkConflict | AuthorityConflict):
        return _error(409, str(exc))
    return _error(500, "processors error")


EXCEPTION_HANDLERS: dict[int | type[Exception], Any] = {
    AlertsError: _alerts_error,
    AuditError: _audit_error,
    AuthError: _auth_error,
    IngestError: _ingest_error,
    ProcessorError: _processor_error,
    asyncpg.DataError: _database_error,
    asyncpg.PostgresConnectionError: _database_error,
    asyncpg.CannotConnectNowError: _database_error,
    asyncpg.TooManyConnectionsError: _database_error,
    ConnectionError: _database_error,
}


def route_handlers() -> list[Any]:
    """Every package's routes. Each package exposes its handlers in a ``routes`` list."""
    from alerts.routes import routes as alert_routes
    from audit.routes import routes as audit_routes
    from ingest.routes import routes as ingest_routes
    from processors.coexist.routes import routes as migration_routes
    from processors.routes import routes as state_routes

    return [*ingest_routes, *audit_routes, *state_routes, *alert_routes, *migration_routes]


async def _open_pool(settings: Settings) -> asyncpg.Pool:
    """The pool; with PostgreSQL down at start, a lazy one, so the server still starts and answers
    503 (not ready, deliveries refused) until PostgreSQL is back, instead of crash-looping."""
    try:
        return await create_pool(settings)
    except (OSError, TimeoutError, asyncpg.PostgresError, asyncpg.InterfaceError) as exc:
        logging.getLogger(__name__).error(
            "PostgreSQL unavailable at start (%s); serving 503 until it is back",
            type(exc).__name__,
        )
        return await create_pool(settings, min_size=0)


def create_app(settings: Settings, *, pool: asyncpg.Pool | None = None) -> Litestar:
    """The app. ``pool`` lets tests share one pool; otherwise the lifespan opens and closes one."""

    @asynccontextmanager
    async def lifespan(app: Litestar) -> AsyncIterator[None]:
        own = pool is None
        app.state.pool = await _open_pool(settings) if own else pool
        try:
            yield
        finally:
            if own:
                await app.state.pool.close()

    async def provide_pool(state: State) -> asyncpg.Pool:
        p: asyncpg.Pool = state.pool
        return p

    return Litestar(
        route_handlers=route_handlers(),
        lifespan=[lifespan, ingest_lifespan],
        middleware=[RequestIdMiddleware, latency_middleware],
        # No parameters: Litestar passes the app to a startup hook whose signature has any (a
        # partial keeps ``transport``), which made every server fail to start.
        on_startup=[lambda: init_sentry(settings, "api"), freeze_startup_objects],
        dependencies={
            "settings": Provide(lambda: settings, use_cache=True, sync_to_thread=False),
            "pool": Provide(provide_pool),
        },
        exception_handlers=EXCEPTION_HANDLERS,
        openapi_config=OpenAPIConfig(
            title="Ledgerhook",
            version="0.1.0",
            path="/schema",
            # Read/ops routes take `Authorization: Bearer lh_...` (ledgerhook token create).
            components=Components(
                security_schemes={"bearer": SecurityScheme(type="http", scheme="bearer")}
            ),
        ),
        state=State({"settings": settings}),
        debug=False,
    )
