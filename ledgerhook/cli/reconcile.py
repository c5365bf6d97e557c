"""``reconcile``: compare a provider's Events API with the audit log; backfill and alert on gaps."""

from __future__ import annotations

import argparse
import asyncio
import re
import sys
import time
from typing import TYPE_CHECKING, Any

from ledgerhook.db import create_pool
from ledgerhook.logs import configure_logging
from ledgerhook.settings import load_settings

if TYPE_CHECKING:  # imported when the command runs: every command imports this module
    from alerts.reconcile import ReconcileSummary

_UNITS = {"s": 1, "m": 60, "h": 3600, "d": 86400}
PROGRESS_EVERY_SECONDS = 2.0


def duration(text: str) -> int:
    """``90s``, ``15m``, ``2h``, ``7d`` (or plain seconds) → seconds."""
    match = re.fullmatch(r"\s*(\d+)\s*([smhd]?)\s*", text)
    if not match or int(match.group(1)) <= 0:
        raise argparse.ArgumentTypeError(f"{text!r}: use a positive duration like 90s, 15m, 2h, 7d")
    return int(match.group(1)) * _UNITS[match.group(2) or "s"]


def register(sub: Any) -> None:
    p = sub.add_parser(
        "reconcile",
        help="list the provider's events for a window; backfill, apply and alert on missing ones",
    )
    p.add_argument("--provider", required=True, choices=("stripe", "chargebee"))
    p.add_argument(
        "--since",
        required=True,
        type=duration,
        metavar="DURATION",
        help="window to check, e.g. 2h (Stripe lists 30 days at most)",
    )
    p.add_argument(
        "--endpoint",
        default=None,
        metavar="NAME",
        help="endpoint the events belong to (default: the provider's 'default')",
    )
    p.set_defaults(handler=cmd_reconcile)


def describe(s: ReconcileSummary) -> str:
    lines = [
        f"{s.provider}/{s.endpoint} (account {s.account}): window {s.since}..{s.until}"
        + (" (clamped to the provider's retention)" if s.clamped else ""),
        f"  listed {s.listed} events in {s.pages} pages; {s.present} already in the audit log",
        f"  missing {s.missing}; backfilled {len(s.backfilled)}; applied {s.applied}",
    ]
    if s.alerts:
        lines.append(f"  alerts: {', '.join(str(a) for a in s.alerts)}")
    return "\n".join(lines)


def cmd_reconcile(args: argparse.Namespace) -> int:
    from alerts.errors import AlertsError
    from alerts.reconcile import reconcile

    settings = load_settings()
    configure_logging(settings)
    last = [0.0]

    def progress(pages: int, listed: int, missing: int) -> None:
        now = time.monotonic()
        if now - last[0] >= PROGRESS_EVERY_SECONDS:
            last[0] = now
            print(
                f"  ... {pages} pages, {listed} events listed, {missing} missing",
                file=sys.stderr,
                flush=True,
            )

    async def run() -> ReconcileSummary:
        pool = await create_pool(settings, min_size=1, max_size=4)
        try:
            return await reconcile(
                pool, settings, args.provider, args.since, endpoint=args.endpoint, progress=progress
            )
        finally:
            await pool.close()

    try:
        summary = asyncio.run(run())
    except AlertsError as exc:
        print(f"ledgerhook reconcile: {exc}", file=sys.stderr)
        return 1
    print(describe(summary))
    return 0
