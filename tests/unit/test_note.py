"""Signed notes and checkpoints (audit.note, audit.checkpoint_format): vectors, tables, properties.

Byte-for-byte against the Go note package's own test vectors, and cross-checked with tlog-scales
(an independent Python implementation of C2SP checkpoints and Ed25519 note signatures).
"""

from __future__ import annotations

import base64
import hashlib
import re
from collections.abc import Callable

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from tlog_scales.signing import PlainEd25519Signer, Vkey
from tlog_scales.tlog import Checkpoint as TlogCheckpoint

from audit.checkpoint_format import (
    Checkpoint,
    format_checkpoint,
    open_checkpoint,
    parse_checkpoint,
    sign_checkpoint,
    verify_consistent,
)
from audit.errors import (
    BadSignature,
    CheckpointError,
    MalformedNote,
    NoteError,
    NoteKeyError,
    ProofError,
    UnverifiedNote,
)
from audit.merkle import EMPTY_ROOT, Frontier, assemble, consistency_plan, leaf_hash
from audit.note import (
    MAX_NOTE_BYTES,
    MAX_SIGNATURES,
    Signer,
    Verifier,
    check_key_name,
    format_signer_key,
    format_verifier_key,
    generate_signer,
    key_id,
    open_note,
    parse_signer_key,
    parse_verifier_key,
    sign_note,
    signer_from_seed,
    strict_b64decode,
)

# Source: golang.org/x/mod, sumdb/note/note_test.go (TestNewVerifier, TestNewSigner, TestSign,
# TestOpen): the PeterNeumann key pair, the EnochRoot verifier key and their signatures.
PETER_VKEY = "PeterNeumann+c74f20a3+ARpc2QcUPDhMQegwxbzhKqiBfsVkmqq/LDE4izWy10TW"
PETER_SKEY = "PRIVATE+KEY+PeterNeumann+c74f20a3+AYEKFALVFGyNhPJEMzD1QIDr+Y7hfZx09iUvxdXHKDFz"
ENOCH_VKEY = "EnochRoot+af0cfe78+ATtqJ7zOtqQtYqOo0CpvDXNlMhV3HeJDpjrASKGLWdop"
TEXT = (
    "If you think cryptography is the answer to your problem,\n"
    "then you don't know what your problem is.\n"
)
PETER_SIG = "— PeterNeumann x08go/ZJkuBS9UG/SffcvIAQxVBtiFupLLr8pAcElZInNIuGUgYN1FFYC2pZSNXgKvqfqdngotpRZb6KE6RyyBwJnAM=\n"
ENOCH_SIG = "— EnochRoot rwz+eBzmZa0SO3NbfRGzPCpDckykFXSdeX+MNtCOXm2/5n2tiOHp+vAF1aGrQ5ovTG01oOTGwnWLox33WWd1RvMc+QQ=\n"

PETER = parse_signer_key(PETER_SKEY)
PETER_V = parse_verifier_key(PETER_VKEY)
ENOCH_V = parse_verifier_key(ENOCH_VKEY)
ORIGIN = "ledgerhook.example/log"
LOG = signer_from_seed(ORIGIN, hashlib.sha256(b"test log key").digest())
ROOT = hashlib.sha256(b"a root").digest()


# --- Keys -------------------------------------------------------------------------------------------


def test_go_keys_parse_and_format_back_exactly() -> None:
    assert PETER.name == "PeterNeumann"
    assert (
        PETER.key_id.hex() == "c74f20a3" == key_id("PeterNeumann", PETER.verifier.public_key).hex()
    )
    assert PETER.verifier == PETER_V
    assert format_signer_key(PETER) == PETER_SKEY
    assert format_verifier_key(PETER_V) == PETER_VKEY
    assert format_verifier_key(ENOCH_V) == ENOCH_VKEY


def test_generated_keys_round_trip_and_hide_the_secret() -> None:
    signer = generate_signer(ORIGIN)
    skey = format_signer_key(signer)
    assert skey.startswith(f"PRIVATE+KEY+{ORIGIN}+{signer.key_id.hex()}+")
    assert parse_signer_key(skey) == signer
    assert parse_verifier_key(format_verifier_key(signer.verifier)) == signer.verifier
    secret = skey.rsplit("+", 1)[1]
    assert secret not in repr(signer) and "private key not shown" in repr(signer)
    assert repr(signer.verifier) == f"Verifier({ORIGIN}+{signer.key_id.hex()})"


def _mangled(key: str) -> list[str]:
    """Go's TestNewVerifier/TestNewSigner manglings: every proper substring, every byte + 1."""
    subs = {key[i:j] for i in range(len(key) + 1) for j in range(i + 1, len(key) + 1)} - {key}
    bumped = {key[:i] + chr(ord(key[i]) + 1) + key[i + 1 :] for i in range(len(key))}
    return sorted(subs | bumped)


def test_every_mangled_verifier_key_is_refused() -> None:
    accepted = []
    for bad in _mangled(PETER_VKEY):
        try:
            parse_verifier_key(bad)
        except NoteKeyError:
            continue
        accepted.append(bad)
    assert accepted == []


def test_every_mangled_signer_key_is_refused_without_echoing_it() -> None:
    secret = PETER_SKEY.rsplit("+", 1)[1]
    accepted, messages = [], []
    for bad in _mangled(PETER_SKEY):
        try:
            parse_signer_key(bad)
        except NoteKeyError as exc:
            messages.append(str(exc))
            continue
        accepted.append(bad)
    assert accepted == []
    assert [m for m in messages if secret[4:] in m] == []  # no secret material in any message


@pytest.mark.parametrize(
    ("vkey", "reason"),
    [
        # Go's: wrong key length and unknown algorithm, each with a key id recomputed to match.
        (
            "PeterNeumann+cc469956+ARpc2QcUPDhMQegwxbzhKqiBfsVkmqq/LDE4izWy10TWBADKEY==",
            "not canonical base64",
        ),
        ("PeterNeumann+173116ae+ZRpc2QcUPDhMQegwxbzhKqiBfsVkmqq/LDE4izWy10TW", "algorithm 101"),
        ("PeterNeumann+C74F20A3+ARpc2QcUPDhMQegwxbzhKqiBfsVkmqq/LDE4izWy10TW", "lowercase hex"),
        ("PeterNeumann+c74f20a4+ARpc2QcUPDhMQegwxbzhKqiBfsVkmqq/LDE4izWy10TW", "does not match"),
        ("Peter Neumann+c74f20a3+ARpc2QcUPDhMQegwxbzhKqiBfsVkmqq/LDE4izWy10TW", "contains ' '"),
        (PETER_VKEY + "\n", "surrounding whitespace"),
        ("PeterNeumann", "is not <name>+<key id>+<key>"),
        (
            "PeterNeumann+c74f20a3+" + base64.b64encode(b"\x01" + bytes(31)).decode(),
            "32 bytes, got 31",
        ),
    ],
)
def test_verifier_key_refusals_say_why(vkey: str, reason: str) -> None:
    with pytest.raises(NoteKeyError, match=re.escape(reason)):
        parse_verifier_key(vkey)


@pytest.mark.parametrize(
    "name", ["", "a+b", "a b", "a\tb", "a\u00a0b", "a\u2028b", "a\u3000b", "a\x00b", "a\ud800"]
)
def test_key_names_follow_the_spec(name: str) -> None:
    with pytest.raises(NoteKeyError):
        check_key_name(name)
    with pytest.raises(NoteKeyError):
        generate_signer(name)


def test_key_names_may_be_urls_and_unicode() -> None:
    for name in ("example.com/log42", "sum.golang.org", "ünïcödé", "a/b?c=d&e#f"):
        assert check_key_name(name) == name


@pytest.mark.parametrize(
    ("text", "ok"),
    [
        ("AAAA", True),
        ("AAA=", True),
        ("AAE=", True),
        ("", True),
        ("AAF=", False),  # non-zero trailing bits
        ("AAA", False),  # missing padding
        ("AA A=", False),
        ("AAA=\n", False),
        ("ＡAA=", False),
    ],
)
def test_base64_must_be_canonical(text: str, ok: bool) -> None:
    if ok:
        assert base64.b64encode(strict_b64decode(text)).decode() == text
    else:
        with pytest.raises(ValueError, match="base64"):
            strict_b64decode(text)


# --- Signed notes -----------------------------------------------------------------------------------


def test_sign_reproduces_go_byte_for_byte() -> None:
    # Ed25519 is deterministic, so the Go package's signed note is the only right answer.
    assert sign_note(TEXT, PETER) == TEXT + "\n" + PETER_SIG


def test_open_the_go_notes() -> None:
    note = TEXT + "\n" + PETER_SIG + ENOCH_SIG
    opened = open_note(note, [PETER_V])
    assert opened.text == TEXT
    assert opened.verified_by == (PETER_V,)
    assert [s.key for s in opened.unverified] == ["EnochRoot+af0cfe78"]
    both = open_note(note.encode(), [PETER_V, ENOCH_V, ENOCH_V])  # a repeated verifier is fine
    assert both.verified_by == (PETER_V, ENOCH_V) and both.unverified == ()


def test_cosigned_note_opens_with_either_key() -> None:
    other = generate_signer("witness.example/w1")
    note = sign_note(TEXT, PETER, other)
    names = [line.split(" ")[1] for line in note.splitlines() if line.startswith("— ")]
    assert names == ["PeterNeumann", "witness.example/w1"]  # signer first, then cosigners
    assert open_note(note, [other.verifier]).verified_by == (other.verifier,)
    assert open_note(note, [PETER_V]).text == TEXT


def _invalid_signature() -> str:
    """Go's: 'ABCD' spliced into Peter's signature."""
    return TEXT + "\n" + PETER_SIG[:60] + "ABCD" + PETER_SIG[60:]


def _same_name_other_key() -> str:
    return sign_note(TEXT, generate_signer("PeterNeumann"))


def _colliding_key_id() -> str:
    """Another key's signature under Peter's name and key id (what a key-id collision gives)."""
    forged = generate_signer("PeterNeumann").sign(TEXT.encode())
    return TEXT + "\n— PeterNeumann " + base64.b64encode(PETER.key_id + forged).decode() + "\n"


def _reason_ids(value: object) -> str | None:
    """Name table rows after their expected reason; the notes themselves are too long."""
    if isinstance(value, str | bytes) and (len(value) > 60 or "\n" in str(value)):
        return "note"
    return None


def _tampered_text() -> str:
    return sign_note(TEXT, PETER).replace("cryptography", "Cryptography", 1)


@pytest.mark.parametrize(
    ("note", "error", "reason"),
    [
        # Go's badMsgs: all "malformed note" there.
        (TEXT, MalformedNote, "no blank line"),
        (TEXT + "\n", MalformedNote, "no signature lines"),
        (TEXT + "\n" + PETER_SIG[:-1], MalformedNote, "does not end with a newline"),
        ("\x01" + TEXT + "\n" + PETER_SIG, MalformedNote, "control character U+0001"),
        (b"\xff" + (TEXT + "\n" + PETER_SIG).encode(), MalformedNote, "not valid UTF-8"),
        (
            TEXT
            + "\n— Bad Name x08go/ZJkuBS9UG/SffcvIAQxVBtiFupLLr8pAcElZInNIuGUgYN1FFYC2pZSNXgKvqfqdngotpRZb6KE6RyyBwJnAM=",
            MalformedNote,
            "does not end with a newline",
        ),
        (
            TEXT
            + "\n— Bad Name x08go/ZJkuBS9UG/SffcvIAQxVBtiFupLLr8pAcElZInNIuGUgYN1FFYC2pZSNXgKvqfqdngotpRZb6KE6RyyBwJnAM=\n",
            MalformedNote,
            "': not base64",
        ),
        (
            TEXT + "\n" + PETER_SIG + "Unexpected line.\n",
            MalformedNote,
            "does not start with an em dash",
        ),
        (TEXT + "\n" + PETER_SIG * (MAX_SIGNATURES + 1), MalformedNote, "more than 100"),
        # Stricter than Go: duplicates, size, CRLF, short or non-canonical signatures.
        (
            TEXT + "\n" + PETER_SIG + PETER_SIG,
            MalformedNote,
            "two signature lines by key PeterNeumann+c74f20a3",
        ),
        (TEXT + "\n" + PETER_SIG + ENOCH_SIG + PETER_SIG, MalformedNote, "two signature lines"),
        ("x" * MAX_NOTE_BYTES + "\n\n" + PETER_SIG, MalformedNote, "over 262144 bytes"),
        (
            TEXT.replace("\n", "\r\n") + "\r\n" + PETER_SIG,
            MalformedNote,
            "control character U+000D",
        ),
        (TEXT + "\n— PeterNeumann AAAA\n", MalformedNote, "shorter than a key id + signature"),
        (TEXT + "\n— PeterNeumann\n", MalformedNote, "is not '— <name> <signature>'"),
        (
            TEXT
            + "\n- PeterNeumann x08go/ZJkuBS9UG/SffcvIAQxVBtiFupLLr8pAcElZInNIuGUgYN1FFYC2pZSNXgKvqfqdngotpRZb6KE6RyyBwJnAM=\n",
            MalformedNote,
            "em dash",
        ),
        # Signatures that do not verify, by a known key: the whole note is refused.
        (_invalid_signature(), BadSignature, "known key PeterNeumann+c74f20a3 does not verify"),
        (_tampered_text(), BadSignature, "does not verify"),
        (_colliding_key_id(), BadSignature, "does not verify"),
        # Only unknown keys: another name, or the same name with another key.
        (TEXT + "\n" + ENOCH_SIG, UnverifiedNote, "only by EnochRoot+af0cfe78"),
        (_same_name_other_key(), UnverifiedNote, "signed by no known key (only by PeterNeumann+"),
    ],
    ids=_reason_ids,
)
def test_bad_notes_are_refused_with_a_reason(
    note: str | bytes, error: type[NoteError], reason: str
) -> None:
    with pytest.raises(error, match=re.escape(reason)):
        open_note(note, [PETER_V])


def test_ambiguous_verifiers_are_refused() -> None:
    # Two different keys with one name and key id can only come from a collision (or an
    # attacker's entry in the list); Go calls it "ambiguous key", so do we.
    impostor = Verifier("PeterNeumann", generate_signer("x").verifier.public_key)
    object.__setattr__(impostor, "key_id", PETER_V.key_id)
    with pytest.raises(NoteKeyError, match="two different keys share"):
        open_note(TEXT + "\n" + PETER_SIG, [PETER_V, impostor])


@pytest.mark.parametrize(
    ("text", "signers", "error", "reason"),
    [
        ("abc", [PETER], MalformedNote, "must end with a newline"),
        ("", [PETER], MalformedNote, "must end with a newline"),
        ("a\x00b\n", [PETER], MalformedNote, "control character U+0000"),
        ("a\ud800\n", [PETER], MalformedNote, "not valid UTF-8"),
        (TEXT, [PETER, PETER], NoteKeyError, "given twice"),
        ("x" * MAX_NOTE_BYTES + "\n", [PETER], MalformedNote, "would exceed"),
    ],
)
def test_sign_note_refuses_what_open_note_would_refuse(
    text: str, signers: list[Signer], error: type[NoteError], reason: str
) -> None:
    with pytest.raises(error, match=re.escape(reason)):
        sign_note(text, *signers)


@settings(max_examples=150, deadline=None)
@given(text=st.text(min_size=1, max_size=60).map(lambda t: t + "\n"), data=st.data())
def test_any_one_character_change_to_a_signed_note_is_refused(
    text: str, data: st.DataObject
) -> None:
    text = "".join(c for c in text if c >= " " or c == "\n")
    text = text.encode("utf-8", "replace").decode("utf-8")
    if not text.endswith("\n"):
        text += "\n"
    note = sign_note(text, LOG)
    assert open_note(note, [LOG.verifier]).text == text
    i = data.draw(st.integers(0, len(note) - 1))
    c = data.draw(st.characters(codec="utf-8").filter(lambda c: c != note[i]))
    with pytest.raises(NoteError):
        open_note(note[:i] + c + note[i + 1 :], [LOG.verifier])


# --- Checkpoints ------------------------------------------------------------------------------------


def test_checkpoint_text_is_exactly_the_c2sp_layout() -> None:
    text = format_checkpoint(
        ORIGIN, 20852163, base64.b64decode("CsUYapGGPo4dkMgIAUqom/Xajj7h2fB2MPA3j2jxq2I=")
    )
    assert text == f"{ORIGIN}\n20852163\nCsUYapGGPo4dkMgIAUqom/Xajj7h2fB2MPA3j2jxq2I=\n"
    assert format_checkpoint(ORIGIN, 0, EMPTY_ROOT, ["ext one", "ext two"]).splitlines()[1:] == [
        "0",
        "47DEQpj8HBSa+/TImW+5JCeuQeRkm5NMpJWZG3hSuFU=",
        "ext one",
        "ext two",
    ]
    cp = parse_checkpoint(text)
    assert cp == Checkpoint(origin=ORIGIN, size=20852163, root=cp.root) and cp.text() == text


@pytest.mark.parametrize(
    ("text", "reason"),
    [
        (f"{ORIGIN}\n5\n{base64.b64encode(ROOT).decode()}", "end with a newline"),
        (f"{ORIGIN}\n5\n", "has 2 line(s)"),
        (f"\n5\n{base64.b64encode(ROOT).decode()}\n", "origin is empty"),
        (f"a\rb\n5\n{base64.b64encode(ROOT).decode()}\n", "control character U+000D"),
        (f"{ORIGIN}\n05\n{base64.b64encode(ROOT).decode()}\n", "without leading zeros"),
        (f"{ORIGIN}\n00\n{base64.b64encode(ROOT).decode()}\n", "without leading zeros"),
        (f"{ORIGIN}\n-1\n{base64.b64encode(ROOT).decode()}\n", "without leading zeros"),
        (f"{ORIGIN}\n+5\n{base64.b64encode(ROOT).decode()}\n", "without leading zeros"),
        (f"{ORIGIN}\n 5\n{base64.b64encode(ROOT).decode()}\n", "without leading zeros"),
        (f"{ORIGIN}\n５\n{base64.b64encode(ROOT).decode()}\n", "without leading zeros"),
        (f"{ORIGIN}\n1_000\n{base64.b64encode(ROOT).decode()}\n", "without leading zeros"),
        (f"{ORIGIN}\n{2**64}\n{base64.b64encode(ROOT).decode()}\n", "below 2**64"),
        (f"{ORIGIN}\n5\n{base64.b64encode(ROOT[:31]).decode()}\n", "31 bytes, not 32"),
        (f"{ORIGIN}\n5\n{base64.b64encode(ROOT).decode()[:-1]}\n", "not base64"),
        (f"{ORIGIN}\n5\nCsUYapGGPo4dkMgIAUqom/Xajj7h2fB2MPA3j2jxq2J=\n", "not canonical base64"),
        (f"{ORIGIN}\n5\n {base64.b64encode(ROOT).decode()}\n", "not base64"),
        (f"{ORIGIN}\n5\n{base64.b64encode(ROOT).decode()}\n\next\n", "extension line 0 is empty"),
        (f"{ORIGIN}\n5\n{base64.b64encode(ROOT).decode()}\n\n", "extension line 0 is empty"),
    ],
)
def test_malformed_checkpoints_are_refused_with_a_reason(text: str, reason: str) -> None:
    with pytest.raises(CheckpointError, match=re.escape(reason)):
        parse_checkpoint(text)


@pytest.mark.parametrize(
    ("call", "reason"),
    [
        (lambda: format_checkpoint("my log", 1, ROOT), "valid key name"),
        (lambda: format_checkpoint("a+b", 1, ROOT), "valid key name"),
        (lambda: format_checkpoint(ORIGIN, -1, ROOT), "tree size -1"),
        (lambda: format_checkpoint(ORIGIN, True, ROOT), "tree size True"),
        (lambda: format_checkpoint(ORIGIN, 2**64, ROOT), "tree size"),
        (lambda: format_checkpoint(ORIGIN, 1, ROOT[:16]), "32 bytes"),
        (lambda: format_checkpoint(ORIGIN, 1, ROOT, ["a\nb"]), "control character U+000A"),
        (lambda: format_checkpoint(ORIGIN, 1, ROOT, [""]), "extension line 0 is empty"),
        (lambda: format_checkpoint(ORIGIN, 1, ROOT, "ext"), "not one string"),
    ],
)
def test_format_checkpoint_refuses_what_parse_would(call: Callable[[], str], reason: str) -> None:
    with pytest.raises(CheckpointError, match=re.escape(reason)):
        call()


def test_parse_accepts_any_origin_the_spec_allows() -> None:
    # Clients MUST NOT assume the origin is a URL: spaces and '+' are readable, only ours is strict.
    text = f"some log + friends\n1\n{base64.b64encode(ROOT).decode()}\n"
    assert parse_checkpoint(text).origin == "some log + friends"


ORIGINS = st.text(
    st.characters(codec="utf-8", exclude_categories=["Zs", "Zl", "Zp", "Cc", "Cs"]).filter(
        lambda c: c != "+" and not c.isspace()
    ),
    min_size=1,
    max_size=30,
)
EXTENSION = st.text(st.characters(codec="utf-8", min_codepoint=0x20), min_size=1, max_size=20)


@settings(max_examples=200, deadline=None)
@given(
    origin=ORIGINS,
    size=st.integers(0, 2**64 - 1),
    root=st.binary(min_size=32, max_size=32),
    extensions=st.lists(EXTENSION, max_size=3).map(tuple),
)
def test_checkpoints_round_trip_through_text_and_signature(
    origin: str, size: int, root: bytes, extensions: tuple[str, ...]
) -> None:
    cp = Checkpoint(origin=origin, size=size, root=root, extensions=extensions)
    assert parse_checkpoint(cp.text()) == cp
    signer = signer_from_seed(origin, hashlib.sha256(origin.encode()).digest())
    signed = open_checkpoint(sign_checkpoint(cp, signer), [signer.verifier], origin=origin)
    assert signed.checkpoint == cp and signed.signed_by == (signer.verifier,)


@settings(max_examples=300, deadline=None)
@given(
    st.lists(
        st.sampled_from([ORIGIN, "0", "00", "7", "12", "-3", " ", "", "\r", "=", "AAAA", "x"])
        | st.just(base64.b64encode(ROOT).decode()),
        min_size=0,
        max_size=6,
    ),
    st.booleans(),
)
def test_a_checkpoint_has_one_spelling(lines: list[str], final_newline: bool) -> None:
    text = "\n".join(lines) + ("\n" if final_newline else "")
    try:
        cp = parse_checkpoint(text)
    except CheckpointError:
        return
    try:
        again = cp.text()
    except CheckpointError:  # an origin we read (as clients must) but never write: not a key name
        return
    assert again == text


# --- Signed checkpoints, adversarial ------------------------------------------------------------------


def _tree(n: int) -> tuple[Checkpoint, dict[tuple[int, int], bytes]]:
    leaves = [leaf_hash(f"delivery {i}".encode()) for i in range(n)]
    frontier, done = Frontier().append(leaves)
    store = {(0, i): h for i, h in enumerate(leaves)} | {(x.level, x.index): x.hash for x in done}
    return Checkpoint(origin=ORIGIN, size=n, root=frontier.root()), store


def test_open_checkpoint_checks_key_body_and_origin() -> None:
    cp, _ = _tree(5)
    note = sign_checkpoint(cp, LOG)
    signed = open_checkpoint(note.encode(), [LOG.verifier], origin=ORIGIN)
    assert signed.checkpoint == cp and signed.note == note
    with pytest.raises(CheckpointError, match=re.escape("not the expected 'other.example/log'")):
        open_checkpoint(note, [LOG.verifier], origin="other.example/log")
    with pytest.raises(UnverifiedNote):  # signed by another log's key
        open_checkpoint(
            sign_checkpoint(cp, generate_signer("x.example")), [LOG.verifier], origin=ORIGIN
        )
    with pytest.raises(UnverifiedNote):  # same key name, another key
        open_checkpoint(sign_checkpoint(cp, generate_signer(ORIGIN)), [LOG.verifier], origin=ORIGIN)
    with pytest.raises(BadSignature):  # the size edited after signing
        open_checkpoint(note.replace("\n5\n", "\n6\n"), [LOG.verifier], origin=ORIGIN)
    bad_body = sign_note(f"{ORIGIN}\n05\n{base64.b64encode(cp.root).decode()}\n", LOG)
    with pytest.raises(CheckpointError, match="leading zeros"):  # signed, but not a checkpoint
        open_checkpoint(bad_body, [LOG.verifier], origin=ORIGIN)


def test_a_later_checkpoint_must_extend_the_earlier_one() -> None:
    old, _ = _tree(6)
    new, store = _tree(11)
    proof = assemble(consistency_plan(6, 11), store)
    verify_consistent(old, new, proof)
    with pytest.raises(ProofError, match="went down from 11 to 6"):  # a rolled-back log
        verify_consistent(new, old, proof)
    forked = Checkpoint(origin=ORIGIN, size=6, root=hashlib.sha256(b"fork").digest())
    with pytest.raises(ProofError, match="two different roots for tree size 6"):
        verify_consistent(old, forked, [])
    with pytest.raises(ProofError):  # a rewritten history with a proof of its own
        verify_consistent(forked, new, proof)
    with pytest.raises(CheckpointError, match="different logs"):
        verify_consistent(old, Checkpoint(origin="x", size=11, root=new.root), proof)


def test_tlog_scales_verifies_our_checkpoints_and_we_verify_theirs() -> None:
    cp, _ = _tree(9)
    vkey = Vkey.from_string(format_verifier_key(LOG.verifier))
    assert vkey.key_id == int.from_bytes(LOG.key_id, "big")
    theirs = TlogCheckpoint.from_text(sign_checkpoint(cp, LOG))
    assert (theirs.origin, theirs.size, theirs.root_hash) == (cp.origin, cp.size, cp.root)
    theirs.verify(vkey)  # raises if the signature does not verify
    # The other way: a checkpoint they sign with our key opens here, byte for byte the same note.
    their_signer = PlainEd25519Signer(ORIGIN, LOG.private_key)
    assert their_signer.vkey.serialize() == format_verifier_key(LOG.verifier)
    their_note = TlogCheckpoint.make_signed(ORIGIN, cp.size, cp.root, [their_signer]).serialize()
    assert their_note == sign_checkpoint(cp, LOG)
    assert open_checkpoint(their_note, [LOG.verifier], origin=ORIGIN).checkpoint == cp
    # A body they would accept, signed by someone else, is refused here.
    other = PlainEd25519Signer(ORIGIN, generate_signer(ORIGIN).private_key)
    forged = TlogCheckpoint.make_signed(ORIGIN, cp.size, cp.root, [other]).serialize()
    with pytest.raises(UnverifiedNote):
        open_checkpoint(forged, [LOG.verifier], origin=ORIGIN)
