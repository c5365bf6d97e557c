"""The webhook endpoints: read, verify, append (group commit), answer; nothing else on the path.

``POST /webhooks/stripe`` and ``POST /webhooks/chargebee`` are the endpoints named ``default``;
``POST /webhooks/{provider}/{endpoint}`` reaches any configured endpoint. A delivery is answered
200 ``{"delivery_id": n, "duplicate": bool}`` only after its row is committed (see
:mod:`ingest.appender`); the Redis wake-up follows in the background. A refused request raises an
:mod:`ingest.errors` error carrying a :class:`RejectionContext`; ``ledgerhook.app`` turns it into
the HTTP answer and hands it to the rejection log.

``source_address`` is the client behind the trusted proxies (``LEDGERHOOK_API__TRUSTED_PROXIES``,
:mod:`ledgerhook.client_address`): the provider's address, not the ingress's. When that differs
from the TCP peer, the peer is kept as an ``x-ledgerhook-peer`` header appended after the received
ones in the stored headers (the forwarding headers themselves are stored as received).

``EndpointSettings.fetch_back`` needs nothing here: such deliveries are stored like any other
and checked against the provider's API afterwards (alerts), never on the request path.
"""

from __future__ import annotations

import time
from datetime import UTC, datetime
from typing import Any

import msgspec
from litestar import Request, Response, post

from audit.append import NewDelivery
from ingest.body import check_headers, declared_length, read_body
from ingest.errors import (
    BodyTimeout,
    BodyTooLarge,
    HeadersTooLarge,
    Rejected,
    Unavailable,
    UnknownEndpoint,
)
from ingest.headers import bounded_headers, header_map, headers_json, peer_header
from ingest.providers import VERIFIERS
from ingest.rejection_log import RejectionContext
from ingest.runtime import IngestRuntime
from ledgerhook import metrics
from ledgerhook.client_address import scope_address
from ledgerhook.http_errors import documented

__all__ = ["webhook_routes"]

_encoder = msgspec.json.Encoder()


_counters: dict[tuple[str, str, str], Any] = {}

# What each refusal looks like, for the OpenAPI schema (``error`` is the ingest reason code).
_REFUSED = {
    "s400": "Not accepted: a bad or missing Stripe signature (`error`: missing_signature, "
    "malformed_signature, no_matching_signature, timestamp_out_of_tolerance) or a body that is "
    "not an event (invalid_json, not_an_object, missing_field, invalid_field). Stripe retries "
    "a 400 like any failure.",
    "s401": "Chargebee HTTP Basic credentials missing or wrong (`error`: missing_credentials, "
    "malformed_credentials, bad_credentials), with `WWW-Authenticate: Basic`.",
    "s404": "No such endpoint is configured (`error`: unknown_endpoint).",
    "s408": "The body arrived too slowly (`error`: body_timeout).",
    "s413": "The body is larger than `INGEST__MAX_BODY_BYTES` (`error`: body_too_large).",
    "s431": "Too many or too large headers (`error`: headers_too_large).",
    "s503": "Not stored now (database down, commit timed out, too many waiting): nothing was "
    "acknowledged, retry after `Retry-After` seconds (`error`: unavailable).",
}
_ACCEPTED = (
    'Answers 200 `{"delivery_id": n, "duplicate": bool}` only once the delivery is committed '
    "to the audit log (a repeat delivery is stored too, and marked duplicate); every refusal is "
    "recorded in the rejection log."
)


def _received(provider: str, endpoint: str, outcome: str) -> Any:
    """The labelled counter child, cached: ``labels()`` costs a lock and a tuple per call.

    Only configured endpoints reach here, so the cache is bounded by the settings."""
    key = (provider, endpoint, outcome)
    child = _counters.get(key)
    if child is None:
        child = _counters[key] = metrics.deliveries_received.labels(provider, endpoint, outcome)
    return child


class Accepted(msgspec.Struct, frozen=True, kw_only=True):
    delivery_id: int
    duplicate: bool


async def receive(request: Request[Any, Any, Any], provider: str, name: str) -> Response[bytes]:
    runtime: IngestRuntime = request.app.state.ingest
    received_at = datetime.now(UTC)
    scope = request.scope
    raw_headers = list(scope["headers"])
    client = scope.get("client")
    peer = client[0] if client else None
    api = runtime.settings.api
    source = scope_address(scope, api.trusted_proxies, api.proxy_header)
    endpoint = runtime.endpoints.get((provider, name))
    body = b""
    size = 0
    limits = runtime.settings.ingest
    try:
        check_headers(raw_headers, limits.max_header_bytes, limits.max_headers)
        if endpoint is None:
            raise UnknownEndpoint(message=f"no webhook endpoint {provider}/{name}")
        body = await read_body(
            request.receive,
            limits.max_body_bytes,
            declared_length(raw_headers),
            limits.body_timeout_seconds,
        )
        size = len(body)
        headers = header_map(raw_headers)
        verified = VERIFIERS[provider](headers, body, time.time(), endpoint)
    except Rejected as exc:
        if isinstance(exc, BodyTooLarge | BodyTimeout):
            body, size = exc.partial, exc.size
        if isinstance(exc, HeadersTooLarge):  # keep the record bounded too
            raw_headers = bounded_headers(raw_headers, limits.max_header_bytes)
        if source != peer:
            raw_headers.append(peer_header(peer))
        exc.context = RejectionContext(
            received_at=received_at,
            provider=provider,
            endpoint=name,
            known=endpoint is not None,
            source_address=source,
            headers=headers_json(raw_headers),
            body=body,
            body_size=size,
        )
        raise
    assert endpoint is not None
    if source != peer:
        raw_headers.append(peer_header(peer))
    delivery = NewDelivery(
        received_at=received_at,
        provider=provider,
        endpoint=endpoint.name,
        account=verified.account,
        event_id=verified.event_id,
        event_type=verified.event_type,
        event_created=verified.event_created,
        object_id=verified.object_id,
        source_address=source,
        content_type=headers.get("content-type"),
        headers=headers_json(raw_headers),
        verification=verified.verification,
        body=body,
    )
    try:
        row = await runtime.appender.append(delivery)
    except Unavailable:
        _received(provider, endpoint.name, "unavailable").inc()
        raise
    outcome = "duplicate" if row.duplicate else "stored"
    _received(provider, endpoint.name, outcome).inc()
    return Response(
        _encoder.encode(Accepted(delivery_id=row.id, duplicate=row.duplicate)),
        status_code=200,
        media_type="application/json",
    )


@post(
    "/webhooks/stripe",
    status_code=200,
    name="webhook_stripe",
    summary="Receive a Stripe webhook",
    description="Point Stripe's webhook endpoint here (the endpoint named `default`, secrets from "
    "`LEDGERHOOK_STRIPE_WEBHOOK_SECRETS`). The `Stripe-Signature` header must verify against the "
    "exact body. " + _ACCEPTED,
    responses=documented(400, 404, 408, 413, 431, 503, **_REFUSED),
    tags=["webhooks"],
)
async def stripe_default(request: Request[Any, Any, Any]) -> Response[bytes]:
    """A Stripe delivery to the endpoint named ``default``."""
    return await receive(request, "stripe", "default")


@post(
    "/webhooks/chargebee",
    status_code=200,
    name="webhook_chargebee",
    summary="Receive a Chargebee webhook",
    description="Point Chargebee's webhook here (the endpoint named `default`), with HTTP Basic "
    "credentials from `LEDGERHOOK_CHARGEBEE_BASIC_AUTH`. " + _ACCEPTED,
    responses=documented(400, 401, 404, 408, 413, 431, 503, **_REFUSED),
    tags=["webhooks"],
)
async def chargebee_default(request: Request[Any, Any, Any]) -> Response[bytes]:
    """A Chargebee delivery to the endpoint named ``default``."""
    return await receive(request, "chargebee", "default")


@post(
    "/webhooks/{provider:str}/{endpoint:str}",
    status_code=200,
    name="webhook_named",
    summary="Receive a webhook on a named endpoint",
    description="A configured `[[endpoints]]` entry (several Stripe accounts or Chargebee sites): "
    "`provider` is `stripe` or `chargebee`, `endpoint` its name; verified like the default "
    "endpoints. " + _ACCEPTED,
    responses=documented(400, 401, 404, 408, 413, 431, 503, **_REFUSED),
    tags=["webhooks"],
)
async def named(request: Request[Any, Any, Any]) -> Response[bytes]:
    """A delivery to a configured named endpoint."""
    params = request.path_params
    return await receive(request, params["provider"], params["endpoint"])


webhook_routes = [stripe_default, chargebee_default, named]
