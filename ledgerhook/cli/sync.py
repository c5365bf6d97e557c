"""``sync``: list a provider's objects and store each as a delivery (origin sync), resumably."""

from __future__ import annotations

import argparse
import asyncio
import sys
import time
from collections.abc import Callable
from datetime import UTC, date, datetime
from typing import Any

from ledgerhook.cli.reconcile import duration
from ledgerhook.db import create_pool
from ledgerhook.logs import configure_logging
from ledgerhook.settings import load_settings
from processors.errors import SyncError
from processors.sync import ListProgress, SyncSummary, run_sync

__all__ = ["ListPrinter", "describe", "parse_since", "register"]

PROGRESS_EVERY_SECONDS = 2.0


def parse_since(text: str, now: datetime) -> int:
    """``30d``/``12h`` (back from now) or an ISO date/time (UTC unless it says) → unix seconds."""
    try:
        return int(now.timestamp()) - duration(text)
    except argparse.ArgumentTypeError:
        pass
    try:
        moment = datetime.fromisoformat(text.strip())
    except ValueError:
        try:
            day = date.fromisoformat(text.strip())
        except ValueError:
            raise argparse.ArgumentTypeError(
                f"{text!r}: use a duration back from now (30d, 12h) or a date (2024-01-31)"
            ) from None
        moment = datetime(day.year, day.month, day.day, tzinfo=UTC)
    if moment.tzinfo is None:
        moment = moment.replace(tzinfo=UTC)
    return int(moment.timestamp())


def register(sub: Any) -> None:
    p = sub.add_parser(
        "sync",
        help="list the provider's existing objects and store each as a delivery (resumable)",
        description=(
            "List customers, subscriptions, invoices, ... through the provider's API and store "
            "each object as a delivery (origin sync), applied like a webhook. A killed sync "
            "resumes where it stopped when run again; an unchanged object is a recorded duplicate."
        ),
    )
    p.add_argument("--provider", required=True, choices=("stripe", "chargebee"))
    p.add_argument(
        "--endpoint",
        default=None,
        metavar="NAME",
        help="endpoint (account) the objects belong to (default: the provider's 'default')",
    )
    p.add_argument(
        "--since",
        default=None,
        metavar="WHEN",
        help="only objects created since: a duration back from now (90d) or a date (2024-01-31)",
    )
    p.add_argument(
        "--types",
        default=None,
        metavar="LISTS",
        help="comma-separated lists (stripe: customers,subscriptions,invoices,charges,"
        "payment_intents,refunds,credit_notes; chargebee: customers,subscriptions,invoices,"
        "transactions,credit_notes); default: all",
    )
    p.add_argument(
        "--restart",
        action="store_true",
        help="start unfinished lists over instead of resuming them",
    )
    p.set_defaults(handler=cmd_sync)


def _count(n: int) -> str:
    return f"{n:,}".replace(",", " ")


class ListPrinter:
    """One line per list at most every ``interval`` seconds: counts, rate and, when the provider
    said how many there are, an ETA."""

    def __init__(
        self,
        *,
        interval: float = PROGRESS_EVERY_SECONDS,
        clock: Callable[[], float] = time.monotonic,
        out: Callable[[str], None] | None = None,
    ) -> None:
        self.interval = interval
        self.clock = clock
        self.out = out or (lambda line: print(line, file=sys.stderr, flush=True))
        self._last: dict[str, float] = {}

    @staticmethod
    def line(p: ListProgress) -> str:
        rate = p.listed / p.seconds if p.seconds > 0 else 0.0
        done = p.resumed_at + p.listed
        text = f"{p.provider} {p.object_type}: {_count(done)}"
        if p.total:
            text += f"/{_count(p.total)} ({min(100, 100 * done // p.total)}%)"
        text += f" objects, {rate:.0f}/s"
        if p.total and rate > 0:
            text += f", ETA {max(0, p.total - done) / rate:.0f}s"
        text += f" (new {_count(p.stored)}, unchanged {_count(p.duplicates)}"
        if p.resumed_at:
            text += f", resumed after {_count(p.resumed_at)}"
        return text + ")"

    def __call__(self, p: ListProgress) -> None:
        now = self.clock()
        if now - self._last.get(p.object_type, float("-inf")) >= self.interval:
            self._last[p.object_type] = now
            self.out(self.line(p))


def describe(s: SyncSummary) -> str:
    lines = [f"{s.provider}/{s.endpoint} (account {s.account}):"]
    for x in s.lists:
        rate = x.listed / x.seconds if x.seconds > 0 else 0.0
        lines.append(
            f"  {x.object_type}: {x.status}{' (resumed)' if x.resumed else ''}; listed "
            f"{_count(x.listed)} in {x.pages} pages ({rate:.0f}/s); new {_count(x.stored)}, "
            f"unchanged {_count(x.duplicates)}; applied {_count(x.applied)}"
            + (f", {x.not_applied} left to the worker" if x.not_applied else "")
        )
        if x.error:
            lines.append(f"    {x.error}; run the same command again to resume")
    return "\n".join(lines)


def cmd_sync(args: argparse.Namespace) -> int:
    settings = load_settings()
    configure_logging(settings)
    try:
        since = None if args.since is None else parse_since(args.since, datetime.now(UTC))
    except argparse.ArgumentTypeError as exc:
        print(f"ledgerhook sync: --since {exc}", file=sys.stderr)
        return 2

    async def run() -> SyncSummary:
        pool = await create_pool(settings, min_size=1, max_size=4)
        try:
            return await run_sync(
                pool,
                settings,
                args.provider,
                endpoint=args.endpoint,
                types=args.types,
                since=since,
                restart=args.restart,
                progress=ListPrinter(),
            )
        finally:
            await pool.close()

    try:
        summary = asyncio.run(run())
    except SyncError as exc:
        print(f"ledgerhook sync: {exc}", file=sys.stderr)
        return 1
    print(describe(summary))
    return 0 if summary.ok else 1
