"""Errors to Sentry, request ids in logs, and the worker's own ``/metrics``.

Sentry sees nothing it should not: ``send_default_pii`` is off, request bodies are never
attached (``max_request_body_size="never"``), frame locals are not collected, and
:func:`scrub_event` runs on every event and breadcrumb before it leaves the process. It removes
request bodies, cookies and credential headers, and replaces every configured secret value
wherever it appears (messages, exception values, extra data) with ``[Filtered]``, so a secret
that ends up in an exception message by accident is still not sent.

Request ids: :class:`RequestIdMiddleware` binds ``request_id`` to the log context (and a Sentry
tag) for the whole request and echoes it in ``X-Request-ID``. Worker jobs use
:func:`delivery_scope` to bind ``delivery_id``/``job_id`` the same way.

Worker metrics: the worker is a separate process with no HTTP server, so
:func:`start_worker_metrics` serves the registry on ``LEDGERHOOK_WORKER_METRICS_PORT``. Under
``ledgerhook run`` both processes share one ``PROMETHEUS_MULTIPROC_DIR`` instead, and the API's
``/metrics`` shows the worker's metrics as well.
"""

from __future__ import annotations

import os
import re
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from typing import Any, Literal

import msgspec
import sentry_sdk
from litestar.enums import ScopeType
from litestar.types import ASGIApp, Message, Receive, Scope, Send
from prometheus_client import CollectorRegistry, start_http_server
from prometheus_client import multiprocess as _mp
from prometheus_client.registry import REGISTRY

from ledgerhook.logs import bind, log_context
from ledgerhook.settings import Secret, Settings

__all__ = [
    "REQUEST_ID_HEADER",
    "RequestIdMiddleware",
    "delivery_scope",
    "init_sentry",
    "scrub_crumb",
    "scrub_event",
    "secret_values",
    "start_worker_metrics",
]

FILTERED = "[Filtered]"
REQUEST_ID_HEADER = "x-request-id"
# Header names whose values are credentials or signatures (compared lower-case).
SENSITIVE_HEADERS = frozenset(
    {
        "authorization",
        "proxy-authorization",
        "cookie",
        "set-cookie",
        "stripe-signature",
        "x-api-key",
        "x-chargebee-signature",
    }
)
_TAGGED = ("request_id", "delivery_id", "job_id", "job_try")
_REQUEST_ID = re.compile(r"^[A-Za-z0-9._:-]{1,64}$")
# Secrets shorter than this are not substituted: replacing "a" everywhere would shred events.
_MIN_SECRET_LEN = 6


def secret_values(value: Any) -> frozenset[str]:
    """Every :class:`Secret` value reachable from ``value`` (settings, sections, tuples).

    A Chargebee ``user:password`` pair also yields its password alone, the part that leaks.
    """
    found: set[str] = set()

    def walk(obj: Any) -> None:
        if isinstance(obj, Secret):
            raw = obj.reveal()
            found.add(raw)
            if ":" in raw and not raw.startswith(("postgres", "redis", "http")):
                found.add(raw.partition(":")[2])
            # Passwords inside URLs (database, Redis, notifier) are secrets of their own.
            match = re.match(r"^[a-z]+://[^:/@]*:([^@]+)@", raw)
            if match:
                found.add(match.group(1))
        elif isinstance(obj, msgspec.Struct):
            for field in obj.__struct_fields__:
                walk(getattr(obj, field))
        elif isinstance(obj, list | tuple):
            for item in obj:
                walk(item)

    walk(value)
    return frozenset(s for s in found if len(s) >= _MIN_SECRET_LEN)


def _redact(obj: Any, secrets: frozenset[str]) -> Any:
    if isinstance(obj, str):
        for secret in secrets:
            if secret in obj:
                obj = obj.replace(secret, FILTERED)
        return obj
    if isinstance(obj, dict):
        return {k: _redact(v, secrets) for k, v in obj.items()}
    if isinstance(obj, list):
        return [_redact(v, secrets) for v in obj]
    if isinstance(obj, tuple):
        return tuple(_redact(v, secrets) for v in obj)
    return obj


def _scrub_headers(headers: Any) -> Any:
    if isinstance(headers, Mapping):
        return {
            k: (FILTERED if str(k).lower() in SENSITIVE_HEADERS else v) for k, v in headers.items()
        }
    if isinstance(headers, list):  # [[name, value], ...]
        out: list[Any] = []
        for item in headers:
            if isinstance(item, list | tuple) and len(item) == 2:
                name = str(item[0]).lower()
                out.append([item[0], FILTERED if name in SENSITIVE_HEADERS else item[1]])
            else:
                out.append(item)
        return out
    return headers


def scrub_crumb(crumb: Any) -> Any:
    """A breadcrumb without bodies or credential headers (HTTP client crumbs carry them)."""
    if isinstance(crumb, dict) and isinstance(crumb.get("data"), dict):
        data = {k: v for k, v in crumb["data"].items() if k not in {"body", "data"}}
        if "headers" in data:
            data["headers"] = _scrub_headers(data["headers"])
        return {**crumb, "data": data}
    return crumb


def scrub_event(event: dict[str, Any], secrets: frozenset[str]) -> dict[str, Any]:
    """The event with bodies, cookies, credential headers and secret values removed (pure)."""
    out: dict[str, Any] = dict(event)
    request = out.get("request")
    if isinstance(request, dict):
        request = {k: v for k, v in request.items() if k not in {"data", "cookies", "env"}}
        if "headers" in request:
            request["headers"] = _scrub_headers(request["headers"])
        out["request"] = request
    # Breadcrumbs of HTTP calls carry URLs and sometimes bodies; drop bodies, keep the rest.
    crumbs = out.get("breadcrumbs")
    if isinstance(crumbs, dict) and isinstance(crumbs.get("values"), list):
        out["breadcrumbs"] = {**crumbs, "values": [scrub_crumb(c) for c in crumbs["values"]]}
    redacted: dict[str, Any] = _redact(out, secrets)
    return redacted


def init_sentry(
    settings: Settings, component: Literal["api", "worker", "sequencer"], *, transport: Any = None
) -> bool:
    """Start Sentry when ``LEDGERHOOK_SENTRY_DSN`` is set; a no-op (``False``) otherwise."""
    if settings.sentry_dsn is None or not settings.sentry_dsn.reveal():
        return False
    secrets = secret_values(settings)

    def before_send(event: Any, hint: Any) -> Any:
        # Ids bound with ``ledgerhook.logs.bind`` (request, delivery, job) become tags, so an
        # error logged or raised inside a job carries its delivery id without extra code.
        bound = log_context.get() or {}
        tags = {k: str(bound[k]) for k in _TAGGED if k in bound}
        if tags:
            event = {**event, "tags": {**tags, **(event.get("tags") or {})}}
        return scrub_event(event, secrets)

    def before_breadcrumb(crumb: Any, hint: Any) -> Any:
        return _redact(scrub_crumb(crumb), secrets)

    options: dict[str, Any] = {}
    if transport is not None:
        options["transport"] = transport
    sentry_sdk.init(
        dsn=settings.sentry_dsn.reveal(),
        environment=settings.environment,
        send_default_pii=False,
        max_request_body_size="never",
        include_local_variables=False,
        before_send=before_send,
        before_breadcrumb=before_breadcrumb,
        traces_sample_rate=0.0,
        **options,
    )
    sentry_sdk.set_tag("component", component)
    return True


@contextmanager
def delivery_scope(delivery_id: int, *, job_id: str | None = None) -> Iterator[None]:
    """Bind a delivery (and job) id to logs and to any Sentry event raised inside."""
    ids: dict[str, Any] = {"delivery_id": delivery_id}
    if job_id is not None:
        ids["job_id"] = job_id
    with sentry_sdk.isolation_scope() as scope, bind(**ids):
        scope.set_tag("delivery_id", str(delivery_id))
        if job_id is not None:
            scope.set_tag("job_id", job_id)
        yield


class RequestIdMiddleware:
    """ASGI middleware: a request id per HTTP request, bound to logs, echoed in the response.

    A well-formed incoming ``X-Request-ID`` (from a proxy) is kept so ids join up across hops;
    anything else is replaced by a fresh one (never trust arbitrary header text into logs).
    """

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != ScopeType.HTTP:
            await self.app(scope, receive, send)
            return
        incoming = ""
        for name, value in scope.get("headers", ()):
            if name.lower() == REQUEST_ID_HEADER.encode():
                incoming = value.decode("latin-1")
                break
        # 32 hex characters like uuid4().hex, at a fraction of its cost (it is per request).
        request_id = incoming if _REQUEST_ID.match(incoming) else os.urandom(16).hex()
        header = (REQUEST_ID_HEADER.encode(), request_id.encode())

        async def send_with_id(message: Message) -> None:
            if message["type"] == "http.response.start":
                headers = [h for h in message.get("headers", ()) if h[0].lower() != header[0]]
                message = {**message, "headers": [*headers, header]}
            await send(message)

        if not sentry_sdk.get_client().is_active():
            # No DSN: an isolation scope would only copy Sentry's scopes for nothing (it cost
            # ~5% of the ingest server's CPU under load).
            with bind(request_id=request_id):
                await self.app(scope, receive, send_with_id)
            return
        with sentry_sdk.isolation_scope() as sentry_scope, bind(request_id=request_id):
            sentry_scope.set_tag("request_id", request_id)
            await self.app(scope, receive, send_with_id)


def start_worker_metrics(settings: Settings) -> Any:
    """Serve the worker's metrics on ``worker_metrics_port``; ``None`` when disabled.

    In multi-process mode the aggregate of every process's files is served, like the API does.
    """
    if settings.worker_metrics_port <= 0:
        return None
    registry: CollectorRegistry = REGISTRY
    if os.environ.get("PROMETHEUS_MULTIPROC_DIR"):
        registry = CollectorRegistry()
        _mp.MultiProcessCollector(registry)  # type: ignore[no-untyped-call]
    server, _thread = start_http_server(
        settings.worker_metrics_port, addr=settings.worker_metrics_host, registry=registry
    )
    return server
