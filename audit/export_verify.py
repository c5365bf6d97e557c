"""Offline verification of an export file (``ledgerhook verify --export FILE``): no database.

Rules, for the format written by :mod:`audit.export` (version 2):

- the checkpoint (header and trailer, identical) is a signed note by the log's key for the
  header's origin, and its body is the tree size and root the header states. The key is the one
  the auditor trusts (``--public-key``, or derived from ``LEDGERHOOK_CHECKPOINT_KEY`` /
  ``LEDGERHOOK_CHECKPOINT_KEY_FILE``); without one, the key the export names is used and the
  result says so: compare that key with one obtained some other way;
- every delivery record: the body's SHA-256 and length are ``body_sha256``/``body_size``, and
  the leaf hash recomputed from the record's fields (``LHleaf1``) is ``leaf_hash``;
- a **complete** export (unfiltered): leaf indexes run 0, 1, 2, ... up to the checkpoint's size,
  and the root rebuilt from all the leaf hashes is the checkpoint's root: nothing was added,
  removed, changed or reordered. Rows of the retired hash chain also chain (``prev_hash``,
  ``row_hash``) from the genesis hash;
- a **filtered** export: leaf indexes increase, and each record's inclusion proof leads from its
  leaf hash to the checkpoint's root (RFC 9162): each exported delivery is proved to be in the
  signed log, without the rest of it;
- the trailer's record count equals the records read.

Reading is streamed: memory stays constant whatever the file's size.
"""

from __future__ import annotations

import csv
import sys
from collections.abc import Iterable, Iterator
from pathlib import Path
from typing import Any

import msgspec

from audit.canonical import GENESIS, ChainFields, leaf_hash, row_hash
from audit.checkpoint_format import open_checkpoint
from audit.errors import AuditError
from audit.export import CSV_COLUMNS, DELIVERY_FIELDS, FORMAT, VERSION
from audit.merkle import Frontier, verify_inclusion
from audit.note import Verifier, format_verifier_key, parse_verifier_key
from audit.records import body_of, digest, leaf_fields

__all__ = ["ExportVerifyResult", "read_records", "verify_export_file", "verify_records"]

_INT_FIELDS = {"leaf_index", "id", "received_at_us", "event_created", "duplicate_of", "body_size"}


class ExportVerifyResult(msgspec.Struct, frozen=True, kw_only=True):
    ok: bool
    records: int
    complete: bool
    tree_size: int | None = None
    root: str | None = None
    key: str = ""
    first_bad: str | None = None
    line: int | None = None
    reason: str | None = None

    def describe(self) -> str:
        if not self.ok:
            where = self.first_bad or "the file"
            return f"export BROKEN at {where} (record {self.line}): {self.reason}"
        scope = (
            "every leaf of the tree, root rebuilt"
            if self.complete
            else "filtered: each record proved by its inclusion proof"
        )
        return (
            f"export OK: {self.records} records ({scope}); checkpoint tree size "
            f"{self.tree_size}, root {self.root}; {self.key}"
        )


class _Broken(Exception):
    def __init__(self, reason: str, where: str | None = None) -> None:
        super().__init__(reason)
        self.reason = reason
        self.where = where


def _legacy_hash(rec: dict[str, Any], prev: bytes, body_sha256: bytes) -> bytes:
    fields = ChainFields(
        id=rec["id"],
        received_at=leaf_fields(rec).received_at,
        provider=rec["provider"],
        endpoint=rec["endpoint"],
        account=rec["account"],
        event_id=rec["event_id"],
        event_type=rec["event_type"],
        event_created=rec["event_created"],
        object_id=rec["object_id"],
        origin=rec["origin"],
        source_address=rec["source_address"],
        content_type=rec["content_type"],
        headers=rec["headers"],
        verification=rec["verification"],
        duplicate_of=rec["duplicate_of"],
        body_sha256=body_sha256,
    )
    return row_hash(prev, fields)


def verify_records(
    records: Iterable[dict[str, Any]], verifier: Verifier | None
) -> ExportVerifyResult:
    """Verify a stream of decoded records (header, deliveries..., trailer)."""
    line = 0
    count = 0
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
        origin = header.get("origin")
        cp = header.get("checkpoint")
        if not isinstance(origin, str) or not isinstance(cp, dict):
            raise _Broken("the header names no origin or no checkpoint (nothing to prove against)")
        key_note = (
            f"checkpoint verified with the given key {format_verifier_key(verifier)}"
            if verifier
            else ""
        )
        if verifier is None:
            try:
                verifier = parse_verifier_key(str(header.get("public_key")))
            except AuditError as exc:
                raise _Broken(f"the header's public key is unusable: {exc}") from None
            key_note = (
                f"checkpoint signed by the key the export names ({header.get('public_key')}): "
                "compare it with the log's key obtained some other way, or pass --public-key"
            )
        try:
            signed = open_checkpoint(str(cp.get("note")), [verifier], origin=origin)
        except AuditError as exc:
            raise _Broken(f"the checkpoint does not verify: {exc}") from None
        size, root = signed.checkpoint.size, signed.checkpoint.root
        if cp.get("tree_size") != size or cp.get("root_hash") != root.hex():
            raise _Broken("the header's tree size or root is not what the signed note says")
        frontier = Frontier()
        last_index = -1
        legacy_prev = GENESIS
        seen_new = False
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
            index = rec.get("leaf_index")
            where = f"leaf {index} (delivery {rec.get('id')})"
            if not isinstance(index, int) or isinstance(index, bool) or not 0 <= index < size:
                raise _Broken("leaf_index is not an index of the checkpoint's tree", where)
            if index <= last_index:
                raise _Broken("leaf indexes do not increase (reordered or repeated)", where)
            if complete and index != last_index + 1:
                raise _Broken(f"leaves {last_index + 1}..{index - 1} are missing", where)
            try:
                body_of(rec)
                computed = leaf_hash(leaf_fields(rec))
                claimed = digest(rec.get("leaf_hash"), "leaf_hash")
            except AuditError as exc:
                raise _Broken(str(exc), where) from None
            if computed != claimed:
                raise _Broken("the record does not match its leaf hash (modified)", where)
            if complete:
                frontier, _ = frontier.append([computed])
                if rec.get("row_hash") is not None:
                    if seen_new:
                        raise _Broken("a retired chain row after newer leaves", where)
                    prev = digest(rec.get("prev_hash"), "prev_hash")
                    if prev != legacy_prev:
                        raise _Broken("legacy prev_hash does not chain (reordered)", where)
                    legacy = _legacy_hash(rec, prev, digest(rec["body_sha256"], "body_sha256"))
                    if legacy != digest(rec["row_hash"], "row_hash"):
                        raise _Broken("legacy row_hash does not match the row (modified)", where)
                    legacy_prev = legacy
                else:
                    seen_new = True
            else:
                proof = rec.get("inclusion")
                if not isinstance(proof, list):
                    raise _Broken("a filtered export's record has no inclusion proof", where)
                try:
                    verify_inclusion(
                        computed, index, size, [digest(h, "inclusion") for h in proof], root
                    )
                except AuditError as exc:
                    raise _Broken(f"its inclusion proof fails: {exc}", where) from None
            last_index = index
            count += 1
        if trailer is None:
            raise _Broken("no trailer record: the file is truncated")
        if trailer.get("records") != count:
            raise _Broken(
                f"the trailer says {trailer.get('records')} records, the file has {count}"
            )
        if trailer.get("checkpoint") != cp:
            raise _Broken("header and trailer checkpoints differ")
        if complete:
            if last_index + 1 != size:
                raise _Broken(
                    f"the checkpoint covers {size} leaves, the export has {last_index + 1}"
                )
            if (frontier.root() if size else root) != root:
                raise _Broken("the root rebuilt from the leaves is not the checkpoint's root")
        return ExportVerifyResult(
            ok=True, records=count, complete=complete, tree_size=size, root=root.hex(), key=key_note
        )
    except _Broken as exc:
        return ExportVerifyResult(
            ok=False,
            records=count,
            complete=complete,
            first_bad=exc.where,
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
            if v is not None and f in _INT_FIELDS:
                v = int(v)
            elif v is not None and f == "inclusion":
                v = v.split()
            rec[f] = v
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


def verify_export_file(path: str, verifier: Verifier | None) -> int:
    """Exit code: 0 verified, 1 broken, 2 unreadable. Prints the result on standard output."""
    try:
        result = verify_records(read_records(Path(path)), verifier)
    except (OSError, ValueError, msgspec.DecodeError, UnicodeDecodeError, csv.Error) as exc:
        print(f"ledgerhook verify --export: cannot read {path}: {exc}", file=sys.stderr)  # noqa: T201
        return 2
    print(result.describe())  # noqa: T201
    return 0 if result.ok else 1
