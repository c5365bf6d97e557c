"""Offline verification of an export file (``ledgerhook verify --export FILE``): no database.

Rules, for the format written by :mod:`audit.export`:

- every delivery record: the SHA-256 of its base64 body equals ``body_sha256``, and ``row_hash``
  equals the hash recomputed (:mod:`audit.canonical`) from the record's fields and its own
  ``prev_hash``; ids strictly increase;
- consecutive ids (``id == previous id + 1``): ``prev_hash`` equals the previous ``row_hash``;
- a **complete** export (unfiltered; the header says so) must start at id 1 from the genesis hash
  and have no gap, and its last row must be the trailer's chain head: the whole linkage is proved;
- a **filtered** export proves each row is internally consistent and linked to its exported
  ``prev_hash``, and links rows that happen to be consecutive; it cannot prove rows between them
  (they are not in the file). Take a complete export for the full proof;
- the checkpoint (in header and trailer, identical): the row at its position, when exported, has
  its chain hash, and ``row_count`` equals that position; its HMAC signature is checked when
  ``LEDGERHOOK_CHECKPOINT_KEY`` is set, otherwise the result says "signature not checked: no key".
  A checkpoint the auditor holds from earlier can be compared by hand with the printed one;
- the trailer's row count equals the records read.

Reading is streamed: memory stays constant whatever the file's size.
"""

from __future__ import annotations

import base64
import binascii
import csv
import hashlib
import os
import sys
from collections.abc import Iterable, Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import msgspec

from audit.canonical import GENESIS, ChainFields, row_hash
from audit.checkpoints import Checkpoint, signature_ok
from audit.export import CSV_COLUMNS, DELIVERY_FIELDS, FORMAT, VERSION

__all__ = ["ExportVerifyResult", "read_records", "verify_export_file", "verify_records"]

_EPOCH = datetime(1970, 1, 1, tzinfo=UTC)
_INT_FIELDS = {"id", "received_at_us", "event_created", "duplicate_of"}


class ExportVerifyResult(msgspec.Struct, frozen=True, kw_only=True):
    ok: bool
    rows: int
    complete: bool
    head_id: int | None = None
    head_hash: str | None = None
    checkpoint_id: int | None = None
    signature: str = "no checkpoint in the export"
    first_bad_id: int | None = None
    line: int | None = None
    reason: str | None = None

    def describe(self) -> str:
        if not self.ok:
            where = f"delivery id {self.first_bad_id}" if self.first_bad_id else "the file"
            return f"export BROKEN at {where} (record {self.line}): {self.reason}"
        linkage = (
            "full chain linkage from genesis" if self.complete else "per-row hashes (filtered)"
        )
        return (
            f"export OK: {self.rows} rows, {linkage}, head id {self.head_id} hash {self.head_hash}; "
            f"checkpoint {self.checkpoint_id}: {self.signature}"
        )


class _Broken(Exception):
    def __init__(self, reason: str, row_id: int | None = None) -> None:
        super().__init__(reason)
        self.reason = reason
        self.row_id = row_id


def _hex(value: Any, name: str, row_id: int | None) -> bytes:
    try:
        out = bytes.fromhex(value)
    except (TypeError, ValueError):
        raise _Broken(f"{name} is not hex", row_id) from None
    if len(out) != 32:
        raise _Broken(f"{name} is not 32 bytes", row_id)
    return out


def _checkpoint(rec: Any) -> Checkpoint:
    try:
        return Checkpoint(
            id=int(rec["id"]),
            created_at=_EPOCH + timedelta(microseconds=int(rec["created_at_us"])),
            delivery_id=int(rec["delivery_id"]),
            chain_hash=bytes.fromhex(rec["chain_hash"]),
            row_count=int(rec["row_count"]),
            key_id=str(rec["key_id"]),
            signature=bytes.fromhex(rec["signature"]),
        )
    except (KeyError, TypeError, ValueError):
        raise _Broken("checkpoint record is malformed") from None


def _check_row(rec: dict[str, Any]) -> tuple[int, bytes, bytes]:
    """(id, prev_hash, row_hash) of a delivery record whose own hashes verify."""
    try:
        row_id = int(rec["id"])
    except (KeyError, TypeError, ValueError):
        raise _Broken("delivery record without a valid id") from None
    try:
        body = base64.b64decode(rec["body_base64"], validate=True)
    except (KeyError, TypeError, binascii.Error):
        raise _Broken("body_base64 is not valid base64", row_id) from None
    digest = _hex(rec.get("body_sha256"), "body_sha256", row_id)
    if hashlib.sha256(body).digest() != digest:
        raise _Broken("body does not match body_sha256 (body modified)", row_id)
    prev = _hex(rec.get("prev_hash"), "prev_hash", row_id)
    claimed = _hex(rec.get("row_hash"), "row_hash", row_id)
    try:
        fields = ChainFields(
            id=row_id,
            received_at=_EPOCH + timedelta(microseconds=int(rec["received_at_us"])),
            provider=rec["provider"],
            endpoint=rec["endpoint"],
            account=rec["account"],
            event_id=rec["event_id"],
            event_type=rec["event_type"],
            event_created=int(rec["event_created"]),
            object_id=rec["object_id"],
            origin=rec["origin"],
            source_address=rec["source_address"],
            content_type=rec["content_type"],
            headers=rec["headers"],
            verification=rec["verification"],
            duplicate_of=None if rec["duplicate_of"] is None else int(rec["duplicate_of"]),
            body_sha256=digest,
        )
    except (KeyError, TypeError, ValueError, msgspec.ValidationError):
        raise _Broken("delivery record is missing or mistyping a field", row_id) from None
    if row_hash(prev, fields) != claimed:
        raise _Broken("row_hash does not match the row's content (row modified)", row_id)
    return row_id, prev, claimed


def verify_records(records: Iterable[dict[str, Any]], key: bytes | None) -> ExportVerifyResult:
    """Verify a stream of decoded records (header, deliveries..., trailer)."""
    line = 0
    rows = 0
    complete = False
    try:
        it = iter(records)
        line = 1
        header = next(it, None)
        if header is None or header.get("type") != "header":
            raise _Broken("the file does not start with a header record")
        if header.get("format") != FORMAT or header.get("version") != VERSION:
            raise _Broken(f"not a {FORMAT} version {VERSION} file")
        complete = header.get("complete") is True
        cp = None if header.get("checkpoint") is None else _checkpoint(header["checkpoint"])
        cp_seen = False
        last_id: int | None = None
        last_hash = GENESIS
        trailer: dict[str, Any] | None = None
        for rec in it:
            line += 1
            if trailer is not None:
                raise _Broken("records after the trailer")
            kind = rec.get("type")
            if kind == "trailer":
                trailer = rec
                continue
            if kind != "delivery":
                raise _Broken(f"unknown record type {kind!r}")
            row_id, prev, h = _check_row(rec)
            if last_id is not None and row_id <= last_id:
                raise _Broken(f"id {row_id} after {last_id}: rows reordered or repeated", row_id)
            if complete:
                expected = 1 if last_id is None else last_id + 1
                if row_id != expected:
                    raise _Broken(f"rows {expected}..{row_id - 1} are missing (deleted)", row_id)
            if (complete or (last_id is not None and row_id == last_id + 1)) and prev != last_hash:
                raise _Broken(
                    "prev_hash does not match the previous row (reordered or spliced)", row_id
                )
            if cp is not None and row_id == cp.delivery_id:
                if h != cp.chain_hash or cp.row_count != row_id:
                    raise _Broken(f"checkpoint {cp.id} does not match the chain here", row_id)
                cp_seen = True
            last_id, last_hash = row_id, h
            rows += 1
        if trailer is None:
            raise _Broken("no trailer record: the file is truncated")
        if trailer.get("rows") != rows:
            raise _Broken(f"trailer says {trailer.get('rows')} rows, the file has {rows}")
        tcp = trailer.get("checkpoint")
        if tcp != header.get("checkpoint"):
            raise _Broken("header and trailer checkpoints differ")
        head = trailer.get("head") or {}
        head_id = head.get("id")
        head_hash = head.get("row_hash")
        if complete:
            if (last_id or 0) != head_id:
                raise _Broken(f"the log's head is {head_id} but the export ends at {last_id}")
            if last_id is not None and last_hash.hex() != head_hash:
                raise _Broken("the last row's hash is not the trailer's chain head", last_id)
            if cp is not None and not cp_seen:
                raise _Broken(f"checkpoint {cp.id} covers id {cp.delivery_id}, not in the export")
        elif last_id is not None and last_id == head_id and last_hash.hex() != head_hash:
            raise _Broken("the last row's hash is not the trailer's chain head", last_id)
        if cp is not None and isinstance(head_id, int) and cp.delivery_id > head_id:
            raise _Broken(f"checkpoint {cp.id} is beyond the chain head")
        if cp is None:
            signature = "no checkpoint in the export"
        elif key is None:
            signature = "signature not checked: no key (set LEDGERHOOK_CHECKPOINT_KEY)"
        elif signature_ok(key, cp):
            signature = f"signature verified (key {cp.key_id})"
        else:
            raise _Broken(f"checkpoint {cp.id} signature does not verify with the given key")
        return ExportVerifyResult(
            ok=True,
            rows=rows,
            complete=complete,
            head_id=head_id,
            head_hash=head_hash,
            checkpoint_id=None if cp is None else cp.id,
            signature=signature,
        )
    except _Broken as exc:
        return ExportVerifyResult(
            ok=False,
            rows=rows,
            complete=complete,
            first_bad_id=exc.row_id,
            line=line,
            reason=exc.reason,
        )


def _csv_records(lines: Iterator[str]) -> Iterator[dict[str, Any]]:
    reader = csv.reader(lines)
    columns = next(reader, None)
    if columns is None or tuple(columns) != CSV_COLUMNS:
        raise ValueError("the CSV header row is not the export's columns")
    for row in reader:
        if len(row) != len(CSV_COLUMNS):
            raise ValueError("a CSV row has the wrong number of columns")
        values = dict(zip(CSV_COLUMNS, row, strict=True))
        if values["record"] != "delivery":
            meta: dict[str, Any] = msgspec.json.decode(values["meta"])
            yield meta
            continue
        nulls = set(filter(None, values["nulls"].split(",")))
        rec: dict[str, Any] = {"type": "delivery"}
        for f in DELIVERY_FIELDS:
            v: Any = None if f in nulls else values[f]
            rec[f] = int(v) if v is not None and f in _INT_FIELDS else v
        yield rec


def read_records(path: Path) -> Iterator[dict[str, Any]]:
    """Records of a JSONL or CSV export, streamed (the format is detected from the first byte)."""
    with path.open("r", encoding="utf-8", newline="") as fh:
        first = fh.read(1)
        fh.seek(0)
        if first == "{":
            for text in fh:
                if text.strip():
                    rec: dict[str, Any] = msgspec.json.decode(text)
                    yield rec
        else:
            yield from _csv_records(iter(fh))


def verify_export_file(path: str) -> int:
    """Exit code: 0 verified, 1 broken, 2 unreadable. Prints the result on standard output."""
    env_key = os.environ.get("LEDGERHOOK_CHECKPOINT_KEY")
    key = env_key.encode() if env_key else None
    try:
        result = verify_records(read_records(Path(path)), key)
    except (OSError, ValueError, msgspec.DecodeError, UnicodeDecodeError, csv.Error) as exc:
        print(f"ledgerhook verify --export: cannot read {path}: {exc}", file=sys.stderr)  # noqa: T201
        return 2
    print(result.describe())  # noqa: T201
    return 0 if result.ok else 1
