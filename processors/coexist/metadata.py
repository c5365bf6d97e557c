"""Links from metadata: a target object the migration tagged (``metadata.<key>`` naming the
source object) is linked to it, by the coexistence sweep or ``ledgerhook migration
link-metadata``. What cannot be linked stays unlinked and is reported (and alerted on as an
orphan). Functions take a connection.
"""

from __future__ import annotations

import msgspec

from audit.dbtypes import Conn
from ledgerhook.settings import CoexistSettings, Settings
from processors.coexist.imports import valid_name
from processors.coexist.links import LOCK, default_accounts, settle_and_insert
from processors.coexist.model import LinkKind, LinkLine, Ref

__all__ = ["MetadataResult", "link_from_metadata", "tagged_unlinked"]


class MetadataResult(msgspec.Struct, frozen=True, kw_only=True):
    linked: int
    # Objects tagged by the migration that could not be linked, and why.
    skipped: list[str] = []


_TAGGED = {
    "customer": """
        SELECT c.account, c.id, c.data->'metadata'->>$2 AS source_id,
               c.data->'metadata'->>$3 AS cohort, c.last_delivery_id
        FROM {schema}.customers c
        WHERE c.provider = $1 AND NOT c.deleted AND c.data->'metadata' ? $2
          AND NOT EXISTS (SELECT 1 FROM coexist.linked_objects o WHERE o.kind = 'customer'
                          AND (o.provider, o.account, o.id) = (c.provider, c.account, c.id))
        ORDER BY c.account, c.id
    """,
    "subscription": """
        SELECT s.account, s.id, s.data->'metadata'->>$2 AS source_id,
               s.data->'metadata'->>$3 AS cohort, s.last_delivery_id
        FROM {schema}.subscriptions s
        WHERE s.provider = $1 AND NOT s.deleted AND s.data->'metadata' ? $2
          AND NOT EXISTS (SELECT 1 FROM coexist.linked_objects o WHERE o.kind = 'subscription'
                          AND (o.provider, o.account, o.id) = (s.provider, s.account, s.id))
        ORDER BY s.account, s.id
    """,
}


async def tagged_unlinked(
    conn: Conn, cfg: CoexistSettings, kind: LinkKind, *, schema: str = "processors"
) -> list[tuple[Ref, str, str | None, int]]:
    """Target objects the migration tagged (metadata key present) that have no link:
    (object, source id named, cohort named, the delivery that last changed it)."""
    assert schema in ("processors", "processors_replay")
    key = cfg.customer_metadata_key if kind == "customer" else cfg.subscription_metadata_key
    if not key:
        return []
    rows = await conn.fetch(
        _TAGGED[kind].format(schema=schema),
        cfg.metadata_target,
        key,
        cfg.cohort_metadata_key or "",
    )
    return [
        (
            Ref(provider=cfg.metadata_target, account=r["account"], id=r["id"]),
            r["source_id"],
            r["cohort"],
            r["last_delivery_id"],
        )
        for r in rows
    ]


async def link_from_metadata(conn: Conn, settings: Settings) -> MetadataResult:
    """Link every tagged, unlinked target object to the source object its metadata names.

    Customers first, so that their subscriptions find a billing account in the same call. What
    cannot be linked (a conflict, an unknown billing account, a bad cohort name) is skipped
    and reported; it stays an orphan until fixed.
    """
    cfg = settings.coexist
    source_account = cfg.metadata_source_account or default_accounts(settings).get(
        cfg.metadata_source, ""
    )
    linked = 0
    skipped: list[str] = []
    if not source_account:
        return MetadataResult(
            linked=0, skipped=["no source account: set COEXIST__METADATA_SOURCE_ACCOUNT"]
        )
    kinds: tuple[LinkKind, ...] = ("customer", "subscription")
    for kind in kinds:
        async with conn.transaction():
            await conn.execute("SELECT pg_advisory_xact_lock(hashtextextended($1, 0))", LOCK)
            tagged = await tagged_unlinked(conn, cfg, kind)
            lines: list[LinkLine] = []
            evidence: dict[int, str] = {}
            key = cfg.customer_metadata_key if kind == "customer" else cfg.subscription_metadata_key
            for n, (target, source_id, cohort, delivery) in enumerate(tagged, start=1):
                if not source_id or (cohort is not None and not valid_name(cohort)):
                    skipped.append(f"{target}: metadata names no usable source id or cohort")
                    continue
                lines.append(
                    LinkLine(
                        line=n,
                        kind=kind,
                        cohort=(cohort or cfg.default_cohort) if kind == "customer" else cohort,
                        source=Ref(
                            provider=cfg.metadata_source, account=source_account, id=source_id
                        ),
                        target=target,
                    )
                )
                evidence[n] = f"{target} metadata.{key} (delivery {delivery})"
            if not lines:
                continue
            made, more = await settle_and_insert(conn, lines, evidence=evidence)
            skipped += more
            linked += made
    return MetadataResult(linked=linked, skipped=skipped)
