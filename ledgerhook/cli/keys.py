"""``checkpoint-key``, ``proof`` and ``verify-proof``: the log's key, and proofs auditors keep.

``verify-proof`` needs no database and no settings: a proof bundle and the log's public key are
enough (the README's worked example).
"""

from __future__ import annotations

import argparse
import asyncio
import json
import sys
from pathlib import Path
from typing import Any

from audit.errors import AuditError
from audit.note import Verifier, parse_verifier_key
from ledgerhook.settings import Settings, load_settings


def register(sub: Any) -> None:
    p = sub.add_parser("checkpoint-key", help="the log's checkpoint signing key")
    keys = p.add_subparsers(dest="key_command", required=True, metavar="ACTION")
    g = keys.add_parser("generate", help="print a new Ed25519 signing key (keep it secret)")
    g.add_argument("--name", help="key name (default: the log's origin)")
    g.set_defaults(handler=cmd_key_generate)
    k = keys.add_parser("public", help="print the public key (note verifier key) auditors use")
    k.set_defaults(handler=cmd_key_public)

    p = sub.add_parser("proof", help="print a proof bundle: a delivery's inclusion, or consistency")
    what = p.add_mutually_exclusive_group(required=True)
    what.add_argument("--delivery", type=int, metavar="ID", help="inclusion proof of a delivery")
    what.add_argument(
        "--consistency",
        type=int,
        nargs=2,
        metavar=("SIZE1", "SIZE2"),
        help="consistency proof between two tree sizes",
    )
    p.add_argument("--tree-size", type=int, metavar="N", help="checkpoint size (default: latest)")
    p.set_defaults(handler=cmd_proof)

    p = sub.add_parser(
        "verify-proof", help="check a proof bundle offline with the log's public key (no database)"
    )
    p.add_argument(
        "bundle", help="the bundle file (from `ledgerhook proof` or the API); - for stdin"
    )
    p.add_argument("--public-key", required=True, metavar="VKEY", help="the log's verifier key")
    p.add_argument("--body", metavar="FILE", help="also check this body against the leaf")
    p.set_defaults(handler=cmd_verify_proof)


def verifier_from(
    public_key: str | None, *, settings: Settings | None = None, required: bool = True
) -> Verifier | None:
    """The verifier given on the command line, else the configured signing key's."""
    if public_key:
        try:
            return parse_verifier_key(public_key)
        except AuditError as exc:
            raise SystemExit(f"ledgerhook: --public-key: {exc}") from None
    try:
        from audit.checkpoints import load_signer

        return load_signer(settings or load_settings()).verifier
    except Exception:
        if required:
            raise
        return None


def cmd_key_generate(args: argparse.Namespace) -> int:
    from audit.checkpoints import log_origin
    from audit.note import format_signer_key, format_verifier_key, generate_signer

    name = args.name or log_origin(load_settings())
    signer = generate_signer(name)
    print(format_signer_key(signer))
    print(f"public key: {format_verifier_key(signer.verifier)}", file=sys.stderr)
    return 0


def cmd_key_public(args: argparse.Namespace) -> int:
    from audit.checkpoints import load_signer, public_key

    print(public_key(load_signer(load_settings())))
    return 0


def cmd_proof(args: argparse.Namespace) -> int:
    from audit.checkpoints import load_signer, log_origin, public_key
    from audit.proofs import build_bundle
    from audit.tree import consistency_proof
    from ledgerhook.db import connect

    settings = load_settings()

    async def run() -> dict[str, Any]:
        conn = await connect(settings.database_url)
        try:
            if args.delivery is not None:
                return await build_bundle(
                    conn,
                    args.delivery,
                    origin=log_origin(settings),
                    public_key=public_key(load_signer(settings)),
                    tree_size=args.tree_size,
                )
            first, second = args.consistency
            hashes = await consistency_proof(conn, first, second)
            return {"first": first, "second": second, "consistency": [h.hex() for h in hashes]}
        finally:
            await conn.close()

    try:
        out = asyncio.run(run())
    except AuditError as exc:
        print(f"ledgerhook proof: {exc}", file=sys.stderr)
        return 1
    print(json.dumps(out, indent=2))
    return 0


def cmd_verify_proof(args: argparse.Namespace) -> int:
    from audit.proofs import ProofBundleError, verify_bundle

    verifier = verifier_from(args.public_key)
    assert verifier is not None
    try:
        text = sys.stdin.read() if args.bundle == "-" else Path(args.bundle).read_text()
        bundle = json.loads(text)
        body = Path(args.body).read_bytes() if args.body else None
    except (OSError, ValueError) as exc:
        print(f"ledgerhook verify-proof: cannot read: {exc}", file=sys.stderr)
        return 2
    try:
        v = verify_bundle(bundle, verifier, body)
    except ProofBundleError as exc:
        print(f"proof REFUSED: {exc}")
        return 1
    body_note = ", body matches" if v.body_checked else ""
    print(
        f"proof OK: delivery {v.delivery_id} is leaf {v.leaf_index} of the tree of "
        f"{v.tree_size} leaves (root {v.root}), signed by {verifier.name}{body_note}"
    )
    return 0
