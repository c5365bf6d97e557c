"""Proof bundles: everything an auditor needs to check one delivery, with nothing but the log's key.

A bundle (``ledgerhook-proof`` version 1, JSON) holds the delivery record (:mod:`audit.records`:
what its leaf commits to), its ``leaf_index`` and ``leaf_hash``, the signed ``checkpoint`` note
it is proved against and the RFC 9162 ``inclusion`` proof (hex hashes) from the leaf to that
checkpoint's root. ``GET /audit/deliveries/{id}/proof`` and ``ledgerhook proof --delivery ID``
produce it; :func:`verify_bundle` (``ledgerhook verify-proof``) checks it offline:

1. recompute the leaf hash from the record (SHA-256 of 0x00 || ``LHleaf1`` fields);
2. open the checkpoint note with the log's public key (Ed25519, C2SP signed-note) for the origin;
3. fold the inclusion proof from the leaf hash to a root (RFC 9162 2.1.3.2) and compare it with
   the checkpoint's root;
4. optionally, hash the body the auditor holds and compare with ``body_sha256``/``body_size``.

Any RFC 6962 tool and any signed-note verifier can do the same: nothing here is Ledgerhook's own
cryptography.
"""

from __future__ import annotations

import hashlib
from typing import Any

import msgspec

from audit.canonical import leaf_hash
from audit.checkpoint_format import open_checkpoint
from audit.checkpoints import checkpoint_at, latest_checkpoint
from audit.dbtypes import Conn
from audit.errors import AuditError, InvalidRange, NotFound
from audit.merkle import verify_inclusion
from audit.note import Verifier
from audit.records import delivery_record, digest, leaf_fields
from audit.tree import inclusion_proof

__all__ = ["BUNDLE_FORMAT", "ProofBundleError", "Verified", "build_bundle", "verify_bundle"]

BUNDLE_FORMAT = "ledgerhook-proof"


class ProofBundleError(AuditError):
    """A bundle that does not prove what it claims (the message says which step failed)."""


async def build_bundle(
    conn: Conn, delivery_id: int, *, origin: str, public_key: str, tree_size: int | None = None
) -> dict[str, Any]:
    """The bundle for ``delivery_id`` in the checkpoint of ``tree_size`` (default: the latest).

    Only a signed tree size makes a proof an outsider can check: a size nobody signed is refused
    (sign one first: ``ledgerhook checkpoint`` or ``POST /audit/checkpoints``)."""
    cp = await (latest_checkpoint(conn) if tree_size is None else checkpoint_at(conn, tree_size))
    if cp is None or cp.origin != origin:
        what = "no checkpoint yet" if tree_size is None else f"no checkpoint of size {tree_size}"
        raise InvalidRange(f"{what}: sign one first (ledgerhook checkpoint)")
    row = await conn.fetchrow(
        "SELECT id, received_at, provider, endpoint, account, event_id, event_type, "
        "event_created, object_id, origin, source_address, content_type, headers, verification, "
        "duplicate_of, body_sha256, coalesce(body_size, octet_length(body)) AS body_size, "
        "prev_hash, row_hash FROM audit.deliveries WHERE id = $1",
        delivery_id,
    )
    if row is None:
        raise NotFound(f"delivery {delivery_id} does not exist")
    proof = await inclusion_proof(conn, delivery_id, cp.tree_size)
    return {
        "format": BUNDLE_FORMAT,
        "version": 1,
        "origin": origin,
        "public_key": public_key,
        "delivery": delivery_record(row, with_body=False),
        "leaf_index": proof.leaf_index,
        "leaf_hash": proof.leaf_hash.hex(),
        "tree_size": cp.tree_size,
        "checkpoint": cp.note,
        "inclusion": [h.hex() for h in proof.hashes],
    }


class Verified(msgspec.Struct, frozen=True, kw_only=True):
    delivery_id: int
    leaf_index: int
    tree_size: int
    root: str
    body_checked: bool


def verify_bundle(bundle: Any, verifier: Verifier, body: bytes | None = None) -> Verified:
    """Check a bundle against the log's key (and the body, if given); raises ProofBundleError."""
    if not isinstance(bundle, dict) or bundle.get("format") != BUNDLE_FORMAT:
        raise ProofBundleError(f"not a {BUNDLE_FORMAT} bundle")
    record = bundle.get("delivery")
    if not isinstance(record, dict):
        raise ProofBundleError("the bundle has no delivery record")
    try:
        computed = leaf_hash(leaf_fields(record))
    except AuditError as exc:
        raise ProofBundleError(f"step 1, the delivery record: {exc}") from None
    if bundle.get("leaf_hash") != computed.hex():
        raise ProofBundleError("step 1: the record's leaf hash is not the bundle's (modified)")
    try:
        signed = open_checkpoint(
            str(bundle.get("checkpoint")), [verifier], origin=str(bundle.get("origin"))
        )
    except AuditError as exc:
        raise ProofBundleError(f"step 2, the checkpoint: {exc}") from None
    cp = signed.checkpoint
    index = bundle.get("leaf_index")
    if not isinstance(index, int) or isinstance(index, bool):
        raise ProofBundleError("step 3: leaf_index is not an integer")
    try:
        hashes = [digest(h, "inclusion") for h in bundle.get("inclusion") or []]
        verify_inclusion(computed, index, cp.size, hashes, cp.root)
    except AuditError as exc:
        raise ProofBundleError(f"step 3, the inclusion proof: {exc}") from None
    body_ok = body is None or (
        hashlib.sha256(body).hexdigest() == record.get("body_sha256")
        and len(body) == record.get("body_size")
    )
    if not body_ok:
        raise ProofBundleError("step 4: the body is not the one the leaf commits to")
    return Verified(
        delivery_id=record["id"],
        leaf_index=index,
        tree_size=cp.size,
        root=cp.root.hex(),
        body_checked=body is not None,
    )
