"""The Sentry notifier for real (SDK + capturing transport), in a child process of its own.

``sentry_sdk.init`` is process-wide, so it runs in a subprocess that prints what would be sent.
"""

from __future__ import annotations

import json
import subprocess
import sys
import textwrap

CHILD = textwrap.dedent(
    """
    import json
    from datetime import UTC, datetime
    import sentry_sdk
    from sentry_sdk.transport import Transport
    from alerts.lifecycle import Alert
    from alerts.notify import channels, sentry
    from alerts.notify.base import NotifyFailed
    from ledgerhook.observability import init_sentry
    from ledgerhook.settings import Secret, Settings

    sent = []

    class Capture(Transport):
        def capture_envelope(self, envelope):
            event = envelope.get_event()
            if event is not None:
                sent.append(event)

    settings = Settings(
        database_url=Secret("postgresql://x@127.0.0.1/y"),
        sentry_dsn=Secret("https://public@sentry.invalid/1"),
    )
    now = datetime(2026, 1, 1, tzinfo=UTC)
    alert = Alert(
        id=77, rule="fetch_back_mismatch", severity="critical", provider="chargebee",
        subject="chargebee:default:ev_1", summary="delivery 5 differs", status="open",
        first_seen=now, last_seen=now, count=1, delivery_ids=[5], evidence={},
        acknowledged_at=None, acknowledged_by=None, resolved_at=None, resolved_by=None,
        resolution=None,
    )
    try:
        sentry.send(settings, alert)
        uninitialised = "sent"
    except NotifyFailed as exc:
        uninitialised = str(exc)
    assert init_sentry(settings, "worker", transport=Capture) is True
    sentry.send(settings, alert)
    sentry_sdk.flush()
    print(json.dumps({"uninitialised": uninitialised, "channels": channels(settings), "sent": sent},
                     default=str))
    """
)


def test_sentry_notifier_sends_a_tagged_message() -> None:
    out = subprocess.run(
        [sys.executable, "-c", CHILD], capture_output=True, text=True, timeout=60, check=True
    )
    result = json.loads(out.stdout.strip().splitlines()[-1])
    assert result["uninitialised"] == "sentry is not initialised"  # retried, not counted as sent
    assert result["channels"] == ["sentry"]
    (event,) = result["sent"]
    assert event["level"] == "error"
    assert "fetch_back_mismatch #77" in event["message"]
    tags = event["tags"]
    assert tags["alert_rule"] == "fetch_back_mismatch"
    assert tags["alert_severity"] == "critical"
    assert tags["alert_provider"] == "chargebee"
    assert tags["alert_id"] == "77"
