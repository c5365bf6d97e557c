"""Errors of the audit package.

    AuditError
    ├── NotFound            a delivery, rejection or checkpoint id that does not exist
    ├── InvalidQuery        a filter or cursor the caller got wrong (HTTP 400)
    └── CheckpointKeyError  no usable checkpoint key (production without LEDGERHOOK_CHECKPOINT_KEY)

Chain breaks are not exceptions: verification returns a :class:`audit.verify.VerifyResult`.
"""

from __future__ import annotations

__all__ = ["AuditError", "CheckpointKeyError", "InvalidQuery", "NotFound"]


class AuditError(Exception):
    pass


class NotFound(AuditError):
    pass


class InvalidQuery(AuditError):
    pass


class CheckpointKeyError(AuditError):
    pass
