"""Errors of the ingest package.

    IngestError
    ├── Rejected                 the request is refused for good: recorded in audit.rejections
    │   ├── UnknownEndpoint          no such provider or endpoint (HTTP 404)
    │   ├── BodyTooLarge             over ``ingest.max_body_bytes`` (HTTP 413)
    │   ├── HeadersTooLarge          over ``ingest.max_header_bytes`` or ``max_headers`` (HTTP 431)
    │   ├── BodyTimeout              the body did not arrive within ``body_timeout_seconds`` (HTTP 408)
    │   ├── InvalidEnvelope          not a JSON object with the provider's envelope fields (HTTP 400)
    │   └── VerificationError        the delivery cannot be shown to come from the provider
    │       ├── SignatureError           Stripe: missing/malformed header, no matching v1,
    │       │                            timestamp out of tolerance (HTTP 400, as Stripe expects)
    │       └── CredentialsError         Chargebee: missing/malformed/wrong Basic credentials
    │                                    (HTTP 401 with ``WWW-Authenticate``)
    ├── ClientGone               the client left before sending the whole body (HTTP 400, unheard)
    └── Unavailable              the delivery could not be committed now; the provider retries
        ├── Overloaded               too many deliveries waiting for a commit (HTTP 503)
        ├── CommitFailed             the group commit failed, e.g. PostgreSQL down (HTTP 503)
        └── CommitTimeout            no commit within ``commit_timeout_seconds`` (HTTP 503)

Every :class:`Rejected` carries a short machine ``reason`` code (``no_matching_signature``,
``invalid_json``, ...) that goes into the response, the rejection record and the
``ledgerhook_verification_failures_total{reason}`` label: a small fixed vocabulary, never input.
Messages never contain a secret or the body. Mapping to HTTP is in ``ledgerhook.app``.
"""

from __future__ import annotations

from typing import Any

__all__ = [
    "BodyTimeout",
    "BodyTooLarge",
    "ClientGone",
    "CommitFailed",
    "CommitTimeout",
    "CredentialsError",
    "HeadersTooLarge",
    "IngestError",
    "InvalidEnvelope",
    "Overloaded",
    "Rejected",
    "SignatureError",
    "Unavailable",
    "UnknownEndpoint",
    "VerificationError",
]


class IngestError(Exception):
    pass


class Rejected(IngestError):
    """A refused request. ``context`` is set by the HTTP handler so the rejection can be recorded."""

    reason: str = "rejected"

    def __init__(self, reason: str | None = None, message: str = "") -> None:
        if reason is not None:
            self.reason = reason
        super().__init__(message or self.reason.replace("_", " "))
        self.context: Any = None


class UnknownEndpoint(Rejected):
    reason = "unknown_endpoint"


class BodyTooLarge(Rejected):
    """``partial`` is what was read before giving up; ``size`` the bytes seen or announced."""

    reason = "body_too_large"

    def __init__(self, message: str, *, partial: bytes = b"", size: int = 0) -> None:
        super().__init__(None, message)
        self.partial = partial
        self.size = size


class HeadersTooLarge(Rejected):
    reason = "headers_too_large"


class BodyTimeout(Rejected):
    """A client trickling its body is cut off instead of holding a connection and a task."""

    reason = "body_timeout"

    def __init__(self, message: str, *, partial: bytes = b"", size: int = 0) -> None:
        super().__init__(None, message)
        self.partial = partial
        self.size = size


class InvalidEnvelope(Rejected):
    reason = "invalid_envelope"


class VerificationError(Rejected):
    reason = "verification_failed"


class SignatureError(VerificationError):
    pass


class CredentialsError(VerificationError):
    pass


class ClientGone(IngestError):
    """The client disconnected before the whole body arrived: nothing stored, nothing to record."""


class Unavailable(IngestError):
    """Nothing was acknowledged; answering 503 makes the provider retry."""

    retry_after: int = 5


class Overloaded(Unavailable):
    retry_after = 1


class CommitFailed(Unavailable):
    pass


class CommitTimeout(Unavailable):
    pass
