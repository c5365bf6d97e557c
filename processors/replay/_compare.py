"""Compare live (``processors``) with a rebuild (``processors_replay``), row by row, field by field.

Every column is compared except the few listed in :data:`TABLES` as derived from processing
(when a row was written, how many attempts, a row's serial id); the README's table says why
each exclusion is legitimate. Comparing whole rows as ``jsonb`` minus those columns means a
column added later is compared by default, not forgotten.

Rows are matched by a key: the primary key for state and settlements; for history, subscription
changes and anomalies the delivery and the object (plus the anomaly kind), with the n-th row of
a key on one side matched with the n-th on the other (by id), so a row written twice is a
difference, not a match.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, Literal, NamedTuple

import msgspec

from audit.dbtypes import Conn
from processors import repository as repo

__all__ = ["TABLES", "Difference", "Table", "compare"]

Kind = Literal["missing_live", "missing_replay", "differs"]

_decoder = msgspec.json.Decoder(dict[str, Any])
_encoder = msgspec.json.Encoder()


class Table(NamedTuple):
    name: str
    key: tuple[str, ...]
    # Columns derived from processing, not from the log: not compared (README, "Replay").
    derived: tuple[str, ...]
    # Whether several rows may share a key (then matched in id order).
    numbered: bool = False
    # Which live rows a rebuild stands for (settlements only, not duplicates or dead letters).
    live_where: str = "true"


TABLES: tuple[Table, ...] = (
    *(Table(t, ("provider", "account", "id"), ("updated_at",)) for t in repo.TABLES.values()),
    Table(
        "processed",
        ("delivery_id",),
        ("attempts", "processed_at"),
        live_where="outcome IN ('applied', 'stale', 'ignored')",
    ),
    Table(
        "history",
        ("provider", "account", "object_type", "object_id", "delivery_id"),
        ("id", "recorded_at"),
        numbered=True,
    ),
    Table(
        "subscription_changes",
        ("provider", "account", "subscription_id", "delivery_id"),
        ("id", "recorded_at"),
        numbered=True,
    ),
    Table(
        "anomalies",
        ("provider", "account", "object_type", "object_id", "delivery_id", "kind"),
        ("id", "created_at"),
        numbered=True,
    ),
)

_OBJECT_LABELS = {
    table: object_type.replace("_", " ") for object_type, table in repo.TABLES.items()
}


def _show(value: Any) -> str:
    return _encoder.encode(value).decode()


class Difference(msgspec.Struct, frozen=True, kw_only=True):
    """One row that differs. ``id`` is the object's id (the event's for a settlement)."""

    table: str
    provider: str
    account: str
    id: str
    kind: Kind
    # {"field": [live, rebuilt]}; a state row's ``data`` is spread into its own fields.
    fields: dict[str, list[Any]] = {}
    delivery_id: int | None = None
    # Where, in words: "subscription stripe/acct_1/sub_1", "history of invoice ... delivery 7".
    subject: str = ""

    def describe(self) -> str:
        if self.kind == "missing_replay":
            return f"{self.subject}: only in live (the rebuild from the log has no such row)"
        if self.kind == "missing_live":
            return f"{self.subject}: only in the rebuild (missing from live)"
        return "\n".join(
            f"{self.subject}: {name}: live {_show(live)}, rebuilt {_show(rebuilt)}"
            for name, (live, rebuilt) in self.fields.items()
        )


def _field_diff(live: dict[str, Any], rebuilt: dict[str, Any]) -> dict[str, list[Any]]:
    """``data`` spread into the snapshot's fields by name; a column that repeats one of them
    (``mrr``, ``status``) is reported on its own only when it tells something more."""
    out: dict[str, list[Any]] = {}
    live, rebuilt = dict(live), dict(rebuilt)
    ld, rd = live.pop("data", None), rebuilt.pop("data", None)
    if isinstance(ld, dict) or isinstance(rd, dict):
        ld = ld if isinstance(ld, dict) else {}
        rd = rd if isinstance(rd, dict) else {}
        for name in sorted(set(ld) | set(rd)):
            if ld.get(name) != rd.get(name):
                out[name] = [ld.get(name), rd.get(name)]
    for name in sorted(set(live) | set(rebuilt)):
        pair = [live.get(name), rebuilt.get(name)]
        if pair[0] == pair[1] or out.get(name) == pair:
            continue
        out[f"{name} (column)" if name in out else name] = pair
    return out


def _sql(t: Table) -> str:
    key = ", ".join(t.key)
    n = f"row_number() OVER (PARTITION BY {key} ORDER BY x.id)" if t.numbered else "1"
    side = "SELECT {key}, {n} AS n, to_jsonb(x) - $1::text[] AS v FROM {schema}.{name} x WHERE {w}"
    live = side.format(key=key, n=n, schema="processors", name=t.name, w=t.live_where)
    replay = side.format(key=key, n=n, schema="processors_replay", name=t.name, w="true")
    return f"""
        WITH l AS ({live}), r AS ({replay})
        SELECT {key}, n, l.v::text AS live, r.v::text AS rebuilt
        FROM l FULL JOIN r USING ({key}, n)
        WHERE l.v IS DISTINCT FROM r.v
        ORDER BY {key}, n
    """


def _subject(t: Table, k: dict[str, Any], values: dict[str, Any], n: int) -> str:
    where = f"{k.get('provider', values.get('provider'))}/{k.get('account', values.get('account'))}"
    if t.name in _OBJECT_LABELS:
        return f"{_OBJECT_LABELS[t.name]} {where}/{k['id']}"
    nth = f" (row {n})" if n > 1 else ""
    delivery = f"delivery {k['delivery_id']}{nth}"
    if t.name == "processed":
        return f"settlement of event {where}/{values.get('event_id')} by {delivery}"
    if t.name == "history":
        return f"history of {k['object_type']} {where}/{k['object_id']}, {delivery}"
    if t.name == "subscription_changes":
        return f"subscription change of {where}/{k['subscription_id']}, {delivery}"
    return f"anomaly {k['kind']} on {k['object_type']} {where}/{k['object_id']}, {delivery}"


async def _compare_table(conn: Conn, t: Table) -> list[Difference]:
    out: list[Difference] = []
    for r in await conn.fetch(_sql(t), list(t.derived)):
        k = {c: r[c] for c in t.key}
        live = _decoder.decode(r["live"]) if r["live"] is not None else None
        rebuilt = _decoder.decode(r["rebuilt"]) if r["rebuilt"] is not None else None
        values = live or rebuilt or {}
        kind: Kind = (
            "missing_live" if live is None else "missing_replay" if rebuilt is None else "differs"
        )
        out.append(
            Difference(
                table=t.name,
                provider=str(k.get("provider", values.get("provider"))),
                account=str(k.get("account", values.get("account"))),
                id=str(
                    k.get("id")
                    or k.get("object_id")
                    or k.get("subscription_id")
                    or values.get("event_id")
                ),
                kind=kind,
                fields=_field_diff(live, rebuilt)
                if live is not None and rebuilt is not None
                else {},
                delivery_id=k.get("delivery_id"),
                subject=_subject(t, k, values, r["n"]),
            )
        )
    return out


async def compare(conn: Conn, progress: Callable[[str], None] | None = None) -> list[Difference]:
    """Every difference between live and ``processors_replay``, table by table.

    Run in the rebuild's transaction (:func:`processors.replay.rebuild_and_compare`) to compare
    against the same snapshot; alone, it compares whatever live is now. ``progress`` is told the
    name of each table before it is compared.
    """
    out: list[Difference] = []
    for t in TABLES:
        if progress is not None:
            progress(t.name)
        out += await _compare_table(conn, t)
    return out
