"""``alerts list|show|ack|resolve``: on-call at a terminal, without an API token.

The same reads and the same lifecycle functions as ``GET /alerts`` and ``POST /alerts/{id}/ack``:
filters match the API's, ``--json`` prints the API's bodies, and acknowledging or resolving goes
through :func:`alerts.lifecycle.acknowledge` / :func:`~alerts.lifecycle.resolve` with the same
refusals (exit 1: an illegal transition or an unknown id). The change is recorded in the alert's
history as ``cli:<operator>``: ``--as NAME``, by default the login name running the command.
"""

from __future__ import annotations

import argparse
import asyncio
import getpass
import shutil
import sys
from collections.abc import Awaitable, Callable
from datetime import UTC, datetime
from typing import Any, get_args

import asyncpg
import msgspec

from alerts import lifecycle, notify
from alerts.errors import AlertsError
from alerts.lifecycle import Alert, AlertEvent
from alerts.model import RULES, Severity
from alerts.repository import AlertFilter, list_alerts
from ledgerhook.db import connect
from ledgerhook.settings import Settings, load_settings

__all__ = ["register"]

STATUSES = ("open", "acknowledged", "resolved")
PROVIDERS = ("stripe", "chargebee")
MAX_NOTE = 2000  # as the API
_json = msgspec.json.Encoder()


def register(sub: Any) -> None:
    p = sub.add_parser("alerts", help="list, show, acknowledge and resolve alerts (on-call)")
    asub = p.add_subparsers(dest="alerts_command", required=True, metavar="ACTION")

    ls = asub.add_parser("list", help="alerts matching every filter, newest first")
    ls.add_argument("--status", choices=STATUSES)
    ls.add_argument("--rule", choices=RULES)
    ls.add_argument("--severity", choices=get_args(Severity))
    ls.add_argument("--provider", choices=PROVIDERS)
    ls.add_argument("--limit", type=_positive, default=50, help="page size (default 50)")
    ls.add_argument("--cursor", help="next page: the cursor the previous page printed")
    ls.add_argument("--json", action="store_true", help="the API's JSON body instead of a table")
    ls.set_defaults(handler=cmd_list)

    show = asub.add_parser("show", help="one alert, its evidence and its history")
    show.add_argument("id", type=_positive)
    show.add_argument("--json", action="store_true", help="the API's JSON body")
    show.set_defaults(handler=cmd_show)

    for action, helptext in (
        ("ack", "acknowledge an open alert"),
        ("resolve", "resolve an open or acknowledged alert"),
    ):
        c = asub.add_parser(action, help=helptext)
        c.add_argument("id", type=_positive)
        c.add_argument("--note", help="why (recorded in the alert's history)")
        c.add_argument(
            "--as",
            dest="operator",
            default=None,
            metavar="NAME",
            help="who is acting (default: your login name); recorded as cli:NAME",
        )
        c.add_argument("--json", action="store_true", help="print the alert as JSON")
        c.set_defaults(handler=cmd_change, change=action)


def _positive(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not a number") from None
    if not 1 <= value <= 2**63 - 1:
        raise argparse.ArgumentTypeError(f"{text!r} must be a positive id")
    return value


def _run(settings: Settings, work: Callable[[asyncpg.Connection], Awaitable[int]]) -> int:
    async def run() -> int:
        conn = await connect(settings.database_url)
        try:
            return await work(conn)
        finally:
            await conn.close()

    try:
        return asyncio.run(run())
    except AlertsError as exc:
        print(f"ledgerhook alerts: {exc}", file=sys.stderr)
        return 1


def _when(value: datetime | None) -> str:
    return "-" if value is None else value.astimezone(UTC).strftime("%Y-%m-%d %H:%M:%SZ")


def table(alerts: list[Alert], width: int) -> list[str]:
    """Fixed columns, the summary cut to the terminal's width."""
    head = ("ID", "STATUS", "SEVERITY", "RULE", "PROVIDER", "LAST SEEN", "COUNT")
    rows = [
        (
            str(a.id),
            a.status,
            a.severity,
            a.rule,
            a.provider or "-",
            _when(a.last_seen),
            str(a.count),
        )
        for a in alerts
    ]
    widths = [max(len(r[i]) for r in [head, *rows]) for i in range(len(head))]
    lead = sum(widths) + 2 * len(widths)
    room = max(width - lead, 20)

    def line(cells: tuple[str, ...], summary: str) -> str:
        text = "  ".join(c.ljust(w) for c, w in zip(cells, widths, strict=True))
        if len(summary) > room:
            summary = summary[: room - 1] + "…"
        return f"{text}  {summary}".rstrip()

    return [line(head, "SUMMARY"), *(line(r, a.summary) for r, a in zip(rows, alerts, strict=True))]


def cmd_list(args: argparse.Namespace) -> int:
    settings = load_settings()
    f = AlertFilter(
        status=args.status, rule=args.rule, severity=args.severity, provider=args.provider
    )
    limit = min(args.limit, settings.api.max_page_size)

    async def work(conn: asyncpg.Connection) -> int:
        page = await list_alerts(conn, f, cursor=args.cursor, limit=limit)
        if args.json:
            print(_json.encode(page).decode())
            return 0
        if not page.items:
            print("no alerts match", file=sys.stderr)
            return 0
        for text in table(page.items, shutil.get_terminal_size((120, 24)).columns):
            print(text)
        if page.next_cursor:
            print(f"(more: --cursor {page.next_cursor})", file=sys.stderr)
        return 0

    return _run(settings, work)


def describe(alert: Alert, history: list[AlertEvent]) -> list[str]:
    lines = [
        f"alert {alert.id}: {alert.rule} ({alert.severity}), {alert.status}",
        f"  summary    {alert.summary}",
        f"  subject    {alert.subject}" + (f" ({alert.provider})" if alert.provider else ""),
        f"  seen       {_when(alert.first_seen)} .. {_when(alert.last_seen)}, {alert.count} time(s)",
    ]
    if alert.acknowledged_at:
        lines.append(f"  acked      {_when(alert.acknowledged_at)} by {alert.acknowledged_by}")
    if alert.resolved_at:
        lines.append(
            f"  resolved   {_when(alert.resolved_at)} by {alert.resolved_by} ({alert.resolution})"
        )
    if alert.delivery_ids:
        lines.append(f"  deliveries {', '.join(map(str, alert.delivery_ids))}")
    for key, value in alert.evidence.items():
        lines.append(f"  {key + ':':<10} {value}")
    lines.append("  history")
    for e in history:
        change = f"{e.from_status or '-'} -> {e.to_status}"
        note = f"  {e.note}" if e.note else ""
        lines.append(f"    {_when(e.at)}  {e.actor:<16} {change:<26}{note}")
    return lines


def cmd_show(args: argparse.Namespace) -> int:
    settings = load_settings()

    async def work(conn: asyncpg.Connection) -> int:
        alert = await lifecycle.get_alert(conn, args.id)
        history = await lifecycle.history(conn, args.id)
        if args.json:
            print(_json.encode({"alert": alert, "history": history}).decode())
        else:
            print("\n".join(describe(alert, history)))
        return 0

    return _run(settings, work)


def cmd_change(args: argparse.Namespace) -> int:
    settings = load_settings()
    if args.note is not None and len(args.note) > MAX_NOTE:
        print(f"ledgerhook alerts: --note: at most {MAX_NOTE} characters", file=sys.stderr)
        return 2
    operator = args.operator or getpass.getuser()
    change = lifecycle.acknowledge if args.change == "ack" else lifecycle.resolve

    async def work(conn: asyncpg.Connection) -> int:
        alert = await change(
            conn,
            args.id,
            actor=f"cli:{operator}",
            now=datetime.now(UTC),
            note=args.note,
            channels=notify.channels(settings),
        )
        if args.json:
            print(_json.encode(alert).decode())
        else:
            print(f"alert {alert.id} is {alert.status} ({alert.rule}: {alert.summary})")
        return 0

    return _run(settings, work)
