"""``token create|list|revoke``: API bearer tokens for auditors, on-call and admins.

``token create`` prints the token, and only the token, on standard output (scripts capture it);
it is shown once and stored only as a hash. Everything else goes to standard error.
"""

from __future__ import annotations

import argparse
import asyncio
import sys
from typing import Any

from audit.errors import TokenError
from audit.tokens import ROLES, Role, create_token, list_tokens, revoke_token
from ledgerhook.db import connect
from ledgerhook.settings import load_settings


def register(sub: Any) -> None:
    p = sub.add_parser("token", help="create, list or revoke API bearer tokens")
    tsub = p.add_subparsers(dest="token_command", required=True, metavar="ACTION")

    c = tsub.add_parser("create", help="create a token; prints only the token on stdout")
    c.add_argument("--role", required=True, choices=ROLES)
    c.add_argument("--name", required=True, help="unique name, recorded in the access log")
    c.set_defaults(handler=cmd_create)

    ls = tsub.add_parser("list", help="list tokens (names, roles, dates; never hashes)")
    ls.set_defaults(handler=cmd_list)

    r = tsub.add_parser("revoke", help="revoke a token by name; effective at the next request")
    r.add_argument("name")
    r.set_defaults(handler=cmd_revoke)


def cmd_create(args: argparse.Namespace) -> int:
    settings = load_settings()
    role: Role = args.role

    async def run() -> str:
        conn = await connect(settings.database_url)
        try:
            return await create_token(conn, name=args.name, role=role)
        finally:
            await conn.close()

    try:
        token = asyncio.run(run())
    except TokenError as exc:
        print(f"ledgerhook token create: {exc}", file=sys.stderr)
        return 1
    print(token)
    print(f"created {role} token {args.name!r}; it is shown only this once", file=sys.stderr)
    return 0


def cmd_list(args: argparse.Namespace) -> int:
    settings = load_settings()

    async def run() -> int:
        conn = await connect(settings.database_url)
        try:
            tokens = await list_tokens(conn)
        finally:
            await conn.close()
        print(f"{'NAME':<32} {'ROLE':<8} {'CREATED':<25} REVOKED")
        for t in tokens:
            revoked = t.revoked_at.isoformat(timespec="seconds") if t.revoked_at else "-"
            created = t.created_at.isoformat(timespec="seconds")
            print(f"{t.name:<32} {t.role:<8} {created:<25} {revoked}")
        return 0

    return asyncio.run(run())


def cmd_revoke(args: argparse.Namespace) -> int:
    settings = load_settings()

    async def run() -> bool:
        conn = await connect(settings.database_url)
        try:
            return await revoke_token(conn, args.name)
        finally:
            await conn.close()

    try:
        revoked = asyncio.run(run())
    except TokenError as exc:
        print(f"ledgerhook token revoke: {exc}", file=sys.stderr)
        return 1
    print(f"revoked {args.name!r}" if revoked else f"{args.name!r} was already revoked")
    return 0
