"""Offline export verification (format 2), from records built here with the RFC's own definitions."""

from __future__ import annotations

import base64
import hashlib
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest

from audit.canonical import (
    GENESIS,
    ChainFields,
    LeafFields,
    encode_leaf,
    leaf_hash,
    micros,
    row_hash,
)
from audit.checkpoint_format import Checkpoint, sign_checkpoint
from audit.export import FORMAT, VERSION
from audit.export_verify import verify_records
from audit.note import format_verifier_key, generate_signer, parse_signer_key
from tests.conftest import CHECKPOINT_KEY
from tests.unit.rfc6962_reference import mth, path

SIGNER = parse_signer_key(CHECKPOINT_KEY)
ORIGIN = "ledgerhook-test"
T0 = datetime(2026, 1, 1, tzinfo=UTC)


def _rows(n: int, legacy: int = 0) -> list[dict[str, Any]]:
    """n delivery records; the first ``legacy`` of them are rows of the retired chain."""
    out = []
    prev = GENESIS
    for i in range(n):
        body = f'{{"id":"evt_{i}"}}'.encode()
        headers = '[["content-type","application/json"]]'
        rec: dict[str, Any] = {
            "type": "delivery",
            "leaf_index": i,
            "id": i + 1,
            "received_at_us": micros(T0 + timedelta(seconds=i)),
            "received_at": (T0 + timedelta(seconds=i)).isoformat(),
            "provider": "stripe",
            "endpoint": "default",
            "account": "acct",
            "event_id": f"evt_{i}",
            "event_type": "invoice.paid",
            "event_created": 1_700_000_000 + i,
            "object_id": None if i % 2 else f"in_{i}",
            "origin": "webhook",
            "source_address": None,
            "content_type": "application/json",
            "headers": headers,
            "headers_sha256": hashlib.sha256(headers.encode()).hexdigest(),
            "verification": "stripe-v1:key=k",
            "duplicate_of": None,
            "body_sha256": hashlib.sha256(body).hexdigest(),
            "body_size": len(body),
            "body_base64": base64.b64encode(body).decode(),
            "prev_hash": None,
            "row_hash": None,
            "inclusion": None,
        }
        leaf = LeafFields(
            id=i + 1,
            received_at=T0 + timedelta(seconds=i),
            provider="stripe",
            endpoint="default",
            account="acct",
            event_id=f"evt_{i}",
            event_type="invoice.paid",
            event_created=1_700_000_000 + i,
            object_id=rec["object_id"],
            origin="webhook",
            source_address=None,
            content_type="application/json",
            headers_sha256=hashlib.sha256(headers.encode()).digest(),
            verification="stripe-v1:key=k",
            body_sha256=hashlib.sha256(body).digest(),
            body_size=len(body),
        )
        rec["leaf_hash"] = leaf_hash(leaf).hex()
        rec["_input"] = encode_leaf(leaf)
        if i < legacy:
            h = row_hash(
                prev,
                ChainFields(
                    id=i + 1,
                    received_at=leaf.received_at,
                    provider="stripe",
                    endpoint="default",
                    account="acct",
                    event_id=f"evt_{i}",
                    event_type="invoice.paid",
                    event_created=leaf.event_created,
                    object_id=leaf.object_id,
                    origin="webhook",
                    source_address=None,
                    content_type="application/json",
                    headers=headers,
                    verification="stripe-v1:key=k",
                    duplicate_of=None,
                    body_sha256=leaf.body_sha256,
                ),
            )
            rec["prev_hash"], rec["row_hash"] = prev.hex(), h.hex()
            prev = h
        out.append(rec)
    return out


def _export(
    rows: list[dict[str, Any]], *, keep: list[int] | None = None, signer: Any = SIGNER
) -> list[dict[str, Any]]:
    """An export of ``rows`` (all of them, or the ``keep`` indexes with inclusion proofs)."""
    inputs = [r["_input"] for r in rows]
    root = mth(inputs)
    note = sign_checkpoint(Checkpoint(origin=ORIGIN, size=len(rows), root=root), signer)
    cp = {
        "id": 1,
        "created_at": T0.isoformat(),
        "tree_size": len(rows),
        "root_hash": root.hex(),
        "note": note,
    }
    chosen = rows if keep is None else [rows[i] for i in keep]
    records = []
    for r in chosen:
        rec = {k: v for k, v in r.items() if k != "_input"}
        if keep is not None:
            rec["inclusion"] = [h.hex() for h in path(r["leaf_index"], inputs)]
        records.append(rec)
    header = {
        "type": "header",
        "format": FORMAT,
        "version": VERSION,
        "origin": ORIGIN,
        "public_key": format_verifier_key(signer.verifier),
        "complete": keep is None,
        "checkpoint": cp,
    }
    trailer = {"type": "trailer", "records": len(records), "checkpoint": cp}
    return [header, *records, trailer]


def test_complete_export_verifies_with_the_log_key() -> None:
    records = _export(_rows(9, legacy=4))
    res = verify_records(records, SIGNER.verifier)
    assert res.ok and res.records == 9 and res.complete and res.tree_size == 9, res
    assert "the given key" in res.key
    # Without a key the export's own key is used, and the result says so.
    named = verify_records(records, None)
    assert named.ok and "compare it" in named.key
    # Another key (even with the same name) refuses the checkpoint.
    assert not verify_records(records, generate_signer(ORIGIN).verifier).ok


def test_filtered_export_proves_each_record_by_inclusion() -> None:
    rows = _rows(13)
    res = verify_records(_export(rows, keep=[1, 2, 7, 12]), SIGNER.verifier)
    assert res.ok and res.records == 4 and not res.complete, res
    # A filtered export must not claim to be complete (gaps are named).
    records = _export(rows, keep=[1, 2, 7])
    records[0] = {**records[0], "complete": True}
    assert "missing" in (verify_records(records, SIGNER.verifier).reason or "")


def _set(index: int, **changes: Any) -> Callable[[list[dict[str, Any]]], None]:
    def go(records: list[dict[str, Any]]) -> None:
        records[index] = {**records[index], **changes}

    return go


@pytest.mark.parametrize(
    ("mutate", "reason"),
    [
        (_set(2, event_type="invoice.voided"), "does not match its leaf hash"),
        (_set(2, object_id=""), "does not match its leaf hash"),  # NULL and "" differ
        (_set(2, received_at_us=1), "does not match its leaf hash"),
        (_set(2, body_base64=base64.b64encode(b"{}").decode()), "body_sha256"),
        (_set(2, body_base64="not base64!"), "base64"),
        (_set(2, headers="[]"), "headers do not match"),
        (_set(2, leaf_hash="00" * 32), "does not match its leaf hash"),
        (_set(2, row_hash="00" * 32), "legacy row_hash"),
        (_set(3, prev_hash="11" * 32), "legacy prev_hash"),
        (lambda r: r.pop(3), "missing"),
        (lambda r: r.__setitem__(slice(2, 4), [r[3], r[2]]), "missing"),  # swapped
        (lambda r: r.pop(-1), "truncated"),
        (lambda r: r.pop(-2), "trailer says"),
        (lambda r: (r.pop(-2), r[-1].update(records=8)), "covers 9 leaves"),
        (lambda r: r.insert(3, dict(r[3])), "do not increase"),
        (_set(-1, records=99), "trailer says"),
        (lambda r: r.pop(0), "header"),
        (lambda r: r.append({"type": "delivery"}), "after the trailer"),
        (_set(0, format="other"), "not a"),
    ],
)
def test_tampering_is_detected(mutate: Callable[[list[dict[str, Any]]], None], reason: str) -> None:
    records = _export(_rows(9, legacy=4))
    mutate(records)
    res = verify_records(records, SIGNER.verifier)
    assert not res.ok
    assert reason in (res.reason or ""), res.reason


@pytest.mark.parametrize(
    "mutate",
    [
        lambda cp: {**cp, "tree_size": 8},  # columns disagree with the note
        lambda cp: {**cp, "note": cp["note"].replace("\n9\n", "\n8\n")},  # altered note
        lambda cp: {**cp, "note": None},
    ],
)
def test_forged_checkpoint_is_detected(mutate: Callable[[dict[str, Any]], dict[str, Any]]) -> None:
    records = _export(_rows(9))
    cp = mutate(records[0]["checkpoint"])
    records[0] = {**records[0], "checkpoint": cp}
    records[-1] = {**records[-1], "checkpoint": cp}
    assert not verify_records(records, SIGNER.verifier).ok


def test_a_tampered_filtered_record_fails_its_proof() -> None:
    rows = _rows(13)
    records = _export(rows, keep=[5])
    proof = records[1]["inclusion"]
    records[1] = {**records[1], "inclusion": [proof[0][:-2] + "00", *proof[1:]]}
    assert "inclusion proof fails" in (verify_records(records, SIGNER.verifier).reason or "")
    records = _export(rows, keep=[5])
    records[1] = {**records[1], "leaf_index": 6}
    assert not verify_records(records, SIGNER.verifier).ok
