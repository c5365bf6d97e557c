"""Chargebee: HTTP Basic verification and envelope decoding.

Chargebee does not sign payloads; a webhook is configured with a user and password sent as HTTP
Basic credentials. Every configured ``user:password`` pair is compared, user AND password, each in
constant time, without stopping at the first pair or at a user mismatch: timing reveals neither
which user exists nor how much of a password matched. Basic credentials prove only that the
sender knows the password; the optional per-endpoint fetch-back (``EndpointSettings.fetch_back``,
done by alerts after the delivery is stored) compares the stored body with the event as
Chargebee's API returns it.

Envelope: the webhook body is the event object: ``id``, ``event_type``, ``occurred_at`` (unix
seconds), ``content`` with one entry per resource (``subscription``, ``customer``, ``invoice``...).
The main object is chosen by the event type's prefix (``subscription_created`` ->
``content.subscription``; payment and refund events -> ``content.transaction``), else the first
resource in ``content`` that has an id.
"""

from __future__ import annotations

import binascii
import hmac
from base64 import b64decode
from collections.abc import Mapping
from typing import Annotated

import msgspec

from ingest.errors import CredentialsError
from ingest.providers.base import (
    DECODE_ERRORS,
    VerifiedDelivery,
    check_utf8,
    envelope_error,
)
from ledgerhook.settings import EndpointSettings

__all__ = ["PROVIDER", "WWW_AUTHENTICATE", "main_resource", "verify"]

PROVIDER = "chargebee"
WWW_AUTHENTICATE = 'Basic realm="ledgerhook"'
MAX_AUTHORIZATION_CHARS = 4096

_Id = Annotated[str, msgspec.Meta(min_length=1, max_length=255)]
_Time = Annotated[int, msgspec.Meta(ge=0, le=2**53)]

# Longest prefix first where one prefix contains another (payment_source_ before payment_).
_PREFIXES: tuple[tuple[str, str], ...] = (
    ("subscription_", "subscription"),
    ("customer_", "customer"),
    ("invoice_", "invoice"),
    ("credit_note_", "credit_note"),
    ("payment_source_", "payment_source"),
    ("payment_intent_", "payment_intent"),
    ("payment_", "transaction"),
    ("refund_", "transaction"),
    ("transaction_", "transaction"),
    ("card_", "card"),
    ("plan_", "plan"),
    ("addon_", "addon"),
    ("coupon_", "coupon"),
    ("item_price_", "item_price"),
    ("item_family_", "item_family"),
    ("item_", "item"),
    ("order_", "order"),
    ("quote_", "quote"),
    ("unbilled_charges_", "unbilled_charge"),
    ("virtual_bank_account_", "virtual_bank_account"),
)


class _EventView(msgspec.Struct, frozen=True, kw_only=True):
    id: _Id
    event_type: _Id
    occurred_at: _Time
    content: dict[str, msgspec.Raw] = {}  # msgspec copies the default per instance


class _ResourceView(msgspec.Struct, frozen=True, kw_only=True):
    id: str | int | None = None


_decoder = msgspec.json.Decoder(_EventView)
_resource_decoder = msgspec.json.Decoder(_ResourceView)


def _resource_id(raw: msgspec.Raw) -> str | None:
    try:
        rid = _resource_decoder.decode(raw).id
    except msgspec.DecodeError:
        return None
    return None if rid is None else str(rid)


def main_resource(event_type: str, content: Mapping[str, msgspec.Raw]) -> str | None:
    """Id of the event's main object, or None when content names none."""
    for prefix, resource in _PREFIXES:
        if event_type.startswith(prefix) and resource in content:
            rid = _resource_id(content[resource])
            if rid is not None:
                return rid
            break
    for raw in content.values():
        rid = _resource_id(raw)
        if rid is not None:
            return rid
    return None


def _credentials(header: str | None) -> tuple[bytes, bytes]:
    if not header:
        raise CredentialsError("missing_credentials", "no Basic credentials")
    if len(header) > MAX_AUTHORIZATION_CHARS:
        raise CredentialsError("malformed_credentials", "Authorization header is too long")
    scheme, _, token = header.strip().partition(" ")
    if scheme.lower() != "basic":
        raise CredentialsError("malformed_credentials", "Authorization is not Basic")
    try:
        decoded = b64decode(token.strip().encode("ascii"), validate=True)
    except (binascii.Error, UnicodeEncodeError):
        raise CredentialsError(
            "malformed_credentials", "Basic credentials are not base64"
        ) from None
    user, sep, password = decoded.partition(b":")
    if not sep:
        raise CredentialsError("malformed_credentials", "Basic credentials have no password")
    return user, password


def _check_credentials(header: str | None, endpoint: EndpointSettings) -> str:
    user, password = _credentials(header)
    matched: int | None = None
    for position, pair in enumerate(endpoint.basic_auth, start=1):
        want_user, _, want_password = pair.reveal().encode().partition(b":")
        user_ok = hmac.compare_digest(user, want_user)
        password_ok = hmac.compare_digest(password, want_password)
        if user_ok & password_ok and matched is None:
            matched = position
    if matched is None:
        raise CredentialsError("bad_credentials", "Basic credentials do not match")
    # The user name and the pair's place in the configuration, never a password digest: auditors
    # read this column, and a short hash of a low-entropy password could be brute-forced offline.
    return f"chargebee-basic:user={user.decode('latin-1')};pair={matched}"


def verify(
    headers: Mapping[str, str], body: bytes, now: float, endpoint: EndpointSettings
) -> VerifiedDelivery:
    """Check the Basic credentials, then decode the envelope. Pure: no I/O, no clock."""
    verification = _check_credentials(headers.get("authorization"), endpoint)
    check_utf8(body)
    try:
        event = _decoder.decode(body)
    except DECODE_ERRORS as exc:
        raise envelope_error(exc) from None
    return VerifiedDelivery(
        provider=PROVIDER,
        account=endpoint.account_id,
        event_id=event.id,
        event_type=event.event_type,
        event_created=event.occurred_at,
        object_id=main_resource(event.event_type, event.content),
        verification=verification,
    )
