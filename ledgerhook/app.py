"""The Litestar application: one app for webhooks, health, audit, state, alerts and the console.

``create_app(settings)`` builds everything from the settings it is given; nothing is created at
import time. Long-lived resources (the PostgreSQL pool, the Redis clients of ingest and of the
token guard's brute-force brake, the ingest appender, the checkpoint signing key) are opened in
the lifespan or at creation and reached by handlers through ``app.state`` / dependencies. Each
package's errors are mapped to HTTP responses here, in one place (:data:`EXCEPTION_HANDLERS`), and
so are Litestar's own (validation, unknown route, wrong method): every error has the one shape of
:mod:`ledgerhook.http_errors`.
"""

from __future__ import annotations

import logging
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from http import HTTPStatus
from typing import Any

import asyncpg
from litestar import Litestar, Request, Response
from litestar.datastructures import State
from litestar.di import Provide
from litestar.exceptions import HTTPException
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
from audit.brake import open_brake
from audit.checkpoints import load_signer
from audit.errors import (
    AuditError,
    AuthError,
    Forbidden,
    InvalidQuery,
    InvalidRange,
    NotFound,
    NotVerified,
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
from ledgerhook.console.templating import template_config as console_template_config
from ledgerhook.db import create_pool
from ledgerhook.docs_ui import LocalSwaggerUI
from ledgerhook.gc_tuning import freeze_startup_objects
from ledgerhook.http_errors import ErrorBody, code_for, error_response
from ledgerhook.observability import RequestIdMiddleware, init_sentry
from ledgerhook.settings import Settings
from processors.coexist.errors import (
    AuthorityConflict,
    InvalidChange,
    InvalidImport,
    LinkConflict,
    MigrationNotFound,
)
from processors.errors import (
    DeliveryNotFound,
    InvalidStateQuery,
    InvalidSyncRequest,
    JobQueueUnavailable,
    ProcessorError,
    ProviderError,
    StateNotFound,
    SyncBusy,
    SyncNotConfigured,
)

__all__ = ["create_app"]

API_DESCRIPTION = """Verified, append-only, exactly-once Stripe and Chargebee webhooks.

Webhook routes take the providers' own credentials. Every other route but health and metrics takes
`Authorization: Bearer lh_...` (`ledgerhook token create --role auditor|oncall|admin`).

Every error answers `{"status_code", "detail", "error"}`: `detail` is for people, `error` a short
machine code (`invalid_parameter`, `unauthenticated`, `forbidden`, `not_found`, `conflict`,
`too_many_attempts`, `unavailable`, ...; webhook refusals carry their reason code).
"""


log = logging.getLogger(__name__)

Error = Response[ErrorBody]


def _database_error(request: Request[Any, Any, Any], exc: Exception) -> Error:
    """PostgreSQL refused a value the caller sent (an id beyond bigint, a NUL in a text): 400.
    Unreachable: 503, so callers retry. Never a 500 for input or an outage."""
    if isinstance(exc, asyncpg.DataError):
        return error_response(400, "a parameter value is out of range or not storable")
    return error_response(503, "the database is unavailable", headers={"Retry-After": "5"})


def _audit_error(request: Request[Any, Any, Any], exc: AuditError) -> Error:
    if isinstance(exc, NotFound):
        return error_response(404, str(exc) or "not found")
    if isinstance(exc, InvalidQuery | InvalidRange):
        return error_response(400, str(exc))
    if isinstance(exc, NotVerified):
        return error_response(409, str(exc))
    return _unexpected(request, exc)


def _auth_error(request: Request[Any, Any, Any], exc: AuthError) -> Error:
    if isinstance(exc, Forbidden):
        return error_response(403, str(exc))
    if isinstance(exc, TooManyAttempts):
        return error_response(429, str(exc), headers={"Retry-After": str(exc.retry_after)})
    detail = str(exc) if isinstance(exc, Unauthenticated) else ""
    return error_response(
        401, detail or "not authenticated", headers={"WWW-Authenticate": "Bearer"}
    )


def _ingest_error(request: Request[Any, Any, Any], exc: IngestError) -> Error:
    """Webhook refusals answer with their ingest reason code (what providers and the rejection
    log see), and are recorded in ``audit.rejections``."""
    if isinstance(exc, Unavailable):
        return error_response(503, str(exc), headers={"Retry-After": str(exc.retry_after)})
    if not isinstance(exc, Rejected):  # ClientGone: nobody is listening
        return error_response(400, "the request ended before its body", code="incomplete_request")
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
    return error_response(status, str(exc), code=exc.reason, headers=headers)


def _alerts_error(request: Request[Any, Any, Any], exc: AlertsError) -> Error:
    if isinstance(exc, AlertNotFound):
        return error_response(404, str(exc) or "not found")
    if isinstance(exc, NotConfigured):
        return error_response(400, str(exc), code="not_configured")
    if isinstance(exc, InvalidAlertQuery):
        return error_response(400, str(exc))
    if isinstance(exc, IllegalTransition):
        return error_response(409, str(exc))
    if isinstance(exc, ProviderApiError):
        return error_response(502, str(exc))
    return _unexpected(request, exc)


def _processor_error(request: Request[Any, Any, Any], exc: ProcessorError) -> Error:
    if isinstance(exc, StateNotFound | DeliveryNotFound | MigrationNotFound):
        return error_response(404, str(exc) or "not found")
    if isinstance(exc, InvalidImport | InvalidChange):
        return error_response(400, str(exc))
    if isinstance(exc, LinkConflict | AuthorityConflict):
        return error_response(409, str(exc))
    if isinstance(exc, SyncNotConfigured):
        return error_response(400, str(exc), code="not_configured")
    if isinstance(exc, InvalidStateQuery | InvalidSyncRequest):
        return error_response(400, str(exc))
    if isinstance(exc, SyncBusy):
        return error_response(409, str(exc))
    if isinstance(exc, JobQueueUnavailable):
        return error_response(503, str(exc), headers={"Retry-After": "5"})
    if isinstance(exc, ProviderError):
        return error_response(502, str(exc))
    return _unexpected(request, exc)


def _validation_detail(extra: Any) -> tuple[str, list[dict[str, Any]] | None]:
    """A sentence naming each bad parameter, from Litestar's validation details."""
    if not isinstance(extra, list) or not all(isinstance(e, dict) for e in extra):
        return "invalid request", None
    parts = []
    for e in extra:
        source = getattr(e.get("source"), "value", e.get("source"))  # Litestar's ParamType
        where = f"{source} parameter {e['key']}" if source and e.get("key") else e.get("key")
        parts.append(f"{where}: {e.get('message', 'invalid')}" if where else str(e.get("message")))
    return "; ".join(parts), extra


def _http_error(request: Request[Any, Any, Any], exc: HTTPException) -> Error:
    """Litestar's own errors (validation, unknown route, wrong method, ...) in our shape."""
    status = exc.status_code
    headers = dict(exc.headers or {})
    extra = None
    if status == 400 and exc.extra:
        detail, extra = _validation_detail(exc.extra)
    elif status == 404 and exc.detail in {"", HTTPStatus.NOT_FOUND.phrase}:
        detail = f"no such route: {request.method} {request.url.path}"
    elif status == 405:
        allowed = headers.get("allow") or headers.get("Allow") or ""
        detail = f"{request.method} is not allowed on {request.url.path}" + (
            f" (allowed: {allowed})" if allowed else ""
        )
    elif status == 500:
        return _unexpected(request, exc)
    else:
        detail = exc.detail or code_for(status).replace("_", " ")
    return error_response(status, detail, headers=headers or None, extra=extra)


def _unexpected(request: Request[Any, Any, Any], exc: Exception) -> Error:
    """A bug: one log line with the traceback (and Sentry, through its Litestar hook), a 500."""
    log.error("unhandled error in %s %s", request.method, request.url.path, exc_info=exc)
    return error_response(500, "internal error (logged with the request id)")


EXCEPTION_HANDLERS: dict[int | type[Exception], Any] = {
    HTTPException: _http_error,
    Exception: _unexpected,
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
    from audit.tree_routes import routes as tree_routes
    from ingest.routes import routes as ingest_routes
    from ledgerhook.console import console_router
    from processors.coexist.routes import routes as migration_routes
    from processors.routes import routes as state_routes
    from processors.sync.routes import routes as sync_routes

    return [
        *ingest_routes,
        *audit_routes,
        *tree_routes,
        *state_routes,
        *sync_routes,
        *alert_routes,
        *migration_routes,
        console_router(EXCEPTION_HANDLERS),
    ]


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

    # The checkpoint key, once: a missing production key stops the server here, not a request.
    signer = load_signer(settings)

    @asynccontextmanager
    async def lifespan(app: Litestar) -> AsyncIterator[None]:
        own = pool is None
        app.state.pool = await _open_pool(settings) if own else pool
        try:
            async with open_brake(settings) as brake:
                app.state.brake = brake
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
        template_config=console_template_config(),
        openapi_config=OpenAPIConfig(
            title="Ledgerhook",
            version="0.1.0",
            description=API_DESCRIPTION,
            path="/schema",
            # Each operation's docstring is its description (summaries are in the decorators).
            use_handler_docstrings=True,
            # Swagger UI from the installed package at /schema (and /schema/swagger), no CDN.
            render_plugins=[LocalSwaggerUI(schema_path="/schema")],
            # Read/ops routes take `Authorization: Bearer lh_...` (ledgerhook token create).
            components=Components(
                security_schemes={"bearer": SecurityScheme(type="http", scheme="bearer")}
            ),
        ),
        state=State({"settings": settings, "signer": signer}),
        # Logging is ledgerhook.logs' alone: Litestar's default config would replace the root
        # handler with its own format (uvicorn's lines came out in a third format) and level.
        logging_config=None,
        debug=False,
    )
