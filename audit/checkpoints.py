"""Signed tree heads: C2SP tlog-checkpoints as signed notes, with the log's Ed25519 key.

A checkpoint says "the tree of the first ``size`` leaves has root ``root``", signed with the
log's private key. Anyone holding the public key (``ledgerhook checkpoint-key public``,
``GET /audit/public-key``) can check it, and nobody without the private key can forge one; this
is what the HMAC checkpoints of the hash chain could not give an outside auditor (their checker
could forge them). With a later checkpoint and a consistency proof, an auditor proves the log
only grew; with an inclusion proof, that one delivery is in it.

A checkpoint is written only after the leaves it adds to the previous one were verified against
the deliveries' metadata and the stored subtrees (:func:`audit.verify.verify_tree` from the latest
checkpoint, without reading bodies), so a signature never blesses a tree that does not match the
log. Checkpoints are append-only (``audit.tree_checkpoints``); the stored ``note`` is the exact
text an auditor keeps.

Keys: ``LEDGERHOOK_CHECKPOINT_KEY`` holds the signer key string (``PRIVATE+KEY+<name>+...``), or
``LEDGERHOOK_CHECKPOINT_KEY_FILE`` names a file holding it. In development, with neither, a key
is generated into the file (mode 0600) with a warning; in production a missing key stops start-up.
"""

from __future__ import annotations

import asyncio
import logging
import os
from collections.abc import Callable
from datetime import UTC, datetime
from pathlib import Path

import asyncpg
import msgspec

from audit.checkpoint_format import Checkpoint, sign_checkpoint
from audit.dbtypes import Conn
from audit.errors import CheckpointKeyError, NoteKeyError
from audit.note import (
    Signer,
    Verifier,
    format_signer_key,
    format_verifier_key,
    generate_signer,
    parse_signer_key,
)
from ledgerhook.db import connect, database_name
from ledgerhook.settings import Settings

__all__ = [
    "TreeCheckpoint",
    "checkpoint_at",
    "create_checkpoint",
    "latest_checkpoint",
    "list_checkpoints",
    "load_signer",
    "log_origin",
    "public_key",
    "run_checkpoints",
]

log = logging.getLogger(__name__)


class TreeCheckpoint(msgspec.Struct, frozen=True, kw_only=True):
    id: int
    created_at: datetime
    origin: str
    tree_size: int
    root_hash: bytes
    key_name: str
    key_id: bytes
    note: str


def log_origin(settings: Settings) -> str:
    """The log's origin line: the setting, else ``ledgerhook/<database name>``."""
    return settings.tlog.origin or f"ledgerhook/{database_name(settings.database_url)}"


def load_signer(settings: Settings) -> Signer:
    """The checkpoint signing key: the setting, else the key file; generated in development."""
    if settings.checkpoint_key is not None:
        try:
            return parse_signer_key(settings.checkpoint_key.reveal())
        except NoteKeyError as exc:
            raise CheckpointKeyError(f"LEDGERHOOK_CHECKPOINT_KEY: {exc}") from None
    path = Path(settings.checkpoint_key_file)
    if path.exists():
        try:
            return parse_signer_key(path.read_text().strip())
        except (NoteKeyError, UnicodeDecodeError) as exc:
            raise CheckpointKeyError(
                f"LEDGERHOOK_CHECKPOINT_KEY_FILE {path}: not a note signing key ({exc})"
            ) from None
    if settings.environment == "production":
        raise CheckpointKeyError(
            "LEDGERHOOK_CHECKPOINT_KEY (or an existing LEDGERHOOK_CHECKPOINT_KEY_FILE) is "
            "required in production: `ledgerhook checkpoint-key generate` makes one"
        )
    signer = generate_signer(log_origin(settings))
    path.parent.mkdir(parents=True, exist_ok=True)
    try:
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    except FileExistsError:  # another process of this installation made it first
        return parse_signer_key(path.read_text().strip())
    with os.fdopen(fd, "w") as fh:
        fh.write(format_signer_key(signer) + "\n")
    log.warning(
        "no checkpoint key configured: generated a development signing key in %s "
        "(set LEDGERHOOK_CHECKPOINT_KEY in production; keep it outside the database)",
        path,
    )
    return signer


def public_key(signer: Signer) -> str:
    """The note verifier key string auditors use: ``<name>+<key id>+<public key>``."""
    return format_verifier_key(signer.verifier)


_COLUMNS = "id, created_at, origin, tree_size, root_hash, key_name, key_id, note"
_SELECT = f"SELECT {_COLUMNS} FROM audit.tree_checkpoints"


def _row(r: asyncpg.Record) -> TreeCheckpoint:
    return TreeCheckpoint(
        id=r["id"],
        created_at=r["created_at"],
        origin=r["origin"],
        tree_size=r["tree_size"],
        root_hash=bytes(r["root_hash"]),
        key_name=r["key_name"],
        key_id=bytes(r["key_id"]),
        note=r["note"],
    )


async def list_checkpoints(conn: Conn, *, limit: int = 100) -> list[TreeCheckpoint]:
    return [_row(r) for r in await conn.fetch(_SELECT + " ORDER BY id DESC LIMIT $1", limit)]


async def latest_checkpoint(conn: Conn) -> TreeCheckpoint | None:
    r = await conn.fetchrow(_SELECT + " ORDER BY tree_size DESC, id DESC LIMIT 1")
    return None if r is None else _row(r)


async def checkpoint_at(conn: Conn, tree_size: int) -> TreeCheckpoint | None:
    """The latest checkpoint of exactly ``tree_size`` leaves, if one was signed."""
    r = await conn.fetchrow(_SELECT + " WHERE tree_size = $1 ORDER BY id DESC LIMIT 1", tree_size)
    return None if r is None else _row(r)


async def create_checkpoint(
    conn: Conn, signer: Signer, origin: str, *, source: str = "checkpoint", duty: float = 1.0
) -> TreeCheckpoint | None:
    """Verify the leaves added since the latest checkpoint, then sign the tree as it is.

    Returns the latest checkpoint unchanged when the tree did not grow, and None (writing
    nothing but the failed verification run) when the new leaves do not verify. ``duty`` paces
    the verification (:func:`audit.verify.verify_tree`).
    """
    from audit.verify import verify_tree  # verify uses this module to read checkpoints

    verifier: Verifier = signer.verifier
    result = await verify_tree(
        conn,
        verifiers=[verifier],
        origin=origin,
        from_latest=True,
        bodies=False,
        record=source,
        duty=duty,
    )
    if not result.ok:
        return None
    latest = await latest_checkpoint(conn)
    if latest is not None and latest.tree_size == result.tree_size and latest.origin == origin:
        return latest
    checkpoint = Checkpoint(origin=origin, size=result.tree_size, root=result.root)
    note = sign_checkpoint(checkpoint, signer)
    r = await conn.fetchrow(
        "INSERT INTO audit.tree_checkpoints "
        "(created_at, origin, tree_size, root_hash, key_name, key_id, note) "
        f"VALUES ($1, $2, $3, $4, $5, $6, $7) RETURNING {_COLUMNS}",
        datetime.now(UTC),
        origin,
        checkpoint.size,
        checkpoint.root,
        verifier.name,
        verifier.key_id,
        note,
    )
    assert r is not None
    return _row(r)


# The scheduled checkpoint re-derives a minute of leaves in the worker, which also applies
# deliveries: at 1 600 deliveries/s that is ~95 000 leaf hashes a minute in one burst. Paced to
# half the time, a checkpoint is signed a few seconds later and applying keeps a share of the
# worker throughout (as the integrity job's pacing showed it does). `ledgerhook checkpoint` on
# demand is not paced.
SCHEDULED_DUTY = 0.5


async def run_checkpoints(
    settings: Settings, signer: Signer, is_leader: Callable[[], bool], stop: asyncio.Event
) -> None:
    """Sign a checkpoint every ``tlog.checkpoint_interval_seconds`` while ``is_leader()``.

    Runs beside the sequencer (never on its connection: verifying a minute of leaves must not
    hold up integration). A failed verification is recorded in ``audit.verification_runs``,
    which raises the ``integrity`` alert; nothing is signed until the log verifies again.
    """
    interval = settings.tlog.checkpoint_interval_seconds
    if interval <= 0:
        return
    origin = log_origin(settings)
    while not stop.is_set():
        try:
            await asyncio.wait_for(stop.wait(), interval)
            return
        except TimeoutError:
            pass
        if not is_leader():
            continue
        try:
            conn = await connect(settings.database_url, timeout=10)
            try:
                cp = await create_checkpoint(
                    conn, signer, origin, source="scheduled", duty=SCHEDULED_DUTY
                )
            finally:
                await conn.close()
        except Exception as exc:  # PostgreSQL away: the next round tries again
            log.warning("scheduled checkpoint failed", extra={"error": type(exc).__name__})
            continue
        if cp is None:
            log.error("no checkpoint signed: the log does not verify (see audit.verification_runs)")
