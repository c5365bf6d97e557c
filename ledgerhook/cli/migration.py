"""``migration``: provider migration with coexistence (links, authority, verification, gate).

    ledgerhook migration link FILE [--format csv|json] [--cohort C]      import links
    ledgerhook migration link-metadata                                   link tagged objects now
    ledgerhook migration unlink --kind K --provider P --id ID            remove a link
    ledgerhook migration prices FILE [--format csv|json]                 import the price map
    ledgerhook migration plan --cohort C --at TIME                       plan a cut-over
    ledgerhook migration cutover|rollback (--cohort C | --account BA) [--at TIME]
    ledgerhook migration status [--cohort C]                             cohorts and authority
    ledgerhook migration report --cohort C [--format text|json|csv] [--replay]
    ledgerhook migration verify --cohort C                               the rollout gate

Results go to stdout; progress and messages to stderr. Refusals exit 1 with the reason (the
line number of a bad import line); ``verify`` exits 1 when the cohort is not ready.
"""

from __future__ import annotations

import argparse
import asyncio
import getpass
import sys
import time
from collections.abc import Awaitable, Callable
from datetime import datetime
from pathlib import Path
from typing import Any, TypeVar

import msgspec

from ledgerhook.cli.progress import Progress
from ledgerhook.db import connect, create_pool
from ledgerhook.logs import configure_logging
from ledgerhook.settings import Settings, load_settings

T = TypeVar("T")


def _time(text: str) -> int:
    """ISO 8601 with a time zone (``2025-07-01T00:00:00Z``) or unix seconds."""
    if text.isdigit():
        return int(text)
    try:
        value = datetime.fromisoformat(text.replace("Z", "+00:00"))
    except ValueError:
        raise argparse.ArgumentTypeError(
            f"{text!r}: use ISO 8601 like 2025-07-01T00:00:00Z"
        ) from None
    if value.tzinfo is None:
        raise argparse.ArgumentTypeError(f"{text!r}: give a time zone (e.g. Z)")
    return int(value.timestamp())


def _actor(args: argparse.Namespace) -> str:
    return args.actor or f"cli:{getpass.getuser()}"


def register(sub: Any) -> None:
    p = sub.add_parser("migration", help="provider migration: links, cut-over, verification")
    m = p.add_subparsers(dest="migration_command", required=True, metavar="ACTION")

    def add(name: str, help_: str, handler: Callable[[argparse.Namespace], int]) -> Any:
        q = m.add_parser(name, help=help_)
        q.add_argument("--actor", help="who to record (default cli:<user>)")
        q.set_defaults(handler=handler)
        return q

    q = add("link", "import links (CSV with a header, or JSON); all or nothing", cmd_link)
    q.add_argument("file", type=Path)
    q.add_argument("--format", choices=("csv", "json"), help="default: from the file name")
    q.add_argument("--cohort", help="cohort of lines that name none")
    add("link-metadata", "link the target objects tagged by the migration, now", cmd_link_metadata)
    q = add("unlink", "remove the link holding an object (either side)", cmd_unlink)
    q.add_argument("--kind", choices=("customer", "subscription"), required=True)
    q.add_argument("--provider", choices=("stripe", "chargebee"), required=True)
    q.add_argument("--id", required=True)
    q.add_argument("--account", help="provider account (default: the provider's default endpoint)")
    q.add_argument("--note")
    q = add("prices", "import the price map (source price -> target price)", cmd_prices)
    q.add_argument("file", type=Path)
    q.add_argument("--format", choices=("csv", "json"))
    for action, help_ in (
        ("plan", "plan a cohort's cut-over (a future time, normally a period boundary)"),
        ("cutover", "switch to the target now (or record a past switch with --at)"),
        ("rollback", "switch back to the source now (or from --at)"),
    ):
        q = add(action, help_, cmd_authority)
        who = q.add_mutually_exclusive_group(required=True)
        who.add_argument("--cohort")
        who.add_argument("--account", help="one billing account (overrides its cohort)")
        q.add_argument("--at", type=_time, required=action == "plan", metavar="TIME")
        q.add_argument("--note")
        q.set_defaults(action=action)
    q = add("status", "cohorts, their links and who is authoritative", cmd_status)
    q.add_argument("--cohort")
    q = add("report", "verify every linked pair of a cohort now and print the report", cmd_report)
    q.add_argument("--cohort", required=True)
    q.add_argument("--format", choices=("text", "json", "csv"), default="text")
    q.add_argument("--output", type=Path, help="write the report here instead of stdout")
    q.add_argument(
        "--replay",
        action="store_true",
        help="read the state rebuilt by `ledgerhook replay --rebuild` (processors_replay)",
    )
    q.add_argument("--show", type=int, default=50, help="text: pairs listed (default 50)")
    q = add("verify", "the rollout gate: exit 0 only if the cohort is fully verified", cmd_verify)
    q.add_argument("--cohort", required=True)


def _run(settings: Settings, work: Callable[[Any], Awaitable[T]]) -> T:
    async def go() -> T:
        conn = await connect(settings.database_url)
        try:
            return await work(conn)
        finally:
            await conn.close()

    return asyncio.run(go())


def _refused(command: str, exc: Exception) -> int:
    print(f"ledgerhook migration {command}: {exc}", file=sys.stderr)
    return 1


def _format(path: Path, given: str | None) -> Any:
    return given or ("json" if path.suffix.lower() == ".json" else "csv")


def cmd_link(args: argparse.Namespace) -> int:
    from processors.coexist.errors import CoexistError
    from processors.coexist.imports import parse_links
    from processors.coexist.links import default_accounts, import_links

    settings = load_settings()
    fmt = _format(args.file, args.format)
    try:
        lines = parse_links(
            args.file.read_bytes(),
            fmt,
            default_accounts=default_accounts(settings),
            default_cohort=args.cohort,
        )
        result = _run(
            settings,
            lambda c: import_links(
                c, lines, actor=_actor(args), origin="cli", source=str(args.file), fmt=fmt
            ),
        )
    except (CoexistError, OSError) as exc:
        return _refused("link", exc)
    print(
        f"{result.lines} lines: {result.linked} linked, {result.unchanged} already linked"
        + (f" (import {result.import_id})" if result.import_id else "")
    )
    return 0


def cmd_link_metadata(args: argparse.Namespace) -> int:
    from processors.coexist.metadata import link_from_metadata

    settings = load_settings()
    c = settings.coexist
    if not (c.customer_metadata_key or c.subscription_metadata_key):
        return _refused(
            "link-metadata", ValueError("set LEDGERHOOK_COEXIST__CUSTOMER_METADATA_KEY first")
        )
    result = _run(settings, lambda conn: link_from_metadata(conn, settings))
    print(f"linked {result.linked}")
    for s in result.skipped:
        print(f"  not linked: {s}", file=sys.stderr)
    return 0


def cmd_unlink(args: argparse.Namespace) -> int:
    from processors.coexist.errors import CoexistError
    from processors.coexist.links import default_accounts, unlink
    from processors.coexist.model import Ref

    settings = load_settings()
    account = args.account or default_accounts(settings).get(args.provider)
    if not account:
        return _refused("unlink", ValueError("--account is required (no default endpoint)"))
    ref = Ref(provider=args.provider, account=account, id=args.id)
    try:
        link_id = _run(
            settings,
            lambda c: unlink(c, args.kind, ref, actor=_actor(args), origin="cli", note=args.note),
        )
    except CoexistError as exc:
        return _refused("unlink", exc)
    print(f"unlinked link {link_id}")
    return 0


def cmd_prices(args: argparse.Namespace) -> int:
    from processors.coexist.errors import CoexistError
    from processors.coexist.imports import parse_prices
    from processors.coexist.price_store import import_prices

    settings = load_settings()
    fmt = _format(args.file, args.format)
    try:
        lines = parse_prices(args.file.read_bytes(), fmt)
        result = _run(
            settings,
            lambda c: import_prices(
                c, lines, actor=_actor(args), origin="cli", source=str(args.file), fmt=fmt
            ),
        )
    except (CoexistError, OSError) as exc:
        return _refused("prices", exc)
    print(f"{result.lines} lines: {result.linked} set, {result.unchanged} unchanged")
    return 0


def cmd_authority(args: argparse.Namespace) -> int:
    from processors.coexist.cutover import change_authority
    from processors.coexist.errors import CoexistError
    from processors.coexist.render import when

    settings = load_settings()
    try:
        event = _run(
            settings,
            lambda c: change_authority(
                c,
                args.action,
                cohort=args.cohort,
                billing_account=args.account,
                effective_at=args.at,
                now=int(time.time()),
                actor=_actor(args),
                origin="cli",
                note=args.note,
            ),
        )
    except CoexistError as exc:
        return _refused(args.action, exc)
    scope = f"account {event.billing_account}" if event.billing_account else "cohort"
    print(
        f"{event.action} recorded for {scope} of cohort {event.cohort}, effective {when(event.effective_at)}"
    )
    return 0


def cmd_status(args: argparse.Namespace) -> int:
    from processors.coexist.errors import CoexistError
    from processors.coexist.queries import cohort_detail, list_cohorts
    from processors.coexist.render import authority_line, when

    settings = load_settings()
    now = int(time.time())
    try:
        if args.cohort:
            d = _run(settings, lambda c: cohort_detail(c, args.cohort, now))
            print(
                f"{d.cohort.cohort}: {d.cohort.customers} customers, {d.cohort.subscriptions} subscriptions"
            )
            print(f"  {authority_line(d.cohort.authority)}")
            for e in d.authority_history:
                who = f" (account {e.billing_account})" if e.billing_account else ""
                print(
                    f"  {when(e.recorded_at)} {e.action}{who} effective {when(e.effective_at)} by {e.actor}"
                    + (f": {e.note}" if e.note else "")
                )
            for r in d.runs:
                s = r.summary
                print(
                    f"  run {r.id} ({r.state_schema}) as of {when(r.as_of)}: "
                    + (
                        f"{s.matched} matched, {s.explained} explained, {s.mismatched} mismatched"
                        if s
                        else "unfinished"
                    )
                )
            return 0
        for c in _run(settings, lambda conn: list_cohorts(conn, now)):
            last = c.last_run.summary if c.last_run else None
            runs = (
                f"; last run {c.last_run.id}: {last.mismatched} mismatched"
                if c.last_run and last
                else ""
            )
            print(
                f"{c.cohort}: {c.customers} customers, {c.subscriptions} subscriptions; {authority_line(c.authority)}{runs}"
            )
    except CoexistError as exc:
        return _refused("status", exc)
    return 0


def _progress(settings: Settings, cohort: str) -> Progress:
    async def count() -> int:
        conn = await connect(settings.database_url)
        try:
            n: int = await conn.fetchval(
                "SELECT count(*) FROM coexist.links WHERE cohort = $1", cohort
            )
            return n
        finally:
            await conn.close()

    return Progress(f"verify {cohort}", total=asyncio.run(count()), unit="pairs")


def cmd_report(args: argparse.Namespace) -> int:
    from processors.coexist.errors import CoexistError
    from processors.coexist.queries import iter_results, result_page
    from processors.coexist.render import render_report, results_csv_header, results_csv_rows
    from processors.coexist.verify import run_verification, tolerances_of

    settings = load_settings()
    configure_logging(settings)
    progress = _progress(settings, args.cohort)
    out = args.output.open("w", encoding="utf-8") if args.output else sys.stdout

    async def work(conn: Any) -> int:
        report = await run_verification(
            conn,
            args.cohort,
            now=int(time.time()),
            actor=_actor(args),
            tolerances=tolerances_of(settings),
            schema="processors_replay" if args.replay else "processors",
            page_size=settings.coexist.page_size,
            progress=progress.advance,
        )
        progress.finish(f"run {report.run_id}")
        if args.format == "json":
            items = [r async for r in iter_results(conn, report.run_id)]
            out.write(msgspec.json.encode({"report": report, "items": items}).decode() + "\n")
        elif args.format == "csv":
            out.write(results_csv_header())
            async for chunk in results_csv_rows(iter_results(conn, report.run_id)):
                out.write(chunk)
        else:
            shown = await result_page(conn, report.run_id, after="", verdict=None, limit=args.show)
            out.write(render_report(report, shown) + "\n")
            if report.summary.explained + report.summary.mismatched > len(shown):
                out.write(
                    f"  ... (--format csv lists all {report.summary.explained + report.summary.mismatched})\n"
                )
        return 0

    try:
        return _run(settings, work)
    except CoexistError as exc:
        return _refused("report", exc)
    finally:
        if args.output:
            out.close()


def cmd_verify(args: argparse.Namespace) -> int:
    from alerts.coexist.gate import gate
    from processors.coexist.errors import CoexistError
    from processors.coexist.render import render_report

    settings = load_settings()
    configure_logging(settings)
    progress = _progress(settings, args.cohort)

    async def go() -> Any:
        pool = await create_pool(settings, min_size=1, max_size=2)
        try:
            return await gate(
                pool, settings, args.cohort, actor=_actor(args), progress=progress.advance
            )
        finally:
            await pool.close()

    try:
        result = asyncio.run(go())
    except CoexistError as exc:
        return _refused("verify", exc)
    progress.finish(f"run {result.report.run_id}")
    print(render_report(result.report))
    if result.ok:
        print(
            f"cohort {args.cohort}: verified; every pair matched or explained, totals equal, no open coexistence alert"
        )
        return 0
    print(f"cohort {args.cohort}: NOT verified", file=sys.stderr)
    for p in result.problems:
        print(f"  - {p}", file=sys.stderr)
    return 1
