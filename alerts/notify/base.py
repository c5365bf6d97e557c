"""What every notifier shares: its failure type and the text of an alert."""

from __future__ import annotations

from alerts.lifecycle import Alert

__all__ = ["NotifyFailed", "headline"]


class NotifyFailed(Exception):
    """The channel refused or failed; the message is safe to store (no URL, no key)."""


def headline(alert: Alert, action: str) -> str:
    verb = {"trigger": "OPEN", "acknowledge": "ACKNOWLEDGED", "resolve": "RESOLVED"}[action]
    return f"[{verb}] [{alert.severity}] {alert.rule} #{alert.id}: {alert.summary}"
