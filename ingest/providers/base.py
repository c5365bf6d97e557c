"""What every provider module returns: a verified delivery's identity, decoded from its envelope."""

from __future__ import annotations

import hashlib
from datetime import UTC, datetime, timedelta
from functools import lru_cache

import msgspec

from ingest.errors import InvalidEnvelope

__all__ = [
    "DECODE_ERRORS",
    "VerifiedDelivery",
    "check_utf8",
    "envelope_error",
    "fingerprint",
    "iso_to_unix",
]

# What msgspec raises for bad input besides DecodeError: RecursionError past its nesting limit
# (a 100k-deep array), UnicodeDecodeError for invalid UTF-8 inside a string it decodes.
DECODE_ERRORS = (msgspec.DecodeError, RecursionError, UnicodeDecodeError)

_EPOCH = datetime(1970, 1, 1, tzinfo=UTC)
_SECOND = timedelta(seconds=1)


class VerifiedDelivery(msgspec.Struct, frozen=True, kw_only=True):
    """A delivery whose origin is proven; the fields become the columns of its audit row."""

    provider: str
    account: str
    event_id: str
    event_type: str
    event_created: int
    object_id: str | None
    # How it was verified, naming the credential by fingerprint only (never the secret).
    verification: str


@lru_cache(maxsize=256)
def fingerprint(secret: str) -> str:
    """Names a configured secret without revealing it (the scheme stored verifications use)."""
    return hashlib.sha256(b"ledgerhook-key-id|" + secret.encode()).hexdigest()[:16]


def check_utf8(body: bytes) -> None:
    """JSON is UTF-8 (RFC 8259 8.1). msgspec checks only the strings it decodes, so invalid bytes
    in a skipped field would pass the envelope, be stored, and fail later in the processors."""
    if not body.isascii():
        try:
            body.decode("utf-8")
        except UnicodeDecodeError:
            raise InvalidEnvelope("invalid_json", "body is not valid UTF-8") from None


def envelope_error(exc: Exception) -> InvalidEnvelope:
    """A 400 with a reason an operator can act on; msgspec's messages name paths, never values."""
    message = str(exc)
    if isinstance(exc, RecursionError):
        return InvalidEnvelope("invalid_json", "body is nested too deeply")
    if not isinstance(exc, msgspec.ValidationError):
        return InvalidEnvelope("invalid_json", "body is not valid JSON")
    if message.startswith("Expected `object`") and "- at `" not in message:
        return InvalidEnvelope("not_an_object", "body is not a JSON object")
    if "missing required field" in message:
        return InvalidEnvelope("missing_field", message)
    return InvalidEnvelope("invalid_field", message)


def iso_to_unix(value: str) -> int:
    """Whole seconds since the epoch of an ISO 8601 time with a zone (floor, no float)."""
    try:
        ts = datetime.fromisoformat(value)
    except ValueError:
        raise InvalidEnvelope("invalid_field", "`created` is not an ISO 8601 time") from None
    if ts.tzinfo is None:
        raise InvalidEnvelope("invalid_field", "`created` has no time zone")
    return (ts - _EPOCH) // _SECOND
