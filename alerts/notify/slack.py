"""A Slack-compatible incoming webhook (``LEDGERHOOK_ALERTS__SLACK_WEBHOOK_URL``): one JSON POST.

The webhook URL is itself the credential, so it never appears in errors or logs.
"""

from __future__ import annotations

import httpx

from alerts.lifecycle import Alert
from alerts.notify.base import NotifyFailed, headline
from ledgerhook.settings import Settings

__all__ = ["send"]


async def send(client: httpx.AsyncClient, settings: Settings, alert: Alert, action: str) -> None:
    url = settings.alerts.slack_webhook_url
    if not url:
        raise NotifyFailed("slack webhook not configured")
    text = f"{headline(alert, action)}\nsubject: {alert.subject} · count: {alert.count}"
    resp = await client.post(url.reveal(), json={"text": text})
    if resp.status_code >= 300:
        raise NotifyFailed(f"slack answered HTTP {resp.status_code}")
