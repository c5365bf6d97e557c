"""``replay``: re-run deliveries; rebuild billing state from the audit log and compare it with live.

Modes (exactly one): ``--delivery ID`` (repeatable) or ``--dead-letters`` re-run deliveries;
``--rebuild`` rebuilds the whole log into ``processors_replay``; ``--compare`` (alone or with
``--rebuild``) rebuilds what live had settled and compares, in one snapshot. Exit codes: 0 done /
equal, 1 a re-run still fails / live differs from the rebuild, 2 usage error, 3 the command could
not run to the end (database unreachable, connection lost): nothing was concluded.
"""

from __future__ import annotations

import argparse
import asyncio
import functools
import sys
from typing import Any

import asyncpg

from ledgerhook.cli.progress import Progress
from ledgerhook.db import connect
from ledgerhook.logs import configure_logging
from ledgerhook.settings import load_settings

EXIT_FAILED = 3


def register(sub: Any) -> None:
    p = sub.add_parser(
        "replay",
        help="re-run deliveries, or rebuild billing state from the audit log and compare",
        description="Re-run deliveries, or rebuild billing state from the audit log and "
        "compare it with live state. Exit: 0 equal/done, 1 different/still failing, 2 usage, "
        "3 could not run.",
    )
    p.add_argument(
        "--delivery",
        type=int,
        metavar="ID",
        action="append",
        help="re-run one delivery (dead-lettered or unprocessed); repeatable",
    )
    p.add_argument(
        "--dead-letters", action="store_true", help="re-run every dead-lettered delivery"
    )
    p.add_argument(
        "--rebuild",
        action="store_true",
        help="rebuild billing state from the whole audit log into the processors_replay schema",
    )
    p.add_argument(
        "--compare",
        action="store_true",
        help="rebuild what live had settled and print every difference from live state, "
        "in one snapshot (safe while workers run); exit 1 if any",
    )
    p.set_defaults(handler=functools.partial(cmd_replay, parser=p))


def _check_usage(args: argparse.Namespace, parser: argparse.ArgumentParser) -> None:
    """Exactly one mode; ``--rebuild`` and ``--compare`` together are one mode (exit 2 otherwise)."""
    modes = [
        name
        for name, on in (
            ("--delivery", bool(args.delivery)),
            ("--dead-letters", args.dead_letters),
            ("--rebuild/--compare", args.rebuild or args.compare),
        )
        if on
    ]
    if not modes:
        parser.error("one of --delivery, --dead-letters, --rebuild, --compare is required")
    if len(modes) > 1:
        parser.error(f"{' and '.join(modes)} cannot be combined")


async def _rerun(conn: Any, ids: list[int]) -> int:
    from processors.errors import DeliveryNotFound
    from processors.service import process_delivery

    code = 0
    for delivery_id in ids:
        try:
            outcome = await process_delivery(conn, delivery_id)
        except DeliveryNotFound as exc:
            print(f"delivery {delivery_id}: {exc}", file=sys.stderr)
            code = 1
            continue
        print(f"delivery {delivery_id}: {outcome}")
        if outcome == "dead_letter":
            error = await conn.fetchval(
                "SELECT error FROM processors.processed WHERE delivery_id = $1", delivery_id
            )
            print(f"  still failing: {error}")
            code = 1
    return code


async def _dead_letters(conn: Any) -> int:
    ids = [
        r["delivery_id"]
        for r in await conn.fetch(
            "SELECT delivery_id FROM processors.processed "
            "WHERE outcome = 'dead_letter' ORDER BY delivery_id"
        )
    ]
    if not ids:
        print("no dead-lettered deliveries")
        return 0
    return await _rerun(conn, ids)


async def _rebuild(conn: Any) -> int:
    from processors.replay import rebuild

    progress = Progress("replay --rebuild", unit="deliveries")
    stats = await rebuild(conn, progress)
    print(f"{stats.describe()}; into processors_replay")
    return 0


async def _compare(conn: Any) -> int:
    from processors.replay import TABLES, rebuild_and_compare

    progress = Progress("replay --compare", unit="deliveries")
    tables: list[Progress] = []

    def comparing(table: str) -> None:
        # Counted from the first table on (the fold has its own summary line).
        if not tables:
            tables.append(Progress("replay --compare", total=len(TABLES), unit="tables"))
        else:
            tables[0].advance()

    report = await rebuild_and_compare(conn, progress, comparing)
    if tables:
        tables[0].advance()
        tables[0].finish("compared")
    stats = report.stats
    print(f"{stats.describe()}; into processors_replay")
    if stats.backlog or stats.dead_letters:
        # Not a difference: the snapshot holds no effect of them, live or rebuilt.
        print(
            f"not compared: {stats.backlog} deliveries not processed yet and "
            f"{stats.dead_letters} dead-lettered at the snapshot (live has not applied them)"
        )
    for d in report.differences:
        print(d.describe())
    if not report.differences:
        print(f"live state matches the rebuild ({len(TABLES)} tables compared)")
        return 0
    print(f"{len(report.differences)} rows differ between live state and the rebuild")
    return 1


def cmd_replay(args: argparse.Namespace, parser: argparse.ArgumentParser) -> int:
    _check_usage(args, parser)
    settings = load_settings()
    configure_logging(settings)

    async def run() -> int:
        conn = await connect(settings.database_url)
        try:
            if args.delivery:
                return await _rerun(conn, args.delivery)
            if args.dead_letters:
                return await _dead_letters(conn)
            if args.compare:
                return await _compare(conn)
            return await _rebuild(conn)
        finally:
            await conn.close()

    try:
        return asyncio.run(run())
    except (OSError, asyncpg.PostgresError, asyncpg.InterfaceError) as exc:  # OSError: timeouts too
        print(f"ledgerhook replay: could not run to the end: {exc!r}", file=sys.stderr)
        return EXIT_FAILED
