"""Reading the audit log: deliveries by id and by filters, rejections, and object timelines.

The Python API the rest of the code (and the HTTP routes) use. Functions take a connection, so
the caller owns the transaction. Lists use keyset pagination on the delivery ``id``, which is
immutable, so a page boundary never repeats a row. Ids are not commit-ordered (appends run side
by side), so a row committed late can land below a page already read: to follow the log as it
grows, follow its leaf order (``leaf_index``, :mod:`audit.tree_routes`, exports). SQL is built by pure functions (:func:`delivery_query`) from fixed
fragments; every value is a bound parameter. Each filter has an index (``0001`` and ``0011``
migrations) so no query walks the whole log.

Processing outcomes live in ``processors.processed`` (another package's table): they are joined
only when that table exists, so the audit API works before the processors are installed.
"""

from __future__ import annotations

import base64
import binascii
import re
from datetime import UTC, datetime
from typing import Any, Literal

import msgspec

from audit.append import Appended, NewDelivery, append_deliveries
from audit.dbtypes import Conn
from audit.errors import InvalidQuery, NotFound

__all__ = [
    "AccessPage",
    "AccessRecord",
    "Delivery",
    "DeliveryFilter",
    "DeliveryPage",
    "Outcome",
    "Processing",
    "Rejection",
    "RejectionFilter",
    "RejectionPage",
    "TimelineEntry",
    "append_delivery",
    "decode_cursor",
    "delivery_query",
    "encode_cursor",
    "get_delivery",
    "get_raw",
    "list_access",
    "list_deliveries",
    "list_rejections",
    "object_timeline",
    "processed_table_exists",
]

Order = Literal["asc", "desc"]
# What the processors did with a delivery (processors.processed.outcome), or not yet anything.
Outcome = Literal["applied", "duplicate", "stale", "ignored", "dead_letter", "unprocessed"]
_MAX_ID = 2**63 - 1


class DeliveryFilter(msgspec.Struct, frozen=True, kw_only=True):
    """Every filter is optional; ranges are [from, to). Event times are the provider's own."""

    provider: Literal["stripe", "chargebee"] | None = None
    endpoint: str | None = None
    account: str | None = None
    event_type: str | None = None
    event_id: str | None = None
    object_id: str | None = None
    origin: Literal["webhook", "reconciliation", "sync"] | None = None
    received_from: datetime | None = None
    received_to: datetime | None = None
    event_from: datetime | None = None
    event_to: datetime | None = None
    # How it was verified: a scheme ("stripe-v1") or a full value ("stripe-v1:key=3f2a...").
    verification: str | None = None
    duplicate: bool | None = None
    outcome: Outcome | None = None

    def is_empty(self) -> bool:
        return all(getattr(self, f) is None for f in self.__struct_fields__)

    def as_dict(self) -> dict[str, Any]:
        out: dict[str, Any] = msgspec.to_builtins(self)
        return {k: v for k, v in out.items() if v is not None}


class RejectionFilter(msgspec.Struct, frozen=True, kw_only=True):
    provider: str | None = None
    endpoint: str | None = None
    status: int | None = None
    received_from: datetime | None = None
    received_to: datetime | None = None


class Processing(msgspec.Struct, frozen=True, kw_only=True):
    """What the processors did with a delivery (``processors.processed``)."""

    outcome: str
    object_type: str | None
    object_id: str | None
    change: Any
    error: str | None
    attempts: int
    processed_at: datetime


class Delivery(msgspec.Struct, frozen=True, kw_only=True):
    """A delivery's metadata and place in the tree; the body is fetched separately (``get_raw``)."""

    id: int
    received_at: datetime
    provider: str
    endpoint: str
    account: str
    event_id: str
    event_type: str
    event_created: int
    object_id: str | None
    origin: str
    source_address: str | None
    content_type: str | None
    headers: list[list[str]]
    verification: str
    duplicate_of: int | None
    body_size: int
    body_sha256: str
    # Its leaf in the Merkle tree (None until the sequencer integrated it; proofs: /proof).
    leaf_index: int | None = None
    leaf_hash: str | None = None
    integrated_at: datetime | None = None
    # Only rows of the retired hash chain (appended before the tree) carry these.
    prev_hash: str | None = None
    row_hash: str | None = None
    processing: Processing | None = None


class DeliveryPage(msgspec.Struct, frozen=True, kw_only=True):
    items: list[Delivery]
    next_cursor: str | None


class Rejection(msgspec.Struct, frozen=True, kw_only=True):
    id: int
    received_at: datetime
    provider: str
    endpoint: str
    status: int
    reason: str
    source_address: str | None
    headers: list[list[str]]
    body_size: int
    body_sha256: str
    body_prefix_base64: str


class RejectionPage(msgspec.Struct, frozen=True, kw_only=True):
    items: list[Rejection]
    next_cursor: str | None


class AccessRecord(msgspec.Struct, frozen=True, kw_only=True):
    """One use of an API token (``audit.access_log``); never the token itself."""

    id: int
    at: datetime
    token_name: str | None
    role: str | None
    method: str
    path: str
    query: str
    decision: str
    required_role: str
    source_address: str | None


class AccessPage(msgspec.Struct, frozen=True, kw_only=True):
    items: list[AccessRecord]
    next_cursor: str | None


class TimelineEntry(msgspec.Struct, frozen=True, kw_only=True):
    """One delivery touching an object, and what it did to the state (None: not processed yet)."""

    delivery_id: int
    event_id: str
    event_type: str
    event_created: int
    received_at: datetime
    origin: str
    duplicate_of: int | None
    outcome: str | None
    change: Any
    error: str | None


# ---------------------------------------------------------------- cursors


_CURSOR = re.compile(r"^[A-Za-z0-9_-]{1,32}$")


def encode_cursor(last_id: int) -> str:
    """Opaque to clients; it is the last id seen, so it stays valid for ever."""
    return base64.urlsafe_b64encode(f"lh1:{last_id}".encode()).decode().rstrip("=")


def decode_cursor(cursor: str) -> int:
    if not _CURSOR.match(cursor):
        raise InvalidQuery("cursor: malformed (use the next_cursor of a previous page)")
    try:
        raw = base64.urlsafe_b64decode(cursor + "=" * (-len(cursor) % 4)).decode("ascii")
    except (binascii.Error, UnicodeDecodeError, ValueError):
        raise InvalidQuery("cursor: malformed (use the next_cursor of a previous page)") from None
    prefix, _, digits = raw.partition(":")
    if prefix != "lh1" or not digits.isdigit() or len(digits) > 19 or int(digits) > _MAX_ID:
        raise InvalidQuery("cursor: malformed (use the next_cursor of a previous page)")
    return int(digits)


# ---------------------------------------------------------------- query building (pure)


def _epoch_seconds(ts: datetime) -> int:
    if ts.tzinfo is None:
        ts = ts.replace(tzinfo=UTC)
    return int(ts.timestamp() // 1)


def _aware(ts: datetime) -> datetime:
    return ts if ts.tzinfo is not None else ts.replace(tzinfo=UTC)


def check_filter(f: DeliveryFilter) -> None:
    """Reject contradictions a caller would otherwise get as a silently empty result, and values
    PostgreSQL could not take (a NUL in text, a time that overflows UTC): checked here, before a
    streamed export has sent its headers, so the caller gets a 400 and not a cut-off stream."""
    for name in ("received_from", "received_to", "event_from", "event_to"):
        ts = getattr(f, name)
        if ts is not None:
            try:
                _aware(ts).astimezone(UTC)
                _epoch_seconds(ts)
            except (OverflowError, ValueError):
                raise InvalidQuery(f"{name}: out of range") from None
    for name, lo, hi in (
        ("received", f.received_from, f.received_to),
        ("event", f.event_from, f.event_to),
    ):
        if lo is not None and hi is not None and _aware(lo) >= _aware(hi):
            raise InvalidQuery(f"{name}_from must be before {name}_to")
    for name in ("endpoint", "account", "event_type", "event_id", "object_id", "verification"):
        value = getattr(f, name)
        if value is not None and (value == "" or len(value) > 255):
            raise InvalidQuery(f"{name}: must be 1 to 255 characters")
        if value is not None and "\x00" in value:
            raise InvalidQuery(f"{name}: must not contain NUL")


def delivery_where(f: DeliveryFilter, args: list[Any], alias: str = "d") -> list[str]:
    """WHERE clauses for ``f``, appending bound values to ``args``."""
    check_filter(f)
    clauses: list[str] = []

    def bind(value: Any) -> str:
        args.append(value)
        return f"${len(args)}"

    for column in (
        "provider",
        "endpoint",
        "account",
        "event_type",
        "event_id",
        "object_id",
        "origin",
    ):
        value = getattr(f, column)
        if value is not None:
            clauses.append(f"{alias}.{column} = {bind(value)}")
    if f.received_from is not None:
        clauses.append(f"{alias}.received_at >= {bind(_aware(f.received_from))}")
    if f.received_to is not None:
        clauses.append(f"{alias}.received_at < {bind(_aware(f.received_to))}")
    if f.event_from is not None:
        clauses.append(f"{alias}.event_created >= {bind(_epoch_seconds(f.event_from))}")
    if f.event_to is not None:
        clauses.append(f"{alias}.event_created < {bind(_epoch_seconds(f.event_to))}")
    if f.verification is not None:
        p = bind(f.verification)
        clauses.append(
            f"({alias}.verification = {p} OR split_part({alias}.verification, ':', 1) = {p})"
        )
    if f.duplicate is True:
        clauses.append(f"{alias}.duplicate_of IS NOT NULL")
    elif f.duplicate is False:
        clauses.append(f"{alias}.duplicate_of IS NULL")
    if f.outcome == "unprocessed":
        clauses.append(
            f"NOT EXISTS (SELECT 1 FROM processors.processed o WHERE o.delivery_id = {alias}.id)"
        )
    elif f.outcome is not None:
        clauses.append(
            "EXISTS (SELECT 1 FROM processors.processed o "
            f"WHERE o.delivery_id = {alias}.id AND o.outcome = {bind(f.outcome)})"
        )
    return clauses


_META = """d.id, d.received_at, d.provider, d.endpoint, d.account, d.event_id, d.event_type,
       d.event_created, d.object_id, d.origin, d.source_address, d.content_type, d.headers,
       d.verification, d.duplicate_of, coalesce(d.body_size, length(d.body)) AS body_size,
       d.body_sha256, d.prev_hash, d.row_hash, l.leaf_index, l.leaf_hash, l.integrated_at"""
_LEAF_JOIN = " LEFT JOIN audit.leaves l ON l.delivery_id = d.id"

_PROCESSING = """, p.outcome AS p_outcome, p.object_type AS p_object_type,
       p.object_id AS p_object_id, p.change::text AS p_change, p.error AS p_error,
       p.attempts AS p_attempts, p.processed_at AS p_processed_at"""


def delivery_query(
    f: DeliveryFilter,
    *,
    after: int | None,
    limit: int,
    order: Order = "asc",
    with_processing: bool = False,
) -> tuple[str, list[Any]]:
    """SELECT for one page: rows after the cursor in ``order``, ``limit`` rows at most."""
    args: list[Any] = []
    clauses = delivery_where(f, args)
    if after is not None:
        args.append(after)
        clauses.append(f"d.id {'>' if order == 'asc' else '<'} ${len(args)}")
    args.append(limit)
    where = " AND ".join(clauses) or "TRUE"
    join = " LEFT JOIN processors.processed p ON p.delivery_id = d.id" if with_processing else ""
    sql = (
        f"SELECT {_META}{_PROCESSING if with_processing else ''} "
        f"FROM audit.deliveries d{_LEAF_JOIN}{join} "
        f"WHERE {where} ORDER BY d.id {order.upper()} LIMIT ${len(args)}"
    )
    return sql, args


# ---------------------------------------------------------------- rows -> structs

_headers_decoder = msgspec.json.Decoder(list[list[str]])


def _headers(text: str) -> list[list[str]]:
    try:
        return _headers_decoder.decode(text)
    except msgspec.DecodeError:
        return [["(unparsed)", text]]


def _processing(r: Any) -> Processing | None:
    if r.get("p_outcome") is None:
        return None
    return Processing(
        outcome=r["p_outcome"],
        object_type=r["p_object_type"],
        object_id=r["p_object_id"],
        change=None if r["p_change"] is None else msgspec.json.decode(r["p_change"]),
        error=r["p_error"],
        attempts=r["p_attempts"],
        processed_at=r["p_processed_at"],
    )


def _delivery(r: Any) -> Delivery:
    keys = set(r.keys())
    return Delivery(
        id=r["id"],
        received_at=r["received_at"],
        provider=r["provider"],
        endpoint=r["endpoint"],
        account=r["account"],
        event_id=r["event_id"],
        event_type=r["event_type"],
        event_created=r["event_created"],
        object_id=r["object_id"],
        origin=r["origin"],
        source_address=r["source_address"],
        content_type=r["content_type"],
        headers=_headers(r["headers"]),
        verification=r["verification"],
        duplicate_of=r["duplicate_of"],
        body_size=r["body_size"],
        body_sha256=bytes(r["body_sha256"]).hex(),
        leaf_index=r["leaf_index"],
        leaf_hash=None if r["leaf_hash"] is None else bytes(r["leaf_hash"]).hex(),
        integrated_at=r["integrated_at"],
        prev_hash=None if r["prev_hash"] is None else bytes(r["prev_hash"]).hex(),
        row_hash=None if r["row_hash"] is None else bytes(r["row_hash"]).hex(),
        processing=_processing(r) if "p_outcome" in keys else None,
    )


# ---------------------------------------------------------------- I/O


async def processed_table_exists(conn: Conn) -> bool:
    return bool(await conn.fetchval("SELECT to_regclass('processors.processed') IS NOT NULL"))


async def append_delivery(conn: Conn, d: NewDelivery) -> Appended:
    """Append one delivery (a batch of one); see :func:`audit.append.append_deliveries`."""
    (appended,) = await append_deliveries(conn, [d])  # type: ignore[arg-type]
    return appended


async def list_deliveries(
    conn: Conn,
    f: DeliveryFilter,
    *,
    cursor: str | None = None,
    limit: int = 100,
    order: Order = "asc",
    with_processing: bool = False,
) -> DeliveryPage:
    after = None if cursor is None else decode_cursor(cursor)
    with_processing = with_processing and await processed_table_exists(conn)
    sql, args = delivery_query(
        f, after=after, limit=limit + 1, order=order, with_processing=with_processing
    )
    rows = await conn.fetch(sql, *args)
    items = [_delivery(r) for r in rows[:limit]]
    more = len(rows) > limit
    return DeliveryPage(items=items, next_cursor=encode_cursor(items[-1].id) if more else None)


async def get_delivery(conn: Conn, delivery_id: int) -> Delivery:
    with_processing = await processed_table_exists(conn)
    join = " LEFT JOIN processors.processed p ON p.delivery_id = d.id" if with_processing else ""
    row = await conn.fetchrow(
        f"SELECT {_META}{_PROCESSING if with_processing else ''} "
        f"FROM audit.deliveries d{_LEAF_JOIN}{join} WHERE d.id = $1",
        delivery_id,
    )
    if row is None:
        raise NotFound(f"delivery {delivery_id} does not exist")
    return _delivery(row)


async def get_raw(conn: Conn, delivery_id: int) -> tuple[bytes, str | None]:
    """The exact body bytes and the content type they arrived with."""
    row = await conn.fetchrow(
        "SELECT body, content_type FROM audit.deliveries WHERE id = $1", delivery_id
    )
    if row is None:
        raise NotFound(f"delivery {delivery_id} does not exist")
    return bytes(row["body"]), row["content_type"]


async def object_timeline(
    conn: Conn, provider: str, object_id: str, *, limit: int = 1000
) -> list[TimelineEntry]:
    """Every delivery whose main object is ``object_id``, in provider-event order.

    Provider-event order is ``(event_created, id)``: the provider's clock first, the arrival order
    breaking ties, which is the order the processors judge staleness by.
    """
    with_processing = await processed_table_exists(conn)
    if with_processing:
        cols = "p.outcome, p.change::text AS change, p.error"
        join = " LEFT JOIN processors.processed p ON p.delivery_id = d.id"
    else:
        cols = "NULL::text AS outcome, NULL::text AS change, NULL::text AS error"
        join = ""
    rows = await conn.fetch(
        f"""
        SELECT d.id, d.event_id, d.event_type, d.event_created, d.received_at, d.origin,
               d.duplicate_of, {cols}
        FROM audit.deliveries d{join}
        WHERE d.provider = $1 AND d.object_id = $2
        ORDER BY d.event_created, d.id
        LIMIT $3
        """,
        provider,
        object_id,
        limit,
    )
    if not rows:
        raise NotFound(f"no deliveries for {provider} object {object_id}")
    return [
        TimelineEntry(
            delivery_id=r["id"],
            event_id=r["event_id"],
            event_type=r["event_type"],
            event_created=r["event_created"],
            received_at=r["received_at"],
            origin=r["origin"],
            duplicate_of=r["duplicate_of"],
            outcome=r["outcome"],
            change=None if r["change"] is None else msgspec.json.decode(r["change"]),
            error=r["error"],
        )
        for r in rows
    ]


def _rejection_where(f: RejectionFilter, args: list[Any]) -> list[str]:
    clauses: list[str] = []
    for column in ("provider", "endpoint", "status"):
        value = getattr(f, column)
        if value is not None:
            args.append(value)
            clauses.append(f"r.{column} = ${len(args)}")
    if f.received_from is not None:
        args.append(_aware(f.received_from))
        clauses.append(f"r.received_at >= ${len(args)}")
    if f.received_to is not None:
        args.append(_aware(f.received_to))
        clauses.append(f"r.received_at < ${len(args)}")
    return clauses


async def list_rejections(
    conn: Conn,
    f: RejectionFilter,
    *,
    cursor: str | None = None,
    limit: int = 100,
    order: Order = "asc",
) -> RejectionPage:
    args: list[Any] = []
    clauses = _rejection_where(f, args)
    if cursor is not None:
        args.append(decode_cursor(cursor))
        clauses.append(f"r.id {'>' if order == 'asc' else '<'} ${len(args)}")
    args.append(limit + 1)
    rows = await conn.fetch(
        f"""
        SELECT r.id, r.received_at, r.provider, r.endpoint, r.status, r.reason, r.source_address,
               r.headers, r.body_size, r.body_sha256, r.body_prefix
        FROM audit.rejections r WHERE {" AND ".join(clauses) or "TRUE"}
        ORDER BY r.id {order.upper()} LIMIT ${len(args)}
        """,
        *args,
    )
    items = [
        Rejection(
            id=r["id"],
            received_at=r["received_at"],
            provider=r["provider"],
            endpoint=r["endpoint"],
            status=r["status"],
            reason=r["reason"],
            source_address=r["source_address"],
            headers=_headers(r["headers"]),
            body_size=r["body_size"],
            body_sha256=bytes(r["body_sha256"]).hex(),
            body_prefix_base64=base64.b64encode(bytes(r["body_prefix"])).decode(),
        )
        for r in rows[:limit]
    ]
    more = len(rows) > limit
    return RejectionPage(items=items, next_cursor=encode_cursor(items[-1].id) if more else None)


async def list_access(
    conn: Conn,
    *,
    token_name: str | None = None,
    decision: str | None = None,
    cursor: str | None = None,
    limit: int = 100,
) -> AccessPage:
    """The access log, newest first (who queried what, when)."""
    args: list[Any] = []
    clauses: list[str] = []
    if token_name is not None:
        args.append(token_name)
        clauses.append(f"token_name = ${len(args)}")
    if decision is not None:
        args.append(decision)
        clauses.append(f"decision = ${len(args)}")
    if cursor is not None:
        args.append(decode_cursor(cursor))
        clauses.append(f"id < ${len(args)}")
    args.append(limit + 1)
    rows = await conn.fetch(
        f"""
        SELECT id, at, token_name, role, method, path, query, decision, required_role,
               source_address
        FROM audit.access_log WHERE {" AND ".join(clauses) or "TRUE"}
        ORDER BY id DESC LIMIT ${len(args)}
        """,
        *args,
    )
    items = [AccessRecord(**dict(r)) for r in rows[:limit]]
    more = len(rows) > limit
    return AccessPage(items=items, next_cursor=encode_cursor(items[-1].id) if more else None)


def page_size(requested: int | None, default: int, maximum: int) -> int:
    if requested is None:
        return default
    if requested < 1 or requested > maximum:
        raise InvalidQuery(f"limit: must be between 1 and {maximum}")
    return requested
