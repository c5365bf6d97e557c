"""Coexistence benchmark: verifying a cohort of linked pairs, streamed, in bounded memory.

A fresh database gets ``--accounts`` billing accounts written straight into the state and link
tables with COPY (no webhooks: this measures verification, not ingest): for each account a
Chargebee customer and subscription, the Stripe customer and subscription they became, a
customer link and a subscription link, all in one cohort, and a price map of ``--prices``
entries. A few pairs are wrong on purpose (``--mismatch-every``: a price, a quantity, a period
end, a missing Stripe subscription, in turn) so that the results path (COPY of non-matching
results) is part of the measure. Then :func:`processors.coexist.verify.run_verification` runs
twice in this process, exactly as ``ledgerhook migration report`` does: the first run, and a
second one that also diffs with the first. Timed: each run's wall clock. Memory: this process's
RSS sampled after every page of the first run (flat when pairs are streamed, not loaded).
"""

from __future__ import annotations

import argparse
import asyncio
import os
import sys
import time
from typing import Any

import asyncpg
import msgspec

from bench import common
from bench.common import log

DAY = 86_400
CUT = 1_800_000_000 - 1_800_000_000 % DAY


def _rows(accounts: int, prices: int, mismatch_every: int) -> dict[str, list[tuple[Any, ...]]]:
    from processors.model import Customer, Subscription, SubscriptionItem

    enc = msgspec.json.Encoder()
    out: dict[str, list[tuple[Any, ...]]] = {
        "customers": [],
        "subscriptions": [],
        "links": [],
        "linked_objects": [],
    }
    now = time.time()
    for i in range(accounts):
        k = i % prices
        cb_c, cb_s, st_c, st_s = f"cb{i}", f"cbs{i}", f"cus_{i}", f"sub_{i}"
        wrong = (i % mismatch_every == mismatch_every - 1) and mismatch_every > 0
        kind = (i // mismatch_every) % 4 if wrong else -1
        amount = 1_000 + 100 * k
        src = Subscription(
            customer_id=cb_c,
            status="active",
            currency="EUR",
            items=(SubscriptionItem(price_id=f"plan-{k}", unit_amount=amount, quantity=1 + i % 3),),
            current_period_start=CUT - 30 * DAY,
            current_period_end=CUT - 1,
            mrr=amount * (1 + i % 3),
        )
        tgt = Subscription(
            customer_id=st_c,
            status="trialing",
            currency="EUR",
            items=(
                SubscriptionItem(
                    price_id=f"price_{k if kind != 0 else k + 1}",
                    unit_amount=amount,
                    quantity=(1 + i % 3) + (1 if kind == 1 else 0),
                ),
            ),
            current_period_start=CUT - 9 * DAY,
            current_period_end=CUT + (5 * DAY if kind == 2 else 0),
            trial_end=CUT,
            mrr=0,
        )
        for provider, account, cid, sid, sub in (
            ("chargebee", "acme", cb_c, cb_s, src),
            ("stripe", "acct_1", st_c, st_s, tgt),
        ):
            c = Customer(email=f"{cid}@example.com", currency="EUR")
            out["customers"].append(
                (
                    provider,
                    account,
                    cid,
                    None,
                    None,
                    "EUR",
                    f"{cid}@example.com",
                    None,
                    enc.encode(c).decode(),
                    "0000000000000001",
                    False,
                    i + 1,
                )
            )
            if kind == 3 and provider == "stripe":
                continue  # the Stripe subscription never arrived
            out["subscriptions"].append(
                (
                    provider,
                    account,
                    sid,
                    sub.status,
                    cid,
                    "EUR",
                    sub.mrr,
                    sub.current_period_start,
                    sub.current_period_end,
                    sub.trial_end,
                    False,
                    enc.encode(sub).decode(),
                    "0000000000000001",
                    False,
                    i + 1,
                )
            )
        ba = f"ba_{i}"
        for kind_, s_id, t_id in (("customer", cb_c, st_c), ("subscription", cb_s, st_s)):
            link_id = len(out["links"]) + 1
            out["links"].append(
                (
                    link_id,
                    kind_,
                    ba,
                    "bench",
                    "chargebee",
                    "acme",
                    s_id,
                    "stripe",
                    "acct_1",
                    t_id,
                    "import",
                    "bench",
                )
            )
            out["linked_objects"].append((kind_, "chargebee", "acme", s_id, link_id, "source"))
            out["linked_objects"].append((kind_, "stripe", "acct_1", t_id, link_id, "target"))
    log(f"built {len(out['links'])} links in {time.time() - now:.1f}s")
    return out


_COLUMNS = {
    "customers": (
        "provider",
        "account",
        "id",
        "status",
        "customer_id",
        "currency",
        "email",
        "name",
        "data",
        "version",
        "deleted",
        "last_delivery_id",
    ),
    "subscriptions": (
        "provider",
        "account",
        "id",
        "status",
        "customer_id",
        "currency",
        "mrr",
        "current_period_start",
        "current_period_end",
        "trial_end",
        "cancel_at_period_end",
        "data",
        "version",
        "deleted",
        "last_delivery_id",
    ),
    "links": (
        "id",
        "kind",
        "billing_account",
        "cohort",
        "source_provider",
        "source_account",
        "source_id",
        "target_provider",
        "target_account",
        "target_id",
        "origin",
        "actor",
    ),
    "linked_objects": ("kind", "provider", "account", "id", "link_id", "side"),
}


async def prefill(url: str, accounts: int, prices: int, mismatch_every: int) -> int:
    rows = _rows(accounts, prices, mismatch_every)
    conn = await asyncpg.connect(url)
    try:
        started = time.monotonic()
        for table in ("customers", "subscriptions"):
            await conn.copy_records_to_table(
                table, schema_name="processors", records=rows[table], columns=_COLUMNS[table]
            )
        await conn.execute("ALTER TABLE coexist.links ALTER COLUMN id SET GENERATED BY DEFAULT")
        for table in ("links", "linked_objects"):
            await conn.copy_records_to_table(
                table, schema_name="coexist", records=rows[table], columns=_COLUMNS[table]
            )
        await conn.execute("ALTER TABLE coexist.links ALTER COLUMN id SET GENERATED ALWAYS")
        imp = await conn.fetchval(
            "INSERT INTO coexist.imports (what, origin, source, format, actor, lines, applied) "
            "VALUES ('prices', 'cli', 'bench', 'csv', 'bench', $1, $1) RETURNING id",
            prices,
        )
        await conn.executemany(
            "INSERT INTO coexist.prices (source_provider, source_price, target_provider, target_price, import_id) "
            "VALUES ('chargebee', $1, 'stripe', $2, $3)",
            [(f"plan-{k}", f"price_{k}", imp) for k in range(prices)],
        )
        # The cohort's cut-over is planned for CUT (a week after the runs' "now"): the Stripe
        # subscriptions wait for it in a trial, as a migration tool would set them up.
        await conn.execute(
            "INSERT INTO coexist.authority_events (cohort, action, effective_at, actor, origin) "
            "VALUES ('bench', 'plan', to_timestamp($1), 'bench', 'cli')",
            CUT,
        )
        await conn.execute("ANALYZE")
        log(f"prefilled in {time.monotonic() - started:.1f}s")
        return len(rows["links"])
    finally:
        await conn.close()


async def verify(url: str, links: int, page_size: int) -> dict[str, Any]:
    from ledgerhook.db import connect
    from ledgerhook.settings import Secret
    from processors.coexist.verify import run_verification

    conn = await connect(Secret(url))
    samples: list[int] = []
    done = [0]

    def progress(n: int) -> None:
        done[0] += n
        samples.append(common.rss_kib(os.getpid()))

    try:
        out: dict[str, Any] = {}
        for label in ("first", "second"):
            samples.clear()
            done[0] = 0
            started = time.monotonic()
            report = await run_verification(
                conn,
                "bench",
                now=CUT - 7 * DAY,
                actor="bench",
                page_size=page_size,
                progress=progress,
            )
            seconds = time.monotonic() - started
            s = report.summary
            out[label] = {
                "seconds": round(seconds, 2),
                "pairs": s.pairs,
                "pairs_per_s": round(s.pairs / seconds) if seconds else None,
                "matched": s.matched,
                "explained": s.explained,
                "mismatched": s.mismatched,
                "changes": msgspec.to_builtins(report.changes) if label == "second" else None,
                "rss_kib": {
                    "first_page": samples[0] if samples else None,
                    "middle": samples[len(samples) // 2] if samples else None,
                    "last_page": samples[-1] if samples else None,
                    "max": max(samples) if samples else None,
                },
            }
            log(f"{label} run: {s.pairs} pairs in {seconds:.1f}s ({s.mismatched} mismatched)")
        assert out["first"]["pairs"] == links
        return out
    finally:
        await conn.close()


def run(args: argparse.Namespace) -> dict[str, Any]:
    rid = common.run_id()
    started_machine = common.machine()
    pg = asyncio.run(common.pg_settings())
    with common.database(f"lhbench_{rid}_coexist", keep=args.keep_db) as url:
        links = asyncio.run(prefill(url, args.accounts, args.prices, args.mismatch_every))
        runs = asyncio.run(verify(url, links, args.page_size))
    first = runs["first"]
    rss = first["rss_kib"]
    growth = (rss["last_page"] or 0) - (rss["first_page"] or 0)
    return {
        "benchmark": "coexist",
        "accounts": args.accounts,
        "linked_pairs": links,
        "subscription_pairs": args.accounts,
        "page_size": args.page_size,
        "runs": runs,
        "rss_growth_kib": growth,
        "target_seconds": args.target,
        "pass": first["seconds"] < args.target and runs["second"]["seconds"] < args.target,
        "machine": started_machine,
        "postgres": pg,
    }


def parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="python -m bench.coexist", description=__doc__.split("\n")[0])
    p.add_argument(
        "--accounts",
        type=int,
        default=100_000,
        help="billing accounts: one subscription pair and one customer pair each",
    )
    p.add_argument("--prices", type=int, default=10, help="price map entries")
    p.add_argument("--mismatch-every", type=int, default=50, help="every Nth account is wrong")
    p.add_argument("--page-size", type=int, default=2_000, help="pairs read per page")
    p.add_argument("--target", type=float, default=60.0, help="seconds a run must stay under")
    p.add_argument("--keep-db", action="store_true")
    p.add_argument("--name", default="coexist")
    return p


def main() -> None:
    args = parser().parse_args()
    result = run(args)
    path = common.write_result(args.name, result)
    first, second = result["runs"]["first"], result["runs"]["second"]
    print(
        f"coexist: {result['linked_pairs']} linked pairs ({result['subscription_pairs']} subscription "
        f"pairs) verified in {first['seconds']} s ({first['pairs_per_s']}/s), again with the diff "
        f"in {second['seconds']} s; RSS {first['rss_kib']['first_page']} -> "
        f"{first['rss_kib']['last_page']} KiB over the run (+{result['rss_growth_kib']} KiB); "
        f"target < {result['target_seconds']:.0f} s: {'PASS' if result['pass'] else 'FAIL'}"
    )
    print(f"results: {path}")
    sys.exit(0)


if __name__ == "__main__":
    main()
