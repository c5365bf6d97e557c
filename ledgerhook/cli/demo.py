"""``demo``: send the demo story to a running Ledgerhook and print what happened.

The demo reads the same settings as the instance (database, webhook secrets, Stripe API base:
the environment and the ``.env`` that ``make run`` writes) so it can sign deliveries and create
its admin token.
"""

from __future__ import annotations

import argparse
import asyncio
import sys
from typing import Any

from ledgerhook.settings import load_settings


def register(sub: Any) -> None:
    p = sub.add_parser(
        "demo",
        help="send a signed demo story (Stripe + Chargebee) to a running instance; print results",
    )
    p.add_argument(
        "--url", default="http://127.0.0.1:8000", help="the instance (default %(default)s)"
    )
    p.add_argument(
        "--standin-port",
        type=int,
        default=12111,
        help="port of the stand-in Stripe Events API (match LEDGERHOOK_STRIPE_API_BASE)",
    )
    p.add_argument("--wait", type=float, default=60.0, help="seconds to wait for processing")
    p.set_defaults(handler=cmd_demo)


def cmd_demo(args: argparse.Namespace) -> int:
    from ledgerhook.demo.runner import DemoError, run_demo

    settings = load_settings()

    def say(line: str) -> None:
        print(line, flush=True)

    try:
        report = asyncio.run(
            run_demo(
                settings, args.url, standin_port=args.standin_port, say=say, wait_seconds=args.wait
            )
        )
    except DemoError as exc:
        print(f"ledgerhook demo: {exc}", file=sys.stderr)
        return 1
    if not report.ok():
        print(
            "ledgerhook demo: the story did not play out as expected (see above)", file=sys.stderr
        )
        return 1
    return 0
