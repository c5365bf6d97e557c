"""``drift``: compare billing state with the provider's current objects; alert (and repair)."""

from __future__ import annotations

import argparse
import asyncio
import sys
import time
from typing import Any

from alerts.drift import DriftReport, run_drift
from ledgerhook.db import create_pool
from ledgerhook.logs import configure_logging
from ledgerhook.settings import load_settings
from processors.errors import SyncError
from processors.model import OBJECT_TYPES

__all__ = ["describe", "register"]

PROGRESS_EVERY_SECONDS = 2.0


def register(sub: Any) -> None:
    p = sub.add_parser(
        "drift",
        help="compare state objects with the provider's current copy; alert on (and repair) drift",
        description=(
            "Fetch each state object (one, one type, or all) from the provider's API and compare "
            "the fields the state holds. Differences are state_drift alerts; --repair appends "
            "the provider's copy as a delivery (origin sync) and applies it."
        ),
    )
    p.add_argument("--provider", required=True, choices=("stripe", "chargebee"))
    p.add_argument("--endpoint", default=None, metavar="NAME")
    p.add_argument("--type", default=None, choices=OBJECT_TYPES, dest="object_type")
    p.add_argument("--object", default=None, metavar="ID", dest="object_id")
    p.add_argument("--repair", action="store_true", help="append and apply the provider's copy")
    p.add_argument(
        "--calls-per-minute",
        type=float,
        default=None,
        metavar="N",
        help="API call budget (default: LEDGERHOOK_DRIFT__CALLS_PER_MINUTE)",
    )
    p.set_defaults(handler=cmd_drift)


def describe(r: DriftReport) -> str:
    lines = []
    for d in r.drifts:
        what = f"{d.object_type} {d.object_id}"
        if d.gone:
            lines.append(f"  {what}: not at {r.provider} any more (the state still has it)")
        else:
            for field, (state, provider) in sorted(d.fields.items()):
                lines.append(f"  {what}: {field}: state {state!r}, {r.provider} {provider!r}")
        if d.repair_delivery_id is not None:
            done = "repaired" if d.repaired else "not repaired"
            lines.append(f"  {what}: {done} by delivery {d.repair_delivery_id}")
    lines.append(
        f"{r.provider} (account {r.account}): checked {r.checked}, matching {r.matched}, "
        f"drifted {r.drifted} ({r.gone} gone), repaired {r.repaired}, skipped {r.skipped} "
        f"(newer state or unprocessed deliveries), failed {r.failed}"
    )
    if r.opened or r.resolved:
        lines.append(f"  alerts opened {r.opened or '-'}, resolved {r.resolved or '-'}")
    if r.error:
        lines.append(f"  stopped: {r.error}")
    return "\n".join(lines)


def cmd_drift(args: argparse.Namespace) -> int:
    settings = load_settings()
    configure_logging(settings)
    last = [0.0]

    def progress(r: DriftReport) -> None:
        now = time.monotonic()
        if now - last[0] >= PROGRESS_EVERY_SECONDS:
            last[0] = now
            print(f"  ... checked {r.checked}, drifted {r.drifted}", file=sys.stderr, flush=True)

    async def run() -> DriftReport:
        pool = await create_pool(settings, min_size=1, max_size=4)
        try:
            return await run_drift(
                pool,
                settings,
                args.provider,
                endpoint=args.endpoint,
                object_type=args.object_type,
                object_id=args.object_id,
                repair=args.repair,
                calls_per_minute=args.calls_per_minute,
                progress=progress,
            )
        finally:
            await pool.close()

    try:
        report = asyncio.run(run())
    except SyncError as exc:
        print(f"ledgerhook drift: {exc}", file=sys.stderr)
        return 1
    print(describe(report))
    return 0 if report.error is None and report.drifted == report.repaired else 1
