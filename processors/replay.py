"""Rebuild billing state from the audit log, and compare it with the live state.

The rebuild is the same pure fold the workers do, run over the whole log in delivery-id order
in one snapshot: normalise each delivery, keep the first delivery of each event (later ones are
duplicates), and ``apply`` each update to the rebuilt object. Because an update only replaces
state when its version is higher, folding in id order gives the same final state as the live
workers' arrival order (highest version wins), which is exactly what the comparison checks.
Deliveries that cannot be normalised are skipped (live dead-letters them). Only current state
is rebuilt (not history), into ``processors_replay`` (same tables as ``processors``), which the
application role may empty and refill. Memory grows with the number of objects, not events.

A difference is a row present on one side only, or whose ``data``, ``version`` or ``deleted``
differ. ``last_delivery_id`` and ``updated_at`` are not compared: which of several deliveries of
one event applied it, and when, legitimately differ. Compare with an empty backlog (deliveries
not yet processed are in the rebuild but not yet live); the report says how many there are.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import msgspec

from audit.dbtypes import Conn
from processors import repository as repo
from processors.errors import NormalisationError
from processors.model import ObjectType, StoredObject
from processors.normalize import normalize_delivery
from processors.transitions import apply

__all__ = ["Difference", "RebuildStats", "compare", "rebuild", "rebuild_state"]

_BATCH = 500
_decoder = msgspec.json.Decoder(dict[str, Any])


class RebuildStats(msgspec.Struct, frozen=True, kw_only=True):
    deliveries: int
    duplicates: int
    ignored: int
    failed: int
    objects: int


class Difference(msgspec.Struct, frozen=True, kw_only=True):
    table: str
    provider: str
    account: str
    id: str
    # missing_live, missing_replay, differs
    kind: str
    fields: dict[str, list[Any]] = {}

    def describe(self) -> str:
        where = f"{self.table} {self.provider}/{self.account}/{self.id}"
        if self.kind != "differs":
            return f"{where}: {self.kind.replace('_', ' in ')}"
        parts = ", ".join(
            f"{k}: live={v[0]!r} replay={v[1]!r}" for k, v in sorted(self.fields.items())
        )
        return f"{where}: {parts}"


async def rebuild_state(
    conn: Conn, progress: Callable[[int], None] | None = None
) -> tuple[dict[tuple[ObjectType, str, str, str], StoredObject], RebuildStats]:
    """The rebuilt state in memory (key: object type, provider, account, id); ``progress`` is
    told how many deliveries each read covered."""
    state: dict[tuple[ObjectType, str, str, str], StoredObject] = {}
    seen: set[tuple[str, str, str]] = set()
    n = duplicates = ignored = failed = 0
    async with conn.transaction(isolation="repeatable_read", readonly=True):
        last = 0
        while True:
            rows = await conn.fetch(
                """
                SELECT id, provider, account, event_id, event_type, event_created, origin, body
                FROM audit.deliveries
                WHERE id > $1 ORDER BY id LIMIT $2
                """,
                last,
                _BATCH,
            )
            if not rows:
                break
            if progress is not None:
                progress(len(rows))
            for r in rows:
                last = r["id"]
                n += 1
                key = (r["provider"], r["account"], r["event_id"])
                if key in seen:
                    duplicates += 1
                    continue
                try:
                    event = normalize_delivery(
                        r["provider"],
                        bytes(r["body"]),
                        account=r["account"],
                        origin=r["origin"],
                        event_id=r["event_id"],
                        event_type=r["event_type"],
                        event_created=r["event_created"],
                    )
                except NormalisationError:
                    failed += 1
                    continue
                seen.add(key)
                if event is None:
                    ignored += 1
                    continue
                for u in event.updates:
                    okey = (u.object_type, r["provider"], r["account"], u.object_id)
                    t = apply(
                        state.get(okey),
                        u,
                        provider=r["provider"],
                        account=r["account"],
                        delivery_id=r["id"],
                    )
                    state[okey] = t.state
    stats = RebuildStats(
        deliveries=n, duplicates=duplicates, ignored=ignored, failed=failed, objects=len(state)
    )
    return state, stats


async def rebuild(conn: Conn, progress: Callable[[int], None] | None = None) -> RebuildStats:
    """Rebuild into ``processors_replay`` (emptied first), in one transaction."""
    state, stats = await rebuild_state(conn, progress)
    async with conn.transaction():
        tables = ", ".join(f"processors_replay.{t}" for t in repo.TABLES.values())
        await conn.execute(f"TRUNCATE {tables}")
        await repo.save_state(conn, list(state.values()), schema="processors_replay")
    return stats


def _field_diff(live: dict[str, Any], replay: dict[str, Any]) -> dict[str, list[Any]]:
    keys = set(live) | set(replay)
    return {k: [live.get(k), replay.get(k)] for k in keys if live.get(k) != replay.get(k)}


async def compare(conn: Conn) -> list[Difference]:
    """Every difference between ``processors`` (live) and ``processors_replay``."""
    out: list[Difference] = []
    for table in repo.TABLES.values():
        rows = await conn.fetch(
            f"""
            SELECT coalesce(l.provider, r.provider) AS provider,
                   coalesce(l.account, r.account) AS account,
                   coalesce(l.id, r.id) AS id,
                   l.id IS NULL AS missing_live, r.id IS NULL AS missing_replay,
                   l.data::text AS l_data, r.data::text AS r_data,
                   l.version AS l_version, r.version AS r_version,
                   l.deleted AS l_deleted, r.deleted AS r_deleted
            FROM processors.{table} l
            FULL OUTER JOIN processors_replay.{table} r USING (provider, account, id)
            WHERE l.id IS NULL OR r.id IS NULL
               OR l.data IS DISTINCT FROM r.data
               OR l.version IS DISTINCT FROM r.version
               OR l.deleted IS DISTINCT FROM r.deleted
            ORDER BY 1, 2, 3
            """
        )
        for r in rows:
            base = {
                "table": table,
                "provider": r["provider"],
                "account": r["account"],
                "id": r["id"],
            }
            if r["missing_live"]:
                out.append(Difference(kind="missing_live", **base))
            elif r["missing_replay"]:
                out.append(Difference(kind="missing_replay", **base))
            else:
                live = {
                    **_decoder.decode(r["l_data"]),
                    "version": r["l_version"],
                    "deleted": r["l_deleted"],
                }
                rep = {
                    **_decoder.decode(r["r_data"]),
                    "version": r["r_version"],
                    "deleted": r["r_deleted"],
                }
                out.append(Difference(kind="differs", fields=_field_diff(live, rep), **base))
    return out


async def backlog(conn: Conn) -> int:
    """Deliveries with no processed row (they make live lag behind the rebuild)."""
    n: int = await conn.fetchval(
        """
        SELECT count(*) FROM audit.deliveries d
        WHERE NOT EXISTS (SELECT 1 FROM processors.processed p WHERE p.delivery_id = d.id)
        """
    )
    return n
