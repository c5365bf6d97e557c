"""Which role each kind of action needs: the one table the API's guards and the console read.

Roles are ordered admin ⊇ oncall ⊇ auditor (:func:`audit.tokens.role_allows`). No role can change
the audit log; the actions below change only billing state (a replay) or alert status.
"""

from __future__ import annotations

from audit.tokens import Role

__all__ = ["ACKNOWLEDGE", "READ", "RECONCILE", "REPLAY", "RESOLVE"]

# Every read: the log, rejections, exports, billing state, alerts.
READ: Role = "auditor"
# On-call's alert status changes.
ACKNOWLEDGE: Role = "oncall"
RESOLVE: Role = "oncall"
# Re-running a delivery through the processors, and reconciling against a provider's API.
REPLAY: Role = "admin"
RECONCILE: Role = "admin"
