"""``migrate``, ``verify`` and ``checkpoint``: the database and the integrity of the log."""

from __future__ import annotations

import argparse
import asyncio
import sys
from typing import Any

from ledgerhook.db import connect
from ledgerhook.logs import configure_logging
from ledgerhook.migrations import MigrationError, migrate
from ledgerhook.settings import load_settings


def register(sub: Any) -> None:
    p = sub.add_parser("migrate", help="create the database and roles, apply pending migrations")
    p.set_defaults(handler=cmd_migrate)

    p = sub.add_parser(
        "verify",
        help="verify the log (every leaf, the tree, every checkpoint); exit 1 naming the first "
        "problem",
    )
    p.add_argument("--from-checkpoint", type=int, metavar="ID", help="start at a signed checkpoint")
    p.add_argument(
        "--no-bodies", action="store_true", help="skip re-hashing bodies (metadata and tree only)"
    )
    p.add_argument("--export", metavar="FILE", help="verify an export file offline (no database)")
    p.add_argument(
        "--public-key",
        metavar="VKEY",
        help="the log's note verifier key (default: derived from the configured checkpoint key)",
    )
    p.set_defaults(handler=cmd_verify)

    p = sub.add_parser(
        "checkpoint", help="verify the leaves added since the last checkpoint and sign the tree"
    )
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
    print(f"  ... {n} leaves verified", file=sys.stderr, flush=True)


def cmd_verify(args: argparse.Namespace) -> int:
    from ledgerhook.cli.keys import verifier_from

    if args.export:
        from audit.export_verify import verify_export_file

        return verify_export_file(args.export, verifier_from(args.public_key, required=False))
    from audit.checkpoints import log_origin
    from audit.verify import verify_tree

    settings = load_settings()
    configure_logging(settings)
    verifier = verifier_from(args.public_key, settings=settings)
    assert verifier is not None
    legacy = settings.legacy_hmac_key

    async def run() -> int:
        conn = await connect(settings.database_url)
        try:
            result = await verify_tree(
                conn,
                verifiers=[verifier],
                origin=log_origin(settings),
                from_checkpoint=args.from_checkpoint,
                bodies=not args.no_bodies,
                legacy_key=None if legacy is None else legacy.reveal().encode(),
                progress=_progress,
                record="cli",
            )
        finally:
            await conn.close()
        print(result.describe())
        return 0 if result.ok else 1

    return asyncio.run(run())


def cmd_checkpoint(args: argparse.Namespace) -> int:
    from audit.checkpoints import create_checkpoint, load_signer, log_origin

    settings = load_settings()
    configure_logging(settings)

    async def run() -> int:
        signer = load_signer(settings)
        conn = await connect(settings.database_url)
        try:
            cp = await create_checkpoint(conn, signer, log_origin(settings), source="cli")
        finally:
            await conn.close()
        if cp is None:
            print("no checkpoint written: the log does not verify (run ledgerhook verify)")
            return 1
        print(f"checkpoint {cp.id}: tree size {cp.tree_size}, root {cp.root_hash.hex()}")
        print(cp.note, end="")
        return 0

    return asyncio.run(run())
