"""``migrate``, ``verify`` and ``checkpoint``: the database and the integrity of the log."""

from __future__ import annotations

import argparse
import asyncio
import sys
from typing import Any

from audit.checkpoints import create_checkpoint, load_key
from audit.verify import verify_chain
from ledgerhook.db import connect
from ledgerhook.logs import configure_logging
from ledgerhook.migrations import MigrationError, migrate
from ledgerhook.settings import load_settings


def register(sub: Any) -> None:
    p = sub.add_parser("migrate", help="create the database and roles, apply pending migrations")
    p.set_defaults(handler=cmd_migrate)

    p = sub.add_parser("verify", help="walk the hash chain; exit 1 naming the first broken row")
    p.add_argument("--from-checkpoint", type=int, metavar="ID", help="start at a signed checkpoint")
    p.add_argument("--export", metavar="FILE", help="verify an export file offline (no database)")
    p.set_defaults(handler=cmd_verify)

    p = sub.add_parser("checkpoint", help="verify the chain and sign a checkpoint of its head")
    p.set_defaults(handler=cmd_checkpoint)


def cmd_migrate(args: argparse.Namespace) -> int:
    settings = load_settings()
    configure_logging(settings)
    try:
        applied = asyncio.run(migrate(settings))
    except MigrationError as exc:
        print(f"ledgerhook migrate: {exc}", file=sys.stderr)
        return 1
    if applied:
        for m in applied:
            print(f"applied {m.version:04d}_{m.name} ({m.package})")
    else:
        print("database is up to date")
    return 0


def _progress(n: int) -> None:
    print(f"  ... {n} rows verified", file=sys.stderr, flush=True)


def cmd_verify(args: argparse.Namespace) -> int:
    if args.export:
        from audit.export_verify import verify_export_file

        return verify_export_file(args.export)
    settings = load_settings()
    configure_logging(settings)

    async def run() -> int:
        key = load_key(settings)
        conn = await connect(settings.database_url)
        try:
            result = await verify_chain(
                conn, key=key, from_checkpoint=args.from_checkpoint, progress=_progress
            )
        finally:
            await conn.close()
        print(result.describe())
        return 0 if result.ok else 1

    return asyncio.run(run())


def cmd_checkpoint(args: argparse.Namespace) -> int:
    settings = load_settings()
    configure_logging(settings)

    async def run() -> int:
        key = load_key(settings)
        conn = await connect(settings.database_url)
        try:
            cp = await create_checkpoint(conn, key)
        finally:
            await conn.close()
        if cp is None:
            print(
                "no checkpoint written: the log is empty or does not verify (run ledgerhook verify)"
            )
            return 1
        print(
            f"checkpoint {cp.id}: delivery {cp.delivery_id}, chain hash {cp.chain_hash.hex()}, key {cp.key_id}"
        )
        return 0

    return asyncio.run(run())
