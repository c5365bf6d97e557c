"""The ``ledgerhook`` command.

Each module in :data:`COMMANDS` adds its subcommands with ``register(subparsers)``; a subcommand's
handler takes the parsed arguments and returns an exit code. Settings are loaded once, here, and
handed to the handler: a bad setting stops the program before anything runs, naming the setting.
"""

from __future__ import annotations

import argparse
import importlib
import sys
from collections.abc import Sequence

from ledgerhook.settings import SettingsError

__all__ = ["main"]

COMMANDS = (
    "ledgerhook.cli.database",
    "ledgerhook.cli.keys",
    "ledgerhook.cli.tokens",
    "ledgerhook.cli.export",
    "ledgerhook.cli.run",
    "ledgerhook.cli.worker",
    "ledgerhook.cli.replay",
    "ledgerhook.cli.reconcile",
    "ledgerhook.cli.alerts",
    "ledgerhook.cli.sync",
    "ledgerhook.cli.drift",
    "ledgerhook.cli.serve",
    "ledgerhook.cli.demo",
    "ledgerhook.cli.migration",
)


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="ledgerhook",
        description="Verified, append-only, exactly-once Stripe and Chargebee webhooks.",
    )
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    for name in COMMANDS:
        importlib.import_module(name).register(sub)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    try:
        code: int = args.handler(args)
    except SettingsError as exc:
        print(f"ledgerhook: configuration error: {exc}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        return 130
    return code


if __name__ == "__main__":
    sys.exit(main())
