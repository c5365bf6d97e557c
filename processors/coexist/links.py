"""Links I/O: imports, links from metadata, unlinking. Every function takes a connection.

An import is all or nothing: it runs in one transaction under one advisory lock (link writers
take turns, so the checks below see every committed link), checks every line against the links
that exist and against the other lines, and writes nothing unless all pass. A line identical to
an existing link is *unchanged* (re-importing a file is harmless); a line that contradicts one
(the object already linked to another, in another cohort, a billing account taken) is a
:class:`LinkConflict` naming the line. ``coexist.linked_objects``' primary key backs the checks.

Links from metadata (:mod:`processors.coexist.metadata`) use the same path but skip what
conflicts: those objects stay unlinked, and the ``coexist_orphan`` alert names them.
"""

from __future__ import annotations

import hashlib
from collections.abc import Iterable, Mapping, Sequence
from typing import Literal

import asyncpg
import msgspec

from audit.dbtypes import Conn
from ledgerhook.settings import Settings
from processors.coexist.errors import InvalidImport, LinkConflict, MigrationNotFound
from processors.coexist.imports import Format
from processors.coexist.model import PROVIDERS, LinkKind, LinkLine, Ref

__all__ = [
    "LOCK",
    "ImportResult",
    "default_accounts",
    "derived_billing_account",
    "import_links",
    "new_import",
    "settle_and_insert",
    "unlink",
]

# Link and price writers take turns under this advisory lock.
LOCK = "coexist\x1flinks"
ObjectKey = tuple[str, str, str, str]  # kind, provider, account, id


class ImportResult(msgspec.Struct, frozen=True, kw_only=True):
    import_id: int | None
    lines: int
    linked: int
    unchanged: int


class _Existing(msgspec.Struct, frozen=True, kw_only=True):
    link_id: int
    kind: str
    billing_account: str
    cohort: str
    source: Ref
    target: Ref


def default_accounts(settings: Settings) -> dict[str, str]:
    """Each provider's default endpoint account: what an import line without one means."""
    out = {}
    for provider in PROVIDERS:
        e = settings.endpoint(provider, "default")
        if e is not None:
            out[provider] = e.account_id
    return out


def _key(kind: str, ref: Ref) -> ObjectKey:
    return kind, ref.provider, ref.account, ref.id


def derived_billing_account(source: Ref) -> str:
    """A stable id for the account a customer link makes when the import names none."""
    digest = hashlib.sha256(f"{source.provider}\x1f{source.account}\x1f{source.id}".encode())
    return "ba_" + digest.hexdigest()[:16]


async def _existing(conn: Conn, keys: Iterable[ObjectKey]) -> dict[ObjectKey, _Existing]:
    keys = list(keys)
    rows = await conn.fetch(
        """
        SELECT o.kind, o.provider, o.account, o.id AS object_id, l.id, l.billing_account, l.cohort,
               l.source_provider, l.source_account, l.source_id,
               l.target_provider, l.target_account, l.target_id
        FROM unnest($1::text[], $2::text[], $3::text[], $4::text[]) AS k(kind, provider, account, id)
        JOIN coexist.linked_objects o
          ON (o.kind, o.provider, o.account, o.id) = (k.kind, k.provider, k.account, k.id)
        JOIN coexist.links l ON l.id = o.link_id
        """,
        [k[0] for k in keys],
        [k[1] for k in keys],
        [k[2] for k in keys],
        [k[3] for k in keys],
    )
    return {
        (r["kind"], r["provider"], r["account"], r["object_id"]): _Existing(
            link_id=r["id"],
            kind=r["kind"],
            billing_account=r["billing_account"],
            cohort=r["cohort"],
            source=Ref(
                provider=r["source_provider"], account=r["source_account"], id=r["source_id"]
            ),
            target=Ref(
                provider=r["target_provider"], account=r["target_account"], id=r["target_id"]
            ),
        )
        for r in rows
    }


async def _customer_accounts(conn: Conn, names: Sequence[str]) -> dict[str, str]:
    """billing account -> cohort, for the named accounts that exist."""
    rows = await conn.fetch(
        "SELECT billing_account, cohort FROM coexist.links "
        "WHERE kind = 'customer' AND billing_account = ANY($1::text[])",
        list(names),
    )
    return {r["billing_account"]: r["cohort"] for r in rows}


async def _subscription_customers(conn: Conn, refs: Sequence[Ref], schema: str) -> dict[Ref, str]:
    """The customer id the state gives each subscription (those in the state)."""
    assert schema in ("processors", "processors_replay")
    rows = await conn.fetch(
        f"""
        SELECT s.provider, s.account, s.id, s.customer_id
        FROM unnest($1::text[], $2::text[], $3::text[]) AS k(provider, account, id)
        JOIN {schema}.subscriptions s ON (s.provider, s.account, s.id) = (k.provider, k.account, k.id)
        WHERE s.customer_id IS NOT NULL
        """,
        [r.provider for r in refs],
        [r.account for r in refs],
        [r.id for r in refs],
    )
    return {
        Ref(provider=r["provider"], account=r["account"], id=r["id"]): r["customer_id"]
        for r in rows
    }


class _Plan(msgspec.Struct, frozen=True, kw_only=True):
    """A line that will become a link, with its billing account and cohort settled."""

    line: LinkLine
    billing_account: str
    cohort: str


class _Conflict(Exception):
    def __init__(self, line: LinkLine, message: str) -> None:
        self.link_line = line
        super().__init__(message)


def _unit(fmt: Format | None) -> str:
    return "item" if fmt == "json" else "line"


async def _settle(
    conn: Conn,
    lines: Sequence[LinkLine],
    *,
    on_conflict: Literal["raise", "skip"],
    fmt: Format | None,
) -> tuple[list[_Plan], int, list[str]]:
    """(links to make, lines unchanged, lines skipped with the reason). Raises unless ``skip``."""
    existing = await _existing(
        conn, [k for ln in lines for k in (_key(ln.kind, ln.source), _key(ln.kind, ln.target))]
    )
    skipped: list[str] = []
    unchanged = 0
    claimed: dict[ObjectKey, LinkLine] = {}
    firsts: list[LinkLine] = []

    def refuse(line: LinkLine, message: str) -> None:
        if on_conflict == "raise":
            raise LinkConflict(f"{_unit(fmt)} {line.line}: {message}")
        skipped.append(f"{line.target}: {message}")

    for ln in lines:
        sk, tk = _key(ln.kind, ln.source), _key(ln.kind, ln.target)
        prior = existing.get(sk) or existing.get(tk)
        if prior is not None:
            if prior.source == ln.source and prior.target == ln.target:
                if ln.cohort is not None and ln.cohort != prior.cohort:
                    refuse(
                        ln,
                        f"{ln.source} and {ln.target} are already linked in cohort {prior.cohort!r}",
                    )
                else:
                    unchanged += 1
                continue
            refuse(
                ln,
                f"{ln.kind} {ln.source if sk in existing else ln.target} is already linked "
                f"({prior.source} -> {prior.target}, link {prior.link_id}, cohort {prior.cohort!r})",
            )
            continue
        twin = claimed.get(sk) or claimed.get(tk)
        if twin is not None:
            if twin.source == ln.source and twin.target == ln.target and twin.cohort == ln.cohort:
                unchanged += 1
            else:
                refuse(ln, f"contradicts {_unit(fmt)} {twin.line} ({twin.source} -> {twin.target})")
            continue
        claimed[sk] = claimed[tk] = ln
        firsts.append(ln)

    customers = [ln for ln in firsts if ln.kind == "customer"]
    named = sorted({ln.billing_account for ln in firsts if ln.billing_account})
    taken = await _customer_accounts(conn, named)
    # Accounts this import creates, and which customer (either side) each one is.
    new_accounts: dict[str, str] = {}
    by_customer: dict[Ref, str] = {}
    plans: list[_Plan] = []
    for ln in customers:
        account = ln.billing_account or derived_billing_account(ln.source)
        assert ln.cohort is not None  # parse_links requires it for customers
        if account in taken or account in new_accounts:
            refuse(ln, f"billing account {account!r} already has a customer link")
            continue
        new_accounts[account] = ln.cohort
        by_customer[ln.source] = by_customer[ln.target] = account
        plans.append(_Plan(line=ln, billing_account=account, cohort=ln.cohort))

    subs = [ln for ln in firsts if ln.kind == "subscription"]
    unnamed = [ln for ln in subs if not ln.billing_account]
    state = await _subscription_customers(
        conn, [r for ln in unnamed for r in (ln.source, ln.target)], "processors"
    )
    customer_refs = [
        Ref(provider=r.provider, account=r.account, id=cid) for r, cid in state.items()
    ]
    linked_customers = await _existing(conn, [_key("customer", r) for r in customer_refs])
    for ln in subs:
        ba: str | None = ln.billing_account
        if ba is None:
            for side in (ln.source, ln.target):
                cid = state.get(side)
                if cid is None:
                    continue
                cref = Ref(provider=side.provider, account=side.account, id=cid)
                found = by_customer.get(cref) or (
                    linked_customers[_key("customer", cref)].billing_account
                    if _key("customer", cref) in linked_customers
                    else None
                )
                if found is not None:
                    ba = found
                    break
        if ba is None:
            message = (
                f"cannot tell the billing account of subscription {ln.source}: its customer is "
                "not linked, or it is not in the state yet; give a billing_account column"
            )
            if on_conflict == "raise":
                raise InvalidImport(message, line=ln.line, unit=_unit(fmt))
            skipped.append(f"{ln.target}: {message}")
            continue
        cohort: str | None = new_accounts.get(ba) or taken.get(ba)
        if cohort is None:
            cohort = (await _customer_accounts(conn, [ba])).get(ba)
        if cohort is None:
            message = f"billing account {ba!r} does not exist (link its customer first)"
            if on_conflict == "raise":
                raise InvalidImport(message, line=ln.line, unit=_unit(fmt))
            skipped.append(f"{ln.target}: {message}")
            continue
        if ln.cohort is not None and ln.cohort != cohort:
            refuse(ln, f"cohort {ln.cohort!r} differs from its billing account's cohort {cohort!r}")
            continue
        plans.append(_Plan(line=ln, billing_account=ba, cohort=cohort))
    return plans, unchanged, skipped


async def _insert(
    conn: Conn,
    plans: Sequence[_Plan],
    *,
    origin: Literal["import", "metadata"],
    actor: str,
    import_id: int | None,
    evidence: Mapping[int, str] | None = None,
) -> None:
    if not plans:
        return
    cols = (
        [p.line.kind for p in plans],
        [p.billing_account for p in plans],
        [p.cohort for p in plans],
        [p.line.source.provider for p in plans],
        [p.line.source.account for p in plans],
        [p.line.source.id for p in plans],
        [p.line.target.provider for p in plans],
        [p.line.target.account for p in plans],
        [p.line.target.id for p in plans],
        [(evidence or {}).get(p.line.line) for p in plans],
    )
    # WITH ORDINALITY keeps the input order, so RETURNING ids line up with ``plans``.
    ids = await conn.fetch(
        """
        INSERT INTO coexist.links (kind, billing_account, cohort, source_provider, source_account,
            source_id, target_provider, target_account, target_id, origin, import_id, evidence, actor)
        SELECT kind, ba, cohort, sp, sa, si, tp, ta, ti, $11, $12, ev, $13
        FROM unnest($1::text[], $2::text[], $3::text[], $4::text[], $5::text[], $6::text[],
                    $7::text[], $8::text[], $9::text[], $10::text[]) WITH ORDINALITY
             AS u(kind, ba, cohort, sp, sa, si, tp, ta, ti, ev, n)
        ORDER BY n
        RETURNING id
        """,
        *cols,
        origin,
        import_id,
        actor,
    )
    link_ids = [r["id"] for r in ids]
    await conn.execute(
        """
        INSERT INTO coexist.linked_objects (kind, provider, account, id, link_id, side)
        SELECT kind, sp, sa, si, lid, 'source' FROM unnest($1::text[], $2::text[], $3::text[], $4::text[], $8::bigint[])
            AS u(kind, sp, sa, si, lid)
        UNION ALL
        SELECT kind, tp, ta, ti, lid, 'target' FROM unnest($1::text[], $5::text[], $6::text[], $7::text[], $8::bigint[])
            AS u(kind, tp, ta, ti, lid)
        """,
        cols[0],
        cols[3],
        cols[4],
        cols[5],
        cols[6],
        cols[7],
        cols[8],
        link_ids,
    )
    await conn.execute(
        """
        INSERT INTO coexist.link_events (link_id, action, kind, billing_account, cohort,
            source_provider, source_account, source_id, target_provider, target_account, target_id,
            origin, import_id, evidence, actor)
        SELECT id, 'link', kind, billing_account, cohort, source_provider, source_account, source_id,
               target_provider, target_account, target_id, origin, import_id, evidence, actor
        FROM coexist.links WHERE id = ANY($1::bigint[])
        """,
        link_ids,
    )


async def new_import(
    conn: Conn,
    *,
    what: Literal["links", "prices"],
    origin: Literal["cli", "api"],
    source: str,
    fmt: Format,
    actor: str,
    lines: int,
    applied: int,
) -> int:
    value: int = await conn.fetchval(
        "INSERT INTO coexist.imports (what, origin, source, format, actor, lines, applied) "
        "VALUES ($1, $2, $3, $4, $5, $6, $7) RETURNING id",
        what,
        origin,
        source[:500],
        fmt,
        actor,
        lines,
        applied,
    )
    return value


async def settle_and_insert(
    conn: Conn, lines: Sequence[LinkLine], *, evidence: Mapping[int, str]
) -> tuple[int, list[str]]:
    """Metadata links: make what fits, skip what conflicts; (links made, skipped with why).
    The caller holds :data:`LOCK` in its transaction."""
    plans, _, skipped = await _settle(conn, lines, on_conflict="skip", fmt=None)
    await _insert(conn, plans, origin="metadata", actor="system", import_id=None, evidence=evidence)
    return len(plans), skipped


async def import_links(
    conn: Conn,
    lines: Sequence[LinkLine],
    *,
    actor: str,
    origin: Literal["cli", "api"],
    source: str,
    fmt: Format,
) -> ImportResult:
    """Apply a parsed import, all or nothing (:class:`LinkConflict`, :class:`InvalidImport`)."""
    async with conn.transaction():
        await conn.execute("SELECT pg_advisory_xact_lock(hashtextextended($1, 0))", LOCK)
        plans, unchanged, _ = await _settle(conn, lines, on_conflict="raise", fmt=fmt)
        import_id = None
        if plans:
            import_id = await new_import(
                conn,
                what="links",
                origin=origin,
                source=source,
                fmt=fmt,
                actor=actor,
                lines=len(lines),
                applied=len(plans),
            )
        try:
            await _insert(conn, plans, origin="import", actor=actor, import_id=import_id)
        except asyncpg.UniqueViolationError as exc:  # a writer outside the lock: still refused
            raise LinkConflict(
                f"a link in this import conflicts with another: {exc.detail}"
            ) from None
    return ImportResult(
        import_id=import_id, lines=len(lines), linked=len(plans), unchanged=unchanged
    )


async def unlink(
    conn: Conn,
    kind: LinkKind,
    ref: Ref,
    *,
    actor: str,
    origin: Literal["cli", "api"],
    note: str | None = None,
) -> int:
    """Remove the link that holds ``ref`` (either side); its history stays. Returns the link id.

    A customer link with subscription links under its billing account is refused: unlink those
    first, so that no subscription link is left without an account.
    """
    async with conn.transaction():
        await conn.execute("SELECT pg_advisory_xact_lock(hashtextextended($1, 0))", LOCK)
        found = (await _existing(conn, [_key(kind, ref)])).get(_key(kind, ref))
        if found is None:
            raise MigrationNotFound(f"{kind} {ref} is not linked")
        if kind == "customer":
            n = await conn.fetchval(
                "SELECT count(*) FROM coexist.links WHERE kind = 'subscription' AND billing_account = $1",
                found.billing_account,
            )
            if n:
                raise LinkConflict(
                    f"billing account {found.billing_account} still has {n} subscription link(s); "
                    "unlink them first"
                )
        await conn.execute(
            """
            INSERT INTO coexist.link_events (link_id, action, kind, billing_account, cohort,
                source_provider, source_account, source_id, target_provider, target_account,
                target_id, origin, import_id, evidence, actor, note)
            SELECT id, 'unlink', kind, billing_account, cohort, source_provider, source_account,
                   source_id, target_provider, target_account, target_id, $2, NULL, NULL, $3, $4
            FROM coexist.links WHERE id = $1
            """,
            found.link_id,
            origin,
            actor,
            note,
        )
        await conn.execute("DELETE FROM coexist.links WHERE id = $1", found.link_id)
    return found.link_id
