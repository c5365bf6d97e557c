"""C2SP tlog-checkpoint bodies (c2sp.org/tlog-checkpoint), signed as C2SP signed notes.

A checkpoint is the note text::

    <origin>                       the log's identity; our log signs with a key of this name
    <tree size>                    ASCII decimal, no leading zeros ("0" for the empty tree)
    <root hash>                    base64 of the 32-byte RFC 6962 root at that size
    [<extension line> ...]         optional, non-empty, opaque (NOT RECOMMENDED by the spec)

How to use::

    text = format_checkpoint(origin, frontier.size, frontier.root())
    note = sign_checkpoint(Checkpoint(origin=origin, size=n, root=r), signer)   # store, serve

    signed = open_checkpoint(note, [verifier], origin=origin)   # CheckpointError / NoteError
    signed.checkpoint.size, signed.checkpoint.root, signed.signed_by

    # A newer checkpoint must extend an older one (same origin, consistency proof):
    verify_consistent(older, newer, proof)   # ProofError for a rolled-back or forked log

Parsing is strict (one spelling per checkpoint): exact line structure, final newline, canonical
base64, a size below 2**64 without leading zeros. ``format_checkpoint`` refuses to write what
``parse_checkpoint`` would refuse, and also an origin that is not a valid note key name, since
our log's key name is its origin. Parsing accepts any non-empty origin without control
characters, as the spec tells clients to.
"""

from __future__ import annotations

import base64
import re
from collections.abc import Iterable, Sequence

import msgspec

from audit.errors import CheckpointError, NoteKeyError
from audit.merkle import HASH_SIZE, MAX_SIZE, verify_consistency
from audit.note import (
    Signer,
    Verifier,
    check_key_name,
    open_note,
    sign_note,
    strict_b64decode,
)

__all__ = [
    "Checkpoint",
    "SignedCheckpoint",
    "format_checkpoint",
    "open_checkpoint",
    "parse_checkpoint",
    "sign_checkpoint",
    "verify_consistent",
]

_SIZE = re.compile(r"0|[1-9][0-9]{0,19}")


class Checkpoint(msgspec.Struct, frozen=True, kw_only=True):
    """A signed tree head's content: what the log commits to (sign :meth:`text`, never a repr)."""

    origin: str
    size: int
    root: bytes
    extensions: tuple[str, ...] = ()

    def text(self) -> str:
        return format_checkpoint(self.origin, self.size, self.root, self.extensions)


class SignedCheckpoint(msgspec.Struct, frozen=True, kw_only=True):
    """An opened checkpoint: the parsed body, the note as received, the keys that signed it."""

    checkpoint: Checkpoint
    note: str
    signed_by: tuple[Verifier, ...]


def _check_line(line: str, what: str) -> None:
    if not line:
        raise CheckpointError(f"checkpoint {what} is empty")
    for ch in line:
        if ch < " ":
            raise CheckpointError(f"checkpoint {what} contains control character U+{ord(ch):04X}")


def format_checkpoint(origin: str, size: int, root: bytes, extensions: Sequence[str] = ()) -> str:
    """The checkpoint's note text (ends with a newline; sign it with :func:`sign_checkpoint`)."""
    try:
        check_key_name(origin)
    except NoteKeyError as exc:
        raise CheckpointError(f"origin must be a valid key name: {exc}") from None
    if isinstance(size, bool) or not isinstance(size, int) or not 0 <= size <= MAX_SIZE:
        raise CheckpointError(f"tree size {size!r} is not an integer in [0, 2**64)")
    if not isinstance(root, bytes) or len(root) != HASH_SIZE:
        raise CheckpointError(f"root hash must be {HASH_SIZE} bytes")
    if isinstance(extensions, str):
        raise CheckpointError("extensions must be a sequence of lines, not one string")
    for i, line in enumerate(extensions):
        _check_line(line, f"extension line {i}")
    lines = [origin, str(size), base64.b64encode(root).decode("ascii"), *extensions]
    return "\n".join(lines) + "\n"


def parse_checkpoint(text: str) -> Checkpoint:
    """The checkpoint in ``text`` (a note's verified text), or CheckpointError saying why."""
    if not text.endswith("\n"):
        raise CheckpointError("checkpoint text must end with a newline")
    lines = text[:-1].split("\n")
    if len(lines) < 3:
        raise CheckpointError(
            f"checkpoint has {len(lines)} line(s); needs origin, tree size and root hash"
        )
    origin, size_line, root_line, *extensions = lines
    _check_line(origin, "origin")
    if not _SIZE.fullmatch(size_line) or int(size_line) > MAX_SIZE:
        raise CheckpointError(
            f"tree size {size_line[:40]!r} is not a decimal below 2**64 without leading zeros"
        )
    try:
        root = strict_b64decode(root_line)
    except ValueError as exc:
        raise CheckpointError(f"root hash {root_line[:60]!r}: {exc}") from None
    if len(root) != HASH_SIZE:
        raise CheckpointError(f"root hash is {len(root)} bytes, not {HASH_SIZE}")
    for i, line in enumerate(extensions):
        _check_line(line, f"extension line {i}")
    return Checkpoint(origin=origin, size=int(size_line), root=root, extensions=tuple(extensions))


def sign_checkpoint(checkpoint: Checkpoint, signer: Signer, *cosigners: Signer) -> str:
    return sign_note(checkpoint.text(), signer, *cosigners)


def open_checkpoint(
    note: str | bytes, verifiers: Iterable[Verifier], *, origin: str
) -> SignedCheckpoint:
    """Verify the note (a NoteError if no known key signed it), parse it, check its origin.

    Pass only keys trusted for this log: any one of them verifying is enough (the spec's rule,
    which is what lets a log rotate keys and witnesses cosign).
    """
    opened = open_note(note, verifiers)
    checkpoint = parse_checkpoint(opened.text)
    if checkpoint.origin != origin:
        raise CheckpointError(
            f"checkpoint is for log {checkpoint.origin!r}, not the expected {origin!r}"
        )
    text = note.decode("utf-8") if isinstance(note, bytes) else note
    return SignedCheckpoint(checkpoint=checkpoint, note=text, signed_by=opened.verified_by)


def verify_consistent(older: Checkpoint, newer: Checkpoint, proof: Sequence[bytes]) -> None:
    """``newer`` extends ``older``: same log, and an RFC 9162 consistency proof between them.

    A newer checkpoint at a smaller size (a rolled-back log) or with another root at the same
    size (a fork) is a ProofError, whatever the proof.
    """
    if older.origin != newer.origin:
        raise CheckpointError(
            f"checkpoints of different logs: {older.origin!r} and {newer.origin!r}"
        )
    verify_consistency(older.size, newer.size, proof, older.root, newer.root)
