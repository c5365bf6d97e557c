"""Errors of the audit package.

    AuditError
    ├── NotFound            a delivery, rejection or checkpoint id that does not exist
    ├── InvalidQuery        a filter or cursor the caller got wrong (HTTP 400)
    ├── CheckpointKeyError  no usable checkpoint key (production without LEDGERHOOK_CHECKPOINT_KEY)
    ├── TokenError          a token CLI request that cannot be done (name taken, unknown name)
    └── AuthError           the read/ops API refused a request
        ├── Unauthenticated     missing, malformed, unknown or revoked bearer token (HTTP 401)
        ├── Forbidden           a valid token whose role is too low for the route (HTTP 403)
        └── TooManyAttempts     too many failed authentications from one address (HTTP 429)

Chain breaks are not exceptions: verification returns a :class:`audit.verify.VerifyResult`.
"""

from __future__ import annotations

__all__ = [
    "AuditError",
    "AuthError",
    "CheckpointKeyError",
    "Forbidden",
    "InvalidQuery",
    "NotFound",
    "TokenError",
    "TooManyAttempts",
    "Unauthenticated",
]


class AuditError(Exception):
    pass


class NotFound(AuditError):
    pass


class InvalidQuery(AuditError):
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
