"""C2SP signed notes with Ed25519 keys (c2sp.org/signed-note; golang.org/x/mod/sumdb/note).

A note is UTF-8 text ending in a newline, a blank line, then signature lines::

    <text line 1>
    <text line 2>

    — <key name> base64(4-byte key id || Ed25519 signature over the text)

Keys travel as the strings Go's note package reads and writes (the de-facto standard, so any
tlog tool can check our checkpoints)::

    verifier key (public):  <name>+<8 hex key id>+base64(0x01 || 32-byte public key)
    signer key (SECRET):    PRIVATE+KEY+<name>+<8 hex key id>+base64(0x01 || 32-byte seed)
    key id = SHA-256(name || "\\n" || 0x01 || public key)[:4]

How to use::

    signer = generate_signer("ledgerhook.example/log")       # once; store format_signer_key(signer)
    signer = parse_signer_key(secret_string)                 # at start-up, from settings / key file
    vkey = format_verifier_key(signer.verifier)              # publish this (API, CLI)

    note = sign_note(text, signer)                           # text must end in "\\n"
    opened = open_note(note, [parse_verifier_key(vkey)])     # raises a NoteError subclass
    opened.text, opened.verified_by, opened.unverified

``open_note`` follows the spec: signatures by unknown keys (another name, or the same name with
another key id) are ignored and listed in ``unverified``; a known key's signature that fails
refuses the whole note (BadSignature); no verified signature refuses it too (UnverifiedNote).
It is stricter than Go's reader on purpose: two signature lines by one key, more than
:data:`MAX_SIGNATURES` lines, or a note over :data:`MAX_NOTE_BYTES` are MalformedNote, and base64
must be canonical. Error messages never contain secret key material.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import re
import unicodedata
from collections.abc import Iterable
from dataclasses import dataclass, field

import msgspec
from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey, Ed25519PublicKey

from audit.errors import BadSignature, MalformedNote, NoteKeyError, UnverifiedNote

__all__ = [
    "ED25519",
    "MAX_NOTE_BYTES",
    "MAX_SIGNATURES",
    "NoteSignature",
    "OpenedNote",
    "Signer",
    "Verifier",
    "check_key_name",
    "format_signer_key",
    "format_verifier_key",
    "generate_signer",
    "key_id",
    "open_note",
    "parse_signer_key",
    "parse_verifier_key",
    "sign_note",
    "signer_from_seed",
    "strict_b64decode",
]

ED25519 = 0x01
"""Signature type byte of plain Ed25519 note signatures (the only one we make or accept)."""
MAX_SIGNATURES = 100
"""Signature lines a note may carry (the spec asks verifiers to accept at least 16)."""
MAX_NOTE_BYTES = 256 * 1024
"""Whole-note limit: room for 16 post-quantum cosignatures (~5 kB each), far above a checkpoint."""

_DASH = "— "  # U+2014 EM DASH, then a space
_HEX_ID = re.compile(r"[0-9a-f]{8}")
_BAD_NAME_CATEGORIES = frozenset({"Zs", "Zl", "Zp", "Cc", "Cs"})


def strict_b64decode(text: str) -> bytes:
    """Standard base64 (RFC 4648 section 4), padded and canonical, or ValueError.

    Canonical: exactly the string that encoding the bytes gives back, so one value has one
    spelling (no whitespace, no missing padding, no non-zero trailing bits).
    """
    if not text.isascii():
        raise ValueError("base64 is not ASCII")
    try:
        raw = base64.b64decode(text, validate=True)
    except (binascii.Error, ValueError) as exc:
        raise ValueError(f"not base64: {exc}") from None
    if base64.b64encode(raw).decode("ascii") != text:
        raise ValueError("not canonical base64")
    return raw


def _b64(raw: bytes) -> str:
    return base64.b64encode(raw).decode("ascii")


def check_key_name(name: str) -> str:
    """A key name per the spec: non-empty, no Unicode space, no '+' (and, here, no control)."""
    if not isinstance(name, str) or not name:
        raise NoteKeyError("key name is empty")
    for ch in name:
        if ch == "+" or ch.isspace() or unicodedata.category(ch) in _BAD_NAME_CATEGORIES:
            raise NoteKeyError(f"key name {name!r} contains {ch!r} (no '+', spaces or controls)")
    return name


def key_id(name: str, public_key: bytes) -> bytes:
    """The 4-byte id of an Ed25519 key: SHA-256(name || 0x0A || 0x01 || public key)[:4]."""
    return hashlib.sha256(name.encode("utf-8") + b"\n" + bytes([ED25519]) + public_key).digest()[:4]


@dataclass(frozen=True, repr=False)
class Verifier:
    """A public key with its name: checks signatures, safe to publish."""

    name: str
    public_key: bytes
    key_id: bytes = field(init=False)
    _key: Ed25519PublicKey = field(init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        check_key_name(self.name)
        if not isinstance(self.public_key, bytes) or len(self.public_key) != 32:
            raise NoteKeyError("an Ed25519 public key is 32 bytes")
        object.__setattr__(self, "key_id", key_id(self.name, self.public_key))
        object.__setattr__(self, "_key", Ed25519PublicKey.from_public_bytes(self.public_key))

    def __repr__(self) -> str:
        return f"Verifier({self.name}+{self.key_id.hex()})"

    def verify(self, message: bytes, signature: bytes) -> bool:
        if len(signature) != 64:
            return False
        try:
            self._key.verify(signature, message)
        except InvalidSignature:
            return False
        return True


@dataclass(frozen=True, repr=False)
class Signer:
    """A private key with its name. Its repr and every error about it omit the secret."""

    name: str
    private_key: Ed25519PrivateKey = field(repr=False, compare=False)
    verifier: Verifier = field(init=False)

    def __post_init__(self) -> None:
        check_key_name(self.name)
        public = self.private_key.public_key().public_bytes_raw()
        object.__setattr__(self, "verifier", Verifier(self.name, public))

    def __repr__(self) -> str:
        return f"Signer({self.name}+{self.key_id.hex()}, private key not shown)"

    @property
    def key_id(self) -> bytes:
        return self.verifier.key_id

    def sign(self, message: bytes) -> bytes:
        return self.private_key.sign(message)


def generate_signer(name: str) -> Signer:
    return Signer(check_key_name(name), Ed25519PrivateKey.generate())


def signer_from_seed(name: str, seed: bytes) -> Signer:
    """The signer of a 32-byte Ed25519 seed (RFC 8032 private key)."""
    if not isinstance(seed, bytes) or len(seed) != 32:
        raise NoteKeyError("an Ed25519 seed is 32 bytes")
    return Signer(check_key_name(name), Ed25519PrivateKey.from_private_bytes(seed))


def format_verifier_key(verifier: Verifier) -> str:
    return f"{verifier.name}+{verifier.key_id.hex()}+{_b64(bytes([ED25519]) + verifier.public_key)}"


def format_signer_key(signer: Signer) -> str:
    seed = signer.private_key.private_bytes_raw()
    return f"PRIVATE+KEY+{signer.name}+{signer.key_id.hex()}+{_b64(bytes([ED25519]) + seed)}"


def _key_material(id_hex: str, b64: str, what: str) -> tuple[bytes, bytes]:
    """(key id, 32-byte key) from the last two fields of a key string; never echoes them."""
    if not _HEX_ID.fullmatch(id_hex):
        raise NoteKeyError(f"{what}: the key id is not 8 lowercase hex digits")
    try:
        raw = strict_b64decode(b64)
    except ValueError:
        raise NoteKeyError(f"{what}: the key is not canonical base64") from None
    if not raw:
        raise NoteKeyError(f"{what}: the key is empty")
    if raw[0] != ED25519:
        raise NoteKeyError(f"{what}: unsupported key algorithm {raw[0]} (only 1, Ed25519)")
    if len(raw) != 33:
        raise NoteKeyError(f"{what}: an Ed25519 key is 32 bytes, got {len(raw) - 1}")
    return bytes.fromhex(id_hex), raw[1:]


def parse_verifier_key(vkey: str) -> Verifier:
    """``<name>+<hex id>+<base64(0x01 || public key)>``, exactly; the id must match the key."""
    if vkey != vkey.strip():
        raise NoteKeyError(f"verifier key {vkey!r} has surrounding whitespace")
    parts = vkey.split("+", 2)
    if len(parts) != 3:
        raise NoteKeyError(f"verifier key {vkey!r} is not <name>+<key id>+<key>")
    name, id_hex, b64 = parts
    check_key_name(name)
    kid, public = _key_material(id_hex, b64, f"verifier key {vkey!r}")
    verifier = Verifier(name, public)
    if verifier.key_id != kid:
        raise NoteKeyError(f"verifier key {vkey!r}: key id {id_hex} does not match the key")
    return verifier


def parse_signer_key(skey: str) -> Signer:
    """``PRIVATE+KEY+<name>+<hex id>+<base64(0x01 || seed)>``, exactly, as Go writes it."""
    if skey != skey.strip():
        raise NoteKeyError("signer key has surrounding whitespace")
    parts = skey.split("+", 4)
    if len(parts) != 5 or parts[0] != "PRIVATE" or parts[1] != "KEY":
        raise NoteKeyError("signer key is not PRIVATE+KEY+<name>+<key id>+<key>")
    name, id_hex, b64 = parts[2:]
    check_key_name(name)
    kid, seed = _key_material(id_hex, b64, f"signer key for {name!r}")
    signer = signer_from_seed(name, seed)
    if signer.key_id != kid:
        raise NoteKeyError(f"signer key for {name!r}: key id {id_hex} does not match the key")
    return signer


class NoteSignature(msgspec.Struct, frozen=True, kw_only=True):
    """One signature line: who claims to have signed, and the raw signature bytes."""

    name: str
    key_id: bytes
    signature: bytes

    @property
    def key(self) -> str:
        return f"{self.name}+{self.key_id.hex()}"


class OpenedNote(msgspec.Struct, frozen=True, kw_only=True):
    """A note whose text at least one known key signed (``verified_by``, in line order)."""

    text: str
    verified_by: tuple[Verifier, ...]
    unverified: tuple[NoteSignature, ...]


def _check_chars(text: str, what: str) -> bytes:
    """UTF-8 bytes of ``text``, refusing controls other than newline (spec) and bad UTF-8."""
    for ch in text:
        if ch < " " and ch != "\n":
            raise MalformedNote(f"{what} contains control character U+{ord(ch):04X}")
    try:
        return text.encode("utf-8")
    except UnicodeEncodeError:
        raise MalformedNote(f"{what} is not valid UTF-8 (lone surrogate)") from None


def sign_note(text: str, signer: Signer, *cosigners: Signer) -> str:
    """``text`` signed by ``signer`` (and ``cosigners``, lines in that order)."""
    if not text.endswith("\n"):
        raise MalformedNote("note text must end with a newline")
    message = _check_chars(text, "note text")
    lines: list[str] = []
    keys: set[tuple[str, bytes]] = set()
    for s in (signer, *cosigners):
        if (s.name, s.key_id) in keys:
            raise NoteKeyError(f"key {s.name}+{s.key_id.hex()} is given twice")
        keys.add((s.name, s.key_id))
        lines.append(f"{_DASH}{s.name} {_b64(s.key_id + s.sign(message))}\n")
    if len(lines) > MAX_SIGNATURES:
        raise MalformedNote(f"more than {MAX_SIGNATURES} signatures")
    note = text + "\n" + "".join(lines)
    if len(note.encode("utf-8")) > MAX_NOTE_BYTES:
        raise MalformedNote(f"signed note would exceed {MAX_NOTE_BYTES} bytes")
    return note


def _known(verifiers: Iterable[Verifier]) -> dict[tuple[str, bytes], Verifier]:
    known: dict[tuple[str, bytes], Verifier] = {}
    for v in verifiers:
        other = known.setdefault((v.name, v.key_id), v)
        if other != v:
            raise NoteKeyError(f"two different keys share name and id {v.name}+{v.key_id.hex()}")
    return known


def _parse_line(line: str) -> NoteSignature:
    if not line.startswith(_DASH):
        raise MalformedNote(f"signature line {line[:80]!r} does not start with an em dash")
    name, space, b64 = line[len(_DASH) :].partition(" ")
    if not space:
        raise MalformedNote(f"signature line {line[:80]!r} is not '— <name> <signature>'")
    try:
        check_key_name(name)
        raw = strict_b64decode(b64)
    except (NoteKeyError, ValueError) as exc:
        raise MalformedNote(f"signature line {line[:80]!r}: {exc}") from None
    if len(raw) < 5:
        raise MalformedNote(f"signature line {line[:80]!r} is shorter than a key id + signature")
    return NoteSignature(name=name, key_id=raw[:4], signature=raw[4:])


def open_note(note: str | bytes, verifiers: Iterable[Verifier]) -> OpenedNote:
    """Parse ``note`` and check every signature by a known key; refuse unless one verifies."""
    known = _known(verifiers)
    if isinstance(note, bytes):
        if len(note) > MAX_NOTE_BYTES:
            raise MalformedNote(f"note is over {MAX_NOTE_BYTES} bytes")
        try:
            note = note.decode("utf-8")
        except UnicodeDecodeError:
            raise MalformedNote("note is not valid UTF-8") from None
    if len(note) > MAX_NOTE_BYTES or len(_check_chars(note, "note")) > MAX_NOTE_BYTES:
        raise MalformedNote(f"note is over {MAX_NOTE_BYTES} bytes")
    split = note.rfind("\n\n")
    if split < 0:
        raise MalformedNote("no blank line between the text and the signatures")
    text, block = note[: split + 1], note[split + 2 :]
    if not block:
        raise MalformedNote("no signature lines after the blank line")
    if not block.endswith("\n"):
        raise MalformedNote("the last signature line does not end with a newline")
    lines = block[:-1].split("\n")
    if len(lines) > MAX_SIGNATURES:
        raise MalformedNote(f"{len(lines)} signature lines, more than {MAX_SIGNATURES}")
    message = text.encode("utf-8")
    seen: set[tuple[str, bytes]] = set()
    verified: list[Verifier] = []
    unverified: list[NoteSignature] = []
    for line in lines:
        sig = _parse_line(line)
        if (sig.name, sig.key_id) in seen:
            raise MalformedNote(f"two signature lines by key {sig.key}")
        seen.add((sig.name, sig.key_id))
        verifier = known.get((sig.name, sig.key_id))
        if verifier is None:
            unverified.append(sig)  # the spec: ignore unknown keys, even with a known name
        elif verifier.verify(message, sig.signature):
            verified.append(verifier)
        else:
            raise BadSignature(f"the signature by known key {sig.key} does not verify")
    if not verified:
        keys = ", ".join(s.key for s in unverified)
        raise UnverifiedNote(f"note is signed by no known key (only by {keys})")
    return OpenedNote(text=text, verified_by=tuple(verified), unverified=tuple(unverified))
