"""Which role each kind of action needs: the one table the API's guards and the console read.

Roles are ordered admin ⊇ oncall ⊇ auditor (:func:`audit.tokens.role_allows`). No role can change
the audit log; the actions below change only billing state (a replay) or alert status.
"""

from __future__ import annotations

from audit.tokens import Role

__all__ = [
    "ACKNOWLEDGE",
    "CHECKPOINT",
    "MIGRATE",
    "READ",
    "RECONCILE",
    "REPLAY",
    "RESOLVE",
    "SYNC",
    "VERIFY_MIGRATION",
]

# Every read: the log, rejections, exports, billing state, alerts, migration links and reports.
READ: Role = "auditor"
# On-call's alert status changes.
ACKNOWLEDGE: Role = "oncall"
RESOLVE: Role = "oncall"
# Re-running a delivery through the processors, and reconciling against a provider's API.
REPLAY: Role = "admin"
RECONCILE: Role = "admin"
# Signing a checkpoint of the log now (it only appends a signed tree head; scheduled anyway).
CHECKPOINT: Role = "admin"
# Pulling objects from a provider's API into state (initial sync) and checking state against it.
SYNC: Role = "admin"
# Changing the migration: links, the price map, who is authoritative for a cohort or account.
MIGRATE: Role = "admin"
# Comparing a cohort's linked pairs side by side now (reads both states, writes only the report).
VERIFY_MIGRATION: Role = "oncall"
