"""``worker`` and ``replay``: run the arq worker; re-run, rebuild and compare billing state."""

from __future__ import annotations

import argparse
import asyncio
import sys
from collections.abc import Callable
from typing import Any

from ledgerhook.db import connect
from ledgerhook.logs import configure_logging
from ledgerhook.observability import init_sentry, start_worker_metrics
from ledgerhook.settings import load_settings


def register(sub: Any) -> None:
    p = sub.add_parser("worker", help="run the arq worker (apply deliveries, sweeper, crons)")
    p.add_argument("--burst", action="store_true", help="exit when the queue is empty")
    p.set_defaults(handler=cmd_worker)

    p = sub.add_parser(
        "sequencer",
        help="run a sequencer candidate alone (integrates deliveries into the Merkle tree)",
    )
    p.set_defaults(handler=cmd_sequencer)

    p = sub.add_parser(
        "replay",
        help="re-run deliveries, or rebuild billing state from the audit log and compare",
    )
    g = p.add_mutually_exclusive_group(required=True)
    g.add_argument(
        "--delivery",
        type=int,
        metavar="ID",
        action="append",
        help="re-run one delivery (dead-lettered or unprocessed); repeatable",
    )
    g.add_argument(
        "--dead-letters", action="store_true", help="re-run every dead-lettered delivery"
    )
    g.add_argument(
        "--rebuild", action="store_true", help="rebuild state into the processors_replay schema"
    )
    g.add_argument(
        "--compare",
        action="store_true",
        help="rebuild, then report every difference from live state (exit 1 if any)",
    )
    p.set_defaults(handler=cmd_replay)


def cmd_worker(args: argparse.Namespace) -> int:
    from ledgerhook.worker import run_worker

    settings = load_settings()
    configure_logging(settings)
    init_sentry(settings, "worker")
    start_worker_metrics(settings)
    # arq's poll loop lets a lost Redis connection end the process. Redis is only the wake-up
    # (PostgreSQL holds the work, the sweeper re-enqueues), so the worker is rebuilt with backoff
    # instead of dying with it (found by the fault-injection suite); see run_supervised.
    # uvloop: the worker is round trips to PostgreSQL and Redis, and uvloop's transports cost a
    # fraction of asyncio's selector loop per write (see bench/results/profile.md).
    with asyncio.Runner(loop_factory=_loop_factory()) as runner:
        return runner.run(run_worker(settings, burst=args.burst))


def cmd_sequencer(args: argparse.Namespace) -> int:
    from ledgerhook.worker import run_sequencer

    settings = load_settings()
    configure_logging(settings)
    init_sentry(settings, "sequencer")
    start_worker_metrics(settings)
    with asyncio.Runner(loop_factory=_loop_factory()) as runner:
        return runner.run(run_sequencer(settings))


def _loop_factory() -> Callable[[], asyncio.AbstractEventLoop] | None:
    try:
        import uvloop
    except ImportError:  # pragma: no cover - uvloop is a dependency where it builds
        return None
    return uvloop.new_event_loop


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


def cmd_replay(args: argparse.Namespace) -> int:
    from ledgerhook.cli.progress import Progress
    from processors.replay import backlog, compare, rebuild

    settings = load_settings()
    configure_logging(settings)

    async def run() -> int:
        conn = await connect(settings.database_url)
        try:
            if args.delivery:
                return await _rerun(conn, args.delivery)
            if args.dead_letters:
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
            progress = Progress("replay --rebuild", unit="deliveries")
            stats = await rebuild(conn, progress.advance)
            progress.finish("rebuilt")
            print(
                f"rebuilt {stats.objects} objects from {stats.deliveries} deliveries "
                f"({stats.duplicates} duplicates, {stats.ignored} ignored, "
                f"{stats.failed} not normalisable) into processors_replay"
            )
            if not args.compare:
                return 0
            pending = await backlog(conn)
            if pending:
                print(f"warning: {pending} deliveries are not processed yet; live may lag")
            diffs = await compare(conn)
            for d in diffs:
                print(d.describe())
            print("live state matches the rebuild" if not diffs else f"{len(diffs)} differences")
            return 0 if not diffs else 1
        finally:
            await conn.close()

    return asyncio.run(run())
