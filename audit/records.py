"""The delivery record that leaves the system: in exports, proof bundles and the proof API.

One JSON shape for every place an outsider receives a delivery to check, holding exactly what
its Merkle leaf commits to (``LHleaf1``, :mod:`audit.canonical`): from a record alone anyone
recomputes the leaf hash. Hashes are lowercase hex; ``received_at_us`` is exact microseconds
(``received_at``, ISO 8601, is for people and not hashed). ``body_base64`` is present in exports
(so the body's digest can be checked) and absent from proofs. Rows of the retired chain also
carry their ``prev_hash``/``row_hash``.

Parsing (:func:`leaf_fields`) is strict and pure: a record that is missing or mistypes a field
raises :class:`RecordError` with the field's name.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
from datetime import UTC, datetime, timedelta
from typing import Any

from audit.canonical import LeafFields, micros
from audit.errors import AuditError

__all__ = ["LEAF_FIELDS", "RecordError", "body_of", "delivery_record", "digest", "leaf_fields"]

_EPOCH = datetime(1970, 1, 1, tzinfo=UTC)

# The record's fields, in the leaf's order (ints, texts, hex digests).
LEAF_FIELDS = (
    "id",
    "received_at_us",
    "provider",
    "endpoint",
    "account",
    "event_id",
    "event_type",
    "event_created",
    "object_id",
    "origin",
    "source_address",
    "content_type",
    "headers_sha256",
    "verification",
    "body_sha256",
    "body_size",
)
_INTS = {"id", "received_at_us", "event_created", "body_size"}
_NULLABLE = {"object_id", "source_address", "content_type"}
_DIGESTS = {"headers_sha256", "body_sha256"}


class RecordError(AuditError):
    """A delivery record that is not well formed (names the field)."""


def delivery_record(r: Any, *, with_body: bool) -> dict[str, Any]:
    """The record of a row that has the deliveries' columns (and ``body`` when ``with_body``)."""
    rec: dict[str, Any] = {
        "id": r["id"],
        "received_at_us": micros(r["received_at"]),
        "received_at": r["received_at"].isoformat(),
        "provider": r["provider"],
        "endpoint": r["endpoint"],
        "account": r["account"],
        "event_id": r["event_id"],
        "event_type": r["event_type"],
        "event_created": r["event_created"],
        "object_id": r["object_id"],
        "origin": r["origin"],
        "source_address": r["source_address"],
        "content_type": r["content_type"],
        "headers": r["headers"],
        "headers_sha256": hashlib.sha256(r["headers"].encode()).hexdigest(),
        "verification": r["verification"],
        "duplicate_of": r["duplicate_of"],
        "body_sha256": bytes(r["body_sha256"]).hex(),
        "body_size": r["body_size"],
        "prev_hash": None if r["prev_hash"] is None else bytes(r["prev_hash"]).hex(),
        "row_hash": None if r["row_hash"] is None else bytes(r["row_hash"]).hex(),
    }
    if with_body:
        rec["body_base64"] = base64.b64encode(bytes(r["body"])).decode("ascii")
    return rec


def digest(value: Any, name: str) -> bytes:
    try:
        out = bytes.fromhex(value)
    except (TypeError, ValueError):
        raise RecordError(f"{name} is not hex") from None
    if len(out) != 32:
        raise RecordError(f"{name} is not 32 bytes")
    return out


def leaf_fields(rec: dict[str, Any]) -> LeafFields:
    """The leaf fields of a record (what :func:`audit.canonical.leaf_hash` takes)."""
    values: dict[str, Any] = {}
    for name in LEAF_FIELDS:
        if name not in rec:
            raise RecordError(f"the record has no {name}")
        v = rec[name]
        if v is None and name in _NULLABLE:
            values[name] = None
        elif name in _INTS:
            if isinstance(v, bool) or not isinstance(v, int):
                raise RecordError(f"{name} is not an integer")
            values[name] = v
        elif name in _DIGESTS:
            values[name] = digest(v, name)
        elif not isinstance(v, str):
            raise RecordError(f"{name} is not a string")
        else:
            values[name] = v
    if "headers" in rec and rec["headers"] is not None:
        if not isinstance(rec["headers"], str):
            raise RecordError("headers is not a string")
        if hashlib.sha256(rec["headers"].encode()).digest() != values["headers_sha256"]:
            raise RecordError("headers do not match headers_sha256 (modified)")
    received = values.pop("received_at_us")
    return LeafFields(received_at=_EPOCH + timedelta(microseconds=received), **values)


def body_of(rec: dict[str, Any]) -> bytes | None:
    """The body of an export record, checked against its digest and size (None when absent)."""
    if rec.get("body_base64") is None:
        return None
    try:
        body = base64.b64decode(rec["body_base64"], validate=True)
    except (TypeError, binascii.Error):
        raise RecordError("body_base64 is not valid base64") from None
    if hashlib.sha256(body).digest() != digest(rec.get("body_sha256"), "body_sha256"):
        raise RecordError("the body does not match body_sha256 (modified)")
    if len(body) != rec.get("body_size"):
        raise RecordError("the body's length is not body_size (modified)")
    return body
