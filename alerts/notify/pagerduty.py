"""PagerDuty Events API v2: trigger on open, acknowledge, resolve; ``dedup_key`` = the alert id.

The same dedup key on every action makes PagerDuty treat them as one incident, and a retried
trigger as the same trigger. The routing key is sent in the body only, never logged.
"""

from __future__ import annotations

import httpx

from alerts.lifecycle import Alert
from alerts.notify.base import NotifyFailed, headline
from ledgerhook.settings import Settings

__all__ = ["event", "send"]


def event(routing_key: str, alert: Alert, action: str) -> dict[str, object]:
    body: dict[str, object] = {
        "routing_key": routing_key,
        "event_action": action,
        "dedup_key": str(alert.id),
    }
    if action == "trigger":
        body["payload"] = {
            "summary": headline(alert, action)[:1024],
            "source": "ledgerhook",
            "severity": {"info": "info", "warning": "warning", "critical": "critical"}[
                alert.severity
            ],
            "component": alert.provider or "ledgerhook",
            "group": alert.rule,
            "custom_details": {
                "alert_id": alert.id,
                "subject": alert.subject,
                "count": alert.count,
                "delivery_ids": alert.delivery_ids[-20:],
            },
        }
    return body


async def send(client: httpx.AsyncClient, settings: Settings, alert: Alert, action: str) -> None:
    key = settings.alerts.pagerduty_routing_key
    if not key:
        raise NotifyFailed("pagerduty routing key not configured")
    resp = await client.post(settings.alerts.pagerduty_url, json=event(key.reveal(), alert, action))
    if resp.status_code >= 300:
        raise NotifyFailed(f"pagerduty answered HTTP {resp.status_code}")
