"""Streaming export of the audit log, in a form an outsider can verify offline.

Format ``ledgerhook-export`` version 1, as JSON Lines (one object per line) or CSV:

1. a ``header`` record: format, version, the filters, and ``complete`` (true when unfiltered,
   i.e. every row of the log is in the file, so the whole linkage can be checked);
2. one ``delivery`` record per row, in chain order, with every field the chain hash covers
   (``received_at_us`` exact microseconds, ``headers`` as the exact stored JSON text), the body
   in base64, ``body_sha256``, ``prev_hash`` and ``row_hash`` in hex;
3. a ``trailer`` record (the checkpoint is in the header too, so a verifier streaming the rows
   knows which row to compare it with): the row count, the chain head (id, hash) and the latest signed
   checkpoint at or below the head, all read in the same snapshot as the rows.

In CSV, each line has the columns of :data:`CSV_COLUMNS`; NULL fields are listed by name in the
``nulls`` column (CSV has no NULL), and header/trailer records carry their JSON in ``meta``.

Memory stays constant for any size: rows come from a server-side cursor inside one
REPEATABLE READ read-only transaction (one consistent snapshot) and leave as soon as encoded, in
chunks of about :data:`CHUNK_BYTES`. See :mod:`audit.export_verify` for the verification rules.
"""

from __future__ import annotations

import base64
import csv
import io
from collections.abc import AsyncIterator, Callable
from datetime import UTC, datetime
from typing import Any, Literal

import msgspec

from audit.canonical import micros
from audit.checkpoints import Checkpoint
from audit.dbtypes import Conn
from audit.repository import DeliveryFilter, delivery_where

__all__ = ["CSV_COLUMNS", "FORMAT", "ExportFormat", "export_chunks"]

FORMAT = "ledgerhook-export"
VERSION = 1
CHUNK_BYTES = 64 * 1024
ExportFormat = Literal["jsonl", "csv"]

DELIVERY_FIELDS = (
    "id",
    "received_at_us",
    "received_at",
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
    "headers",
    "verification",
    "duplicate_of",
    "body_sha256",
    "prev_hash",
    "row_hash",
    "body_base64",
)
CSV_COLUMNS = ("record", *DELIVERY_FIELDS, "nulls", "meta")

_SELECT = """
SELECT d.id, d.received_at, d.provider, d.endpoint, d.account, d.event_id, d.event_type,
       d.event_created, d.object_id, d.origin, d.source_address, d.content_type, d.headers,
       d.verification, d.duplicate_of, d.body, d.body_sha256, d.prev_hash, d.row_hash
FROM audit.deliveries d WHERE {where} ORDER BY d.id
"""

_json = msgspec.json.Encoder()


def _record(r: Any) -> dict[str, Any]:
    return {
        "type": "delivery",
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
        "verification": r["verification"],
        "duplicate_of": r["duplicate_of"],
        "body_sha256": bytes(r["body_sha256"]).hex(),
        "prev_hash": bytes(r["prev_hash"]).hex(),
        "row_hash": bytes(r["row_hash"]).hex(),
        "body_base64": base64.b64encode(bytes(r["body"])).decode("ascii"),
    }


def checkpoint_record(cp: Checkpoint) -> dict[str, Any]:
    return {
        "id": cp.id,
        "created_at": cp.created_at.isoformat(),
        "created_at_us": micros(cp.created_at),
        "delivery_id": cp.delivery_id,
        "chain_hash": cp.chain_hash.hex(),
        "row_count": cp.row_count,
        "key_id": cp.key_id,
        "signature": cp.signature.hex(),
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
            nulls = [f for f in DELIVERY_FIELDS if record[f] is None]
            row = [kind, *("" if record[f] is None else record[f] for f in DELIVERY_FIELDS)]
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
    progress: Callable[[int], None] | None = None,
    progress_every: int = 100_000,
) -> AsyncIterator[bytes]:
    """The export as byte chunks; rows, head and checkpoint from one snapshot."""
    args: list[Any] = []
    where = " AND ".join(delivery_where(f, args)) or "TRUE"
    enc = _Encoder(fmt)
    async with conn.transaction(isolation="repeatable_read", readonly=True):
        head = await conn.fetchrow(
            "SELECT id, row_hash FROM audit.deliveries ORDER BY id DESC LIMIT 1"
        )
        head_id = 0 if head is None else head["id"]
        cp_row = await conn.fetchrow(
            "SELECT id, created_at, delivery_id, chain_hash, row_count, key_id, signature "
            "FROM audit.checkpoints WHERE delivery_id <= $1 ORDER BY id DESC LIMIT 1",
            head_id,
        )
        checkpoint = None
        if cp_row is not None:
            checkpoint = checkpoint_record(
                Checkpoint(
                    id=cp_row["id"],
                    created_at=cp_row["created_at"],
                    delivery_id=cp_row["delivery_id"],
                    chain_hash=bytes(cp_row["chain_hash"]),
                    row_count=cp_row["row_count"],
                    key_id=cp_row["key_id"],
                    signature=bytes(cp_row["signature"]),
                )
            )
        header = {
            "type": "header",
            "format": FORMAT,
            "version": VERSION,
            "exported_at": datetime.now(UTC).isoformat(),
            "filters": f.as_dict(),
            "complete": f.is_empty(),
            "checkpoint": checkpoint,
        }
        buf = bytearray(enc.start() + enc.encode(header))
        count = 0
        async for r in conn.cursor(_SELECT.format(where=where), *args, prefetch=500):
            buf += enc.encode(_record(r))
            count += 1
            if progress is not None and count % progress_every == 0:
                progress(count)
            if len(buf) >= CHUNK_BYTES:
                yield bytes(buf)
                buf.clear()
        trailer = {
            "type": "trailer",
            "rows": count,
            "head": {
                "id": head_id,
                "row_hash": None if head is None else bytes(head["row_hash"]).hex(),
            },
            "checkpoint": checkpoint,
        }
        buf += enc.encode(trailer)
        yield bytes(buf)
        if progress is not None:
            progress(count)
