"""Errors of the audit package.

    AuditError
    ├── NotFound            a delivery, rejection or checkpoint id that does not exist
    ├── InvalidQuery        a filter or cursor the caller got wrong (HTTP 400)
    ├── CheckpointKeyError  no usable checkpoint key (production without LEDGERHOOK_CHECKPOINT_KEY)
    ├── NotVerified         a checkpoint was asked for but the log does not verify (HTTP 409)
    ├── TokenError          a token CLI request that cannot be done (name taken, unknown name)
    ├── AuthError           the read/ops API refused a request
    │   ├── Unauthenticated     missing, malformed, unknown or revoked bearer token (HTTP 401)
    │   ├── Forbidden           a valid token whose role is too low for the route (HTTP 403)
    │   └── TooManyAttempts     too many failed authentications from one address (HTTP 429)
    ├── MerkleError         the Merkle tree layer (audit.merkle) refused something
    │   ├── InvalidRange        a proof or root asked for sizes/indexes that have none
    │   │                       (index >= size, size1 > size2, negative): the caller's mistake
    │   ├── MissingNode         assemble() lacks a subtree hash its plan needs: storage is
    │   │                       behind or incomplete (the server's fault, not the caller's)
    │   └── ProofError          an inclusion or consistency proof that does not verify, for the
    │                           reason in its message (wrong length, hash size, root, rollback)
    ├── NoteError           a C2SP signed note or note key refused (audit.note)
    │   ├── NoteKeyError        a key string or key name not in the note formats, an unsupported
    │   │                       algorithm, a key id that does not match, or ambiguous verifiers
    │   ├── MalformedNote       text that is not exactly a signed note: layout, control
    │   │                       characters, too big, duplicate or too many signatures
    │   ├── UnverifiedNote      well formed, but signed by no known key (unknown keys only)
    │   └── BadSignature        a known key's signature does not verify: the whole note is refused
    └── CheckpointError     a checkpoint that is not exactly C2SP tlog-checkpoint text, or not
                            the origin the caller expected (audit.checkpoint_format)

A broken log is not an exception: verification returns a :class:`audit.verify.VerifyResult`.
"""

from __future__ import annotations

__all__ = [
    "AuditError",
    "AuthError",
    "BadSignature",
    "CheckpointError",
    "CheckpointKeyError",
    "Forbidden",
    "InvalidQuery",
    "InvalidRange",
    "MalformedNote",
    "MerkleError",
    "MissingNode",
    "NotFound",
    "NotVerified",
    "NoteError",
    "NoteKeyError",
    "ProofError",
    "TokenError",
    "TooManyAttempts",
    "Unauthenticated",
    "UnverifiedNote",
]


class AuditError(Exception):
    pass


class NotFound(AuditError):
    pass


class InvalidQuery(AuditError):
    pass


class NotVerified(AuditError):
    pass


class CheckpointKeyError(AuditError):
    pass


class TokenError(AuditError):
    pass


class AuthError(AuditError):
    pass


class Unauthenticated(AuthError):
    pass


class Forbidden(AuthError):
    pass


class TooManyAttempts(AuthError):
    def __init__(self, message: str, retry_after: int) -> None:
        super().__init__(message)
        self.retry_after = retry_after


class MerkleError(AuditError):
    pass


class InvalidRange(MerkleError):
    pass


class MissingNode(MerkleError):
    pass


class ProofError(MerkleError):
    pass


class NoteError(AuditError):
    pass


class NoteKeyError(NoteError):
    pass


class MalformedNote(NoteError):
    pass


class UnverifiedNote(NoteError):
    pass


class BadSignature(NoteError):
    pass


class CheckpointError(AuditError):
    pass
