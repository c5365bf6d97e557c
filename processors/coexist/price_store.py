"""The price map's storage: imports (a later entry replaces an earlier one; the history keeps
both, in ``coexist.price_events``) and the whole map for a verification run."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Literal

from audit.dbtypes import Conn
from processors.coexist.errors import LinkConflict
from processors.coexist.imports import Format
from processors.coexist.links import LOCK, ImportResult, new_import
from processors.coexist.model import PriceLine

__all__ = ["import_prices", "load_prices"]


async def import_prices(
    conn: Conn,
    lines: Sequence[PriceLine],
    *,
    actor: str,
    origin: Literal["cli", "api"],
    source: str,
    fmt: Format,
) -> ImportResult:
    """Set price map entries (a later import replaces an entry; the history keeps both)."""
    seen: dict[tuple[str, str, str], PriceLine] = {}
    for ln in lines:
        k = (ln.source_provider, ln.source_price, ln.target_provider)
        twin = seen.get(k)
        if twin is not None and twin.target_price != ln.target_price:
            raise LinkConflict(
                f"{'item' if fmt == 'json' else 'line'} {ln.line}: {ln.source_price} maps to "
                f"{twin.target_price} on line {twin.line} already"
            )
        seen[k] = ln
    async with conn.transaction():
        await conn.execute("SELECT pg_advisory_xact_lock(hashtextextended($1, 0))", LOCK)
        rows = await conn.fetch(
            """
            SELECT p.source_provider, p.source_price, p.target_provider, p.target_price
            FROM coexist.prices p
            JOIN unnest($1::text[], $2::text[], $3::text[]) AS k(sp, s, tp)
              ON (p.source_provider, p.source_price, p.target_provider) = (k.sp, k.s, k.tp)
            """,
            [k[0] for k in seen],
            [k[1] for k in seen],
            [k[2] for k in seen],
        )
        current = {(r[0], r[1], r[2]): r[3] for r in rows}
        changed = [ln for k, ln in seen.items() if current.get(k) != ln.target_price]
        if not changed:
            return ImportResult(import_id=None, lines=len(lines), linked=0, unchanged=len(lines))
        import_id = await new_import(
            conn,
            what="prices",
            origin=origin,
            source=source,
            fmt=fmt,
            actor=actor,
            lines=len(lines),
            applied=len(changed),
        )
        args = (
            [ln.source_provider for ln in changed],
            [ln.source_price for ln in changed],
            [ln.target_provider for ln in changed],
            [ln.target_price for ln in changed],
            [
                current.get((ln.source_provider, ln.source_price, ln.target_provider))
                for ln in changed
            ],
        )
        await conn.execute(
            """
            INSERT INTO coexist.price_events (source_provider, source_price, target_provider,
                target_price, previous_price, import_id)
            SELECT sp, s, tp, t, prev, $6
            FROM unnest($1::text[], $2::text[], $3::text[], $4::text[], $5::text[]) AS u(sp, s, tp, t, prev)
            """,
            *args,
            import_id,
        )
        await conn.execute(
            """
            INSERT INTO coexist.prices (source_provider, source_price, target_provider, target_price, import_id)
            SELECT sp, s, tp, t, $5
            FROM unnest($1::text[], $2::text[], $3::text[], $4::text[]) AS u(sp, s, tp, t)
            ON CONFLICT (source_provider, source_price, target_provider) DO UPDATE
                SET target_price = EXCLUDED.target_price, import_id = EXCLUDED.import_id,
                    updated_at = now()
            """,
            *args[:4],
            import_id,
        )
    return ImportResult(
        import_id=import_id,
        lines=len(lines),
        linked=len(changed),
        unchanged=len(lines) - len(changed),
    )


async def load_prices(conn: Conn) -> list[tuple[str, str, str, str]]:
    rows = await conn.fetch(
        "SELECT source_provider, source_price, target_provider, target_price FROM coexist.prices"
    )
    return [(r[0], r[1], r[2], r[3]) for r in rows]
