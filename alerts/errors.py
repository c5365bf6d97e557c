"""Errors of the alerts package.

    AlertsError
    ├── AlertNotFound        an alert id that does not exist (HTTP 404)
    ├── InvalidAlertQuery    a filter, cursor or body the caller got wrong (HTTP 400)
    ├── IllegalTransition    e.g. acknowledging a resolved alert (HTTP 409)
    └── ReconcileError       reconciliation cannot run
        ├── NotConfigured    no API credentials for the provider (HTTP 400)
        └── ProviderApiError the provider's API failed or answered nonsense (HTTP 502); ``url``
                             is the API URL it called (no credentials, no query)

Messages never contain API keys, webhook URLs or routing keys. A provider API's own URL is not a
secret and is named, so on-call can tell a wrong base URL from a provider outage.
"""

from __future__ import annotations

__all__ = [
    "AlertNotFound",
    "AlertsError",
    "IllegalTransition",
    "InvalidAlertQuery",
    "NotConfigured",
    "ProviderApiError",
    "ReconcileError",
]


class AlertsError(Exception):
    pass


class AlertNotFound(AlertsError):
    pass


class InvalidAlertQuery(AlertsError):
    pass


class IllegalTransition(AlertsError):
    pass


class ReconcileError(AlertsError):
    pass


class NotConfigured(ReconcileError):
    pass


class ProviderApiError(ReconcileError):
    def __init__(self, message: str, *, url: str = "") -> None:
        super().__init__(message)
        self.url = url
