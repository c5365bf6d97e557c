"""``export``: stream the audit log (all of it, or filtered) to a file an auditor verifies offline.

The same records as ``GET /audit/export`` (:mod:`audit.export`), to standard output or
``--output FILE``; progress and a summary go to standard error. Verify the file with
``ledgerhook verify --export FILE``.
"""

from __future__ import annotations

import argparse
import asyncio
import sys
import time
from datetime import datetime
from pathlib import Path
from typing import Any, BinaryIO

from audit.errors import InvalidQuery
from audit.export import export_chunks
from audit.repository import DeliveryFilter, check_filter
from ledgerhook.db import connect
from ledgerhook.settings import load_settings


def register(sub: Any) -> None:
    p = sub.add_parser("export", help="export the audit log for offline verification")
    p.add_argument("--format", choices=("jsonl", "csv"), default="jsonl")
    p.add_argument("--output", "-o", metavar="FILE", help="write here instead of standard output")
    p.add_argument("--provider", choices=("stripe", "chargebee"))
    p.add_argument("--endpoint")
    p.add_argument("--account")
    p.add_argument("--event-type")
    p.add_argument("--event-id")
    p.add_argument("--object-id")
    p.add_argument("--origin", choices=("webhook", "reconciliation", "sync"))
    for name in ("received-from", "received-to", "event-from", "event-to"):
        p.add_argument(f"--{name}", type=datetime.fromisoformat, metavar="ISO8601")
    p.add_argument("--verification", help="scheme (stripe-v1) or full verification value")
    dup = p.add_mutually_exclusive_group()
    dup.add_argument("--duplicates-only", dest="duplicate", action="store_const", const=True)
    dup.add_argument("--no-duplicates", dest="duplicate", action="store_const", const=False)
    p.add_argument("--progress-every", type=int, default=100_000, metavar="ROWS")
    p.set_defaults(handler=cmd_export)


def _filter(args: argparse.Namespace) -> DeliveryFilter:
    return DeliveryFilter(
        provider=args.provider,
        endpoint=args.endpoint,
        account=args.account,
        event_type=args.event_type,
        event_id=args.event_id,
        object_id=args.object_id,
        origin=args.origin,
        received_from=args.received_from,
        received_to=args.received_to,
        event_from=args.event_from,
        event_to=args.event_to,
        verification=args.verification,
        duplicate=args.duplicate,
    )


def cmd_export(args: argparse.Namespace) -> int:
    settings = load_settings()
    f = _filter(args)
    try:
        check_filter(f)
    except InvalidQuery as exc:
        print(f"ledgerhook export: {exc}", file=sys.stderr)
        return 2
    started = time.monotonic()
    rows = 0

    def progress(n: int) -> None:
        nonlocal rows
        rows = n
        rate = n / max(time.monotonic() - started, 1e-6)
        print(f"  ... {n} rows exported ({rate:.0f} rows/s)", file=sys.stderr, flush=True)

    from audit.checkpoints import load_signer, log_origin, public_key

    origin, key = log_origin(settings), public_key(load_signer(settings))

    async def run(out: BinaryIO) -> int:
        conn = await connect(settings.database_url)
        size = 0
        try:
            async for chunk in export_chunks(
                conn,
                f,
                args.format,
                origin=origin,
                public_key=key,
                progress=progress,
                progress_every=args.progress_every,
            ):
                out.write(chunk)
                size += len(chunk)
        finally:
            await conn.close()
        out.flush()
        return size

    if args.output:
        tmp = Path(args.output + ".partial")
        with tmp.open("wb") as fh:
            size = asyncio.run(run(fh))
        tmp.replace(args.output)
        target = args.output
    else:
        size = asyncio.run(run(sys.stdout.buffer))
        target = "standard output"
    kind = "complete" if f.is_empty() else "filtered"
    print(
        f"exported {rows} rows ({kind}, {args.format}, {size} bytes) to {target} "
        f"in {time.monotonic() - started:.1f}s; verify with: ledgerhook verify --export FILE",
        file=sys.stderr,
    )
    return 0
