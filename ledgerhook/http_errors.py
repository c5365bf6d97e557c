"""One shape for every error the HTTP API answers: ``{"status_code", "detail", "error"}``.

``detail`` is a sentence for people; ``error`` is a short, stable machine code for programs, never
a copy of the sentence. Webhook refusals carry the ingest reason code (``no_matching_signature``,
``body_too_large``, ...); everything else one of :data:`CODES`, chosen by status. Validation errors
also carry ``extra``: a list of ``{"key", "source", "message"}`` naming each bad parameter.

Which exception becomes which status is decided in one place, ``ledgerhook.app``; this module only
builds the body (and documents it in the OpenAPI schema with :func:`documented`).
"""

from __future__ import annotations

from http import HTTPStatus
from typing import Any

import msgspec
from litestar import MediaType, Response
from litestar.openapi.datastructures import ResponseSpec

__all__ = ["CODES", "ErrorBody", "code_for", "documented", "error_response"]

# The codes of API errors by status (webhook refusals have the ingest reason codes instead).
CODES: dict[int, str] = {
    400: "invalid_parameter",
    401: "unauthenticated",
    403: "forbidden",
    404: "not_found",
    405: "method_not_allowed",
    408: "request_timeout",
    409: "conflict",
    413: "body_too_large",
    415: "unsupported_media_type",
    429: "too_many_attempts",
    431: "headers_too_large",
    500: "internal_error",
    502: "provider_api_error",
    503: "unavailable",
}


class ErrorBody(msgspec.Struct, frozen=True, kw_only=True, omit_defaults=True):
    """An error response."""

    status_code: int
    detail: str
    error: str
    extra: list[dict[str, Any]] | None = None


def code_for(status: int) -> str:
    """The code of ``status``: :data:`CODES`, else the reason phrase in snake case."""
    if status in CODES:
        return CODES[status]
    try:
        phrase = HTTPStatus(status).phrase
    except ValueError:
        return "error"
    return phrase.lower().replace("-", " ").replace(" ", "_")


def error_response(
    status: int,
    detail: str,
    *,
    code: str | None = None,
    headers: dict[str, str] | None = None,
    extra: list[dict[str, Any]] | None = None,
) -> Response[ErrorBody]:
    return Response(
        ErrorBody(status_code=status, detail=detail, error=code or code_for(status), extra=extra),
        status_code=status,
        headers=headers,
        media_type=MediaType.JSON,  # also from routes whose own media type is not JSON
    )


_WHEN = {
    400: "Invalid parameter or body (`error`: invalid_parameter; `extra` names the parameter).",
    401: "Missing, malformed, unknown or revoked bearer token (`error`: unauthenticated).",
    403: "The token's role may not do this (`error`: forbidden).",
    404: "No such object (`error`: not_found).",
    409: "Not possible in the object's current state (`error`: conflict).",
    429: "Too many failed authentications from this address (`error`: too_many_attempts).",
    502: "The provider's API failed or answered nonsense (`error`: provider_api_error).",
    503: "The database is unavailable; retry (`error`: unavailable).",
}


def documented(*statuses: int, **descriptions: str) -> dict[int, ResponseSpec]:
    """OpenAPI responses for a route's error statuses, all with :class:`ErrorBody`.

    ``descriptions`` override the default sentence per status, keyed ``s400=...``.
    """
    return {
        status: ResponseSpec(
            data_container=ErrorBody,
            description=descriptions.get(f"s{status}") or _WHEN.get(status) or code_for(status),
            generate_examples=False,
        )
        for status in statuses
    }
