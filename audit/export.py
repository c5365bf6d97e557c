"""Streaming export of the log, in a form an outsider verifies offline with the public key.

Format ``ledgerhook-export`` version 2, as JSON Lines (one object per line) or CSV:

1. a ``header`` record: format, version, the log's ``origin`` and ``public_key`` (note verifier
   key), the filters, ``complete`` (true when unfiltered), and the ``checkpoint`` the export is
   proved against: the latest signed checkpoint (its exact note text, tree size, root);
2. one ``delivery`` record per leaf below the checkpoint's tree size that matches the filters, in
   leaf order: ``leaf_index``, ``leaf_hash`` and the delivery record (:mod:`audit.records`:
   everything the leaf commits to, the headers' exact JSON text, the body in base64, legacy chain
   hashes for rows of the retired chain). In a filtered export each record also carries its
   ``inclusion`` proof (hex hashes) in the checkpoint's tree; a complete export needs none:
   the verifier rebuilds the whole tree;
3. a ``trailer`` record: the record count, the checkpoint again, and how many leaves and
   committed deliveries are newer than the checkpoint (not in this export: sign a checkpoint
   first, ``ledgerhook checkpoint``, to include them).

In CSV, each line has the columns of :data:`CSV_COLUMNS`; NULL fields are listed by name in the
``nulls`` column (CSV has no NULL), the inclusion proof is space-separated hex, and
header/trailer records carry their JSON in ``meta``.

Memory stays constant for any size: rows come from a server-side cursor inside one
REPEATABLE READ read-only transaction (one consistent snapshot) and leave as soon as encoded, in
chunks of about :data:`CHUNK_BYTES`. See :mod:`audit.export_verify` for the verification rules.
"""

from __future__ import annotations

import csv
import io
from collections.abc import AsyncIterator, Callable
from datetime import UTC, datetime
from typing import Any, Literal

import msgspec

from audit.checkpoints import TreeCheckpoint, latest_checkpoint
from audit.dbtypes import Conn
from audit.merkle import assemble, inclusion_plan
from audit.records import LEAF_FIELDS, delivery_record
from audit.repository import DeliveryFilter, delivery_where
from audit.sequencer import integration_backlog
from audit.tree import subtree_hashes

__all__ = ["CSV_COLUMNS", "DELIVERY_FIELDS", "FORMAT", "VERSION", "ExportFormat", "export_chunks"]

FORMAT = "ledgerhook-export"
VERSION = 2
CHUNK_BYTES = 64 * 1024
ExportFormat = Literal["jsonl", "csv"]

DELIVERY_FIELDS = (
    "leaf_index",
    "leaf_hash",
    *LEAF_FIELDS,
    "received_at",
    "headers",
    "duplicate_of",
    "prev_hash",
    "row_hash",
    "body_base64",
    "inclusion",
)
CSV_COLUMNS = ("record", *DELIVERY_FIELDS, "nulls", "meta")

_SELECT = """
SELECT l.leaf_index, l.leaf_hash, d.id, d.received_at, d.provider, d.endpoint, d.account,
       d.event_id, d.event_type, d.event_created, d.object_id, d.origin, d.source_address,
       d.content_type, d.headers, d.verification, d.duplicate_of, d.body, d.body_sha256,
       coalesce(d.body_size, octet_length(d.body)) AS body_size, d.prev_hash, d.row_hash
FROM audit.leaves l
JOIN audit.deliveries d ON d.id = l.delivery_id AND d.received_at = l.received_at
WHERE l.leaf_index < {size} AND {where}
ORDER BY l.leaf_index
"""

_json = msgspec.json.Encoder()


def checkpoint_record(cp: TreeCheckpoint | None) -> dict[str, Any] | None:
    if cp is None:
        return None
    return {
        "id": cp.id,
        "created_at": cp.created_at.isoformat(),
        "tree_size": cp.tree_size,
        "root_hash": cp.root_hash.hex(),
        "note": cp.note,
    }


class _Encoder:
    """Turns records into bytes in one format."""

    def __init__(self, fmt: ExportFormat) -> None:
        self.fmt = fmt
        self._buf = io.StringIO()
        self._csv = csv.writer(self._buf, lineterminator="\n")

    def start(self) -> bytes:
        if self.fmt == "csv":
            self._csv.writerow(CSV_COLUMNS)
            return self._take()
        return b""

    def _take(self) -> bytes:
        out = self._buf.getvalue().encode("utf-8")
        self._buf.seek(0)
        self._buf.truncate()
        return out

    def encode(self, record: dict[str, Any]) -> bytes:
        if self.fmt == "jsonl":
            return _json.encode(record) + b"\n"
        kind = record["type"]
        if kind == "delivery":
            values = dict(record)
            if values.get("inclusion") is not None:
                values["inclusion"] = " ".join(values["inclusion"])
            nulls = [f for f in DELIVERY_FIELDS if values.get(f) is None]
            row = [kind, *("" if values.get(f) is None else values[f] for f in DELIVERY_FIELDS)]
            self._csv.writerow([*row, ",".join(nulls), ""])
        else:
            empty = [""] * len(DELIVERY_FIELDS)
            self._csv.writerow([kind, *empty, "", _json.encode(record).decode()])
        return self._take()


async def export_chunks(
    conn: Conn,
    f: DeliveryFilter,
    fmt: ExportFormat = "jsonl",
    *,
    origin: str,
    public_key: str,
    progress: Callable[[int], None] | None = None,
    progress_every: int = 100_000,
) -> AsyncIterator[bytes]:
    """The export as byte chunks; checkpoint, leaves and counts from one snapshot."""
    args: list[Any] = []
    where = " AND ".join(delivery_where(f, args)) or "TRUE"
    complete = f.is_empty()
    enc = _Encoder(fmt)
    async with conn.transaction(isolation="repeatable_read", readonly=True):
        cp = await latest_checkpoint(conn)
        if cp is not None and cp.origin != origin:
            cp = None
        size = 0 if cp is None else cp.tree_size
        checkpoint = checkpoint_record(cp)
        header = {
            "type": "header",
            "format": FORMAT,
            "version": VERSION,
            "exported_at": datetime.now(UTC).isoformat(),
            "origin": origin,
            "public_key": public_key,
            "filters": f.as_dict(),
            "complete": complete,
            "checkpoint": checkpoint,
        }
        buf = bytearray(enc.start() + enc.encode(header))
        count = 0
        query = _SELECT.format(size=int(size), where=where)
        async for r in conn.cursor(query, *args, prefetch=500):
            record = {
                "type": "delivery",
                "leaf_index": r["leaf_index"],
                "leaf_hash": bytes(r["leaf_hash"]).hex(),
                **delivery_record(r, with_body=True),
                "inclusion": None,
            }
            if not complete:
                plan = inclusion_plan(r["leaf_index"], size)
                hashes = assemble(plan, await subtree_hashes(conn, plan.nodes))
                record["inclusion"] = [h.hex() for h in hashes]
            buf += enc.encode(record)
            count += 1
            if progress is not None and count % progress_every == 0:
                progress(count)
            if len(buf) >= CHUNK_BYTES:
                yield bytes(buf)
                buf.clear()
        newer_leaves = await conn.fetchval(
            "SELECT count(*) FROM audit.leaves WHERE leaf_index >= $1", size
        )
        unintegrated, _ = await integration_backlog(conn)
        trailer = {
            "type": "trailer",
            "records": count,
            "checkpoint": checkpoint,
            "newer_leaves": newer_leaves,
            "not_yet_integrated": unintegrated,
        }
        buf += enc.encode(trailer)
        yield bytes(buf)
        if progress is not None:
            progress(count)
