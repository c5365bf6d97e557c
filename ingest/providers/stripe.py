"""Stripe: ``Stripe-Signature`` verification and envelope decoding.

The header is ``t=<unix>,v1=<hex>[,v1=<hex>...][,v0=<hex>]``. The signature is HMAC-SHA256, keyed
with the whole ``whsec_...`` string, over ``b"<t>." + body`` (the exact bytes received), in hex.
Any ``v1`` matching any configured secret passes (so a secret can be rotated: both old and new are
configured for a while); ``v0`` (test-mode legacy scheme) is ignored. Every comparison is
constant-time and every configured secret is tried, so timing says nothing about which one, if
any, nearly matched. The timestamp must lie within ``tolerance_seconds`` of ``now`` in BOTH
directions: the official library only rejects old timestamps, we also refuse ones from the future
(a clock that far ahead means a forged or replayed header, not a real delivery).

The header is parsed in one linear pass with hard bounds (:data:`MAX_HEADER_CHARS`,
:data:`MAX_ENTRIES`): a header with thousands of entries is refused, never compared pairwise.
Parsing is stricter than the library's: ``t`` must be plain digits and appear once.

Envelope. Snapshot events (``"object": "event"``) carry ``id``, ``type``, ``created`` (unix
seconds), an optional top-level ``account`` (Stripe Connect: the connected account, which then
overrides the endpoint's account) and ``data.object`` (the main object; its ``id`` is recorded).
Thin events (``"object": "v2.core.event"``, Event Destinations) are signed the same way but differ:
``created`` is an ISO 8601 string (converted to unix seconds here), there is no ``data.object``
(the object is named by ``related_object.id`` and must be fetched from the API to see its state),
and a Connect account appears as ``context``. They are verified and stored like any delivery.
"""

from __future__ import annotations

import hashlib
import hmac
from collections.abc import Mapping
from typing import Annotated

import msgspec

from ingest.errors import SignatureError
from ingest.providers.base import (
    DECODE_ERRORS,
    VerifiedDelivery,
    check_utf8,
    envelope_error,
    fingerprint,
    iso_to_unix,
)
from ledgerhook.settings import EndpointSettings

__all__ = ["MAX_ENTRIES", "MAX_HEADER_CHARS", "PROVIDER", "parse_signature_header", "verify"]

PROVIDER = "stripe"
HEADER = "stripe-signature"
MAX_HEADER_CHARS = 8192
MAX_ENTRIES = 64

_Id = Annotated[str, msgspec.Meta(min_length=1, max_length=255)]
_Time = Annotated[int, msgspec.Meta(ge=0, le=2**53)]


class _ObjectView(msgspec.Struct, frozen=True, kw_only=True):
    id: str | None = None


class _DataView(msgspec.Struct, frozen=True, kw_only=True):
    object: _ObjectView | None = None


class _EventView(msgspec.Struct, frozen=True, kw_only=True):
    id: _Id
    type: _Id
    created: _Time | str
    object: str | None = None
    account: str | None = None
    context: str | None = None
    data: _DataView | None = None
    related_object: _ObjectView | None = None


_decoder = msgspec.json.Decoder(_EventView)


def parse_signature_header(header: str) -> tuple[int, list[str]]:
    """(timestamp, v1 signatures) of a header; raises ``malformed_signature``."""
    if len(header) > MAX_HEADER_CHARS:
        raise SignatureError("malformed_signature", "Stripe-Signature header is too long")
    items = header.split(",", MAX_ENTRIES)
    if len(items) > MAX_ENTRIES:
        raise SignatureError("malformed_signature", "Stripe-Signature header has too many entries")
    timestamp: str | None = None
    v1: list[str] = []
    for item in items:
        key, sep, value = item.partition("=")
        if key == "v1" and sep:
            v1.append(value)
        elif key == "t" and sep:
            if timestamp is not None:
                raise SignatureError("malformed_signature", "Stripe-Signature has two timestamps")
            timestamp = value
    if timestamp is None or not (
        0 < len(timestamp) <= 12 and timestamp.isascii() and timestamp.isdigit()
    ):
        raise SignatureError("malformed_signature", "Stripe-Signature has no valid t= timestamp")
    if not v1:
        raise SignatureError("malformed_signature", "Stripe-Signature has no v1 signature")
    return int(timestamp), v1


def _check_signature(header: str, body: bytes, now: float, endpoint: EndpointSettings) -> str:
    timestamp, candidates = parse_signature_header(header)
    signed = str(timestamp).encode() + b"." + body
    # Header text came in as latin-1; anything else cannot be a hex digest but must not raise.
    given = [c.encode("utf-8", "replace") for c in candidates]
    matched: str | None = None
    for secret in endpoint.secrets:
        value = secret.reveal()
        expected = hmac.new(value.encode(), signed, hashlib.sha256).hexdigest().encode()
        hit = False
        for g in given:
            hit |= hmac.compare_digest(expected, g)
        if hit and matched is None:
            matched = value
    if matched is None:
        raise SignatureError("no_matching_signature", "no v1 signature matches a configured secret")
    if abs(now - timestamp) > endpoint.tolerance_seconds:
        raise SignatureError(
            "timestamp_out_of_tolerance",
            f"signature timestamp is more than {endpoint.tolerance_seconds}s from now",
        )
    return f"stripe-v1:key={fingerprint(matched)}"


def verify(
    headers: Mapping[str, str], body: bytes, now: float, endpoint: EndpointSettings
) -> VerifiedDelivery:
    """Prove the delivery came from Stripe, then decode its envelope. Pure: no I/O, no clock."""
    header = headers.get(HEADER)
    if not header:
        raise SignatureError("missing_signature", "no Stripe-Signature header")
    verification = _check_signature(header, body, now, endpoint)
    check_utf8(body)
    try:
        event = _decoder.decode(body)
    except DECODE_ERRORS as exc:
        raise envelope_error(exc) from None
    if isinstance(event.created, str):
        created = iso_to_unix(event.created)
        object_id = event.related_object.id if event.related_object is not None else None
        account = event.context or endpoint.account_id
    else:
        created = event.created
        obj = event.data.object if event.data is not None else None
        object_id = obj.id if obj is not None else None
        account = event.account or endpoint.account_id
    return VerifiedDelivery(
        provider=PROVIDER,
        account=account,
        event_id=event.id,
        event_type=event.type,
        event_created=created,
        object_id=object_id,
        verification=verification,
    )
