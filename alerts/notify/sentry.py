"""Sentry: ``capture_message`` with the alert's rule, severity, provider and id as tags.

Sentry is initialised once by :func:`ledgerhook.observability.init_sentry` (with its scrubbing);
when it is not initialised the message would be dropped silently, so that is reported as a failure
and retried rather than counted as delivered.
"""

from __future__ import annotations

import sentry_sdk

from alerts.lifecycle import Alert
from alerts.notify.base import NotifyFailed, headline
from ledgerhook.settings import Settings

__all__ = ["send"]

_LEVELS = {"info": "info", "warning": "warning", "critical": "error"}


def send(settings: Settings, alert: Alert) -> None:
    if not sentry_sdk.is_initialized():
        raise NotifyFailed("sentry is not initialised")
    with sentry_sdk.new_scope() as scope:
        scope.set_tag("alert_rule", alert.rule)
        scope.set_tag("alert_severity", alert.severity)
        scope.set_tag("alert_provider", alert.provider or "none")
        scope.set_tag("alert_id", str(alert.id))
        scope.fingerprint = ["ledgerhook-alert", alert.rule, alert.subject]
        sentry_sdk.capture_message(headline(alert, "trigger"), level=_LEVELS[alert.severity])  # type: ignore[arg-type]
