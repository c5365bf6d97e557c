"""``worker`` and ``sequencer``: run the worker process, or a sequencer candidate alone."""

from __future__ import annotations

import argparse
import asyncio
from collections.abc import Callable
from typing import Any

from ledgerhook.logs import configure_logging
from ledgerhook.settings import load_settings


def register(sub: Any) -> None:
    p = sub.add_parser(
        "worker",
        help="run the worker: a sequencer candidate, checkpoints, and the arq worker "
        "(apply deliveries, sweeper, crons)",
    )
    p.add_argument("--burst", action="store_true", help="exit when the queue is empty")
    p.set_defaults(handler=cmd_worker)

    p = sub.add_parser(
        "sequencer",
        help="run a sequencer candidate alone (integrates deliveries into the Merkle tree)",
    )
    p.set_defaults(handler=cmd_sequencer)


def cmd_worker(args: argparse.Namespace) -> int:
    # Imported here, not at the top: every ``ledgerhook`` command imports this module to
    # register its arguments, and Sentry/metrics/arq cost a second of start-up it need not pay.
    from ledgerhook.observability import init_sentry, start_worker_metrics
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
    from ledgerhook.observability import init_sentry, start_worker_metrics
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
