"""Sentry for real (the SDK with a capturing transport), in a child process of its own.

``sentry_sdk.init`` patches libraries process-wide, so it runs in a subprocess; the child prints
every event the SDK would have sent, and the test reads them.
"""

from __future__ import annotations

import json
import subprocess
import sys
import textwrap

CHILD = textwrap.dedent(
    """
    import json, logging, sys
    import sentry_sdk
    from sentry_sdk.transport import Transport
    from ledgerhook.observability import delivery_scope, init_sentry
    from ledgerhook.settings import Secret, Settings

    sent = []

    class Capture(Transport):
        def capture_envelope(self, envelope):
            event = envelope.get_event()
            if event is not None:
                sent.append(event)

    settings = Settings(
        database_url=Secret("postgresql://lh:db-password-xyz@127.0.0.1/ledgerhook"),
        sentry_dsn=Secret("https://public@sentry.invalid/1"),
        stripe_webhook_secrets=(Secret("whsec_very_secret_value_1"),),
        chargebee_basic_auth=(Secret("cbhook:chargebee-pass-2"),),
    )
    disabled = init_sentry(Settings(database_url=Secret("postgresql://x/y")), "api")
    assert disabled is False
    assert init_sentry(settings, "worker", transport=Capture) is True

    def apply(delivery_id):
        secret = "whsec_very_secret_value_1"
        raise RuntimeError(f"cannot apply with {secret} and cbhook:chargebee-pass-2")

    with delivery_scope(42, job_id="lh:delivery:42"):
        try:
            apply(42)
        except RuntimeError:
            sentry_sdk.capture_exception()
    try:
        apply(7)
    except RuntimeError:
        sentry_sdk.capture_exception()
    from ledgerhook.logs import bind
    with bind(delivery_id=99, job_try=2):
        logging.getLogger("processors.worker").error("dead-lettered with whsec_very_secret_value_1")
    sentry_sdk.flush()
    print(json.dumps(sent, default=str))
    """
)


def test_sentry_events_carry_delivery_tag_and_no_secrets() -> None:
    out = subprocess.run(
        [sys.executable, "-c", CHILD], capture_output=True, text=True, timeout=60, check=False
    )
    assert out.returncode == 0, out.stderr
    events = json.loads(out.stdout.strip().splitlines()[-1])
    assert len(events) == 3
    first, second, logged = events
    assert first["tags"]["delivery_id"] == "42"
    assert first["tags"]["job_id"] == "lh:delivery:42"
    assert first["tags"]["component"] == "worker"
    # The tag belongs to the scope of that delivery only.
    assert "delivery_id" not in second.get("tags", {})
    # Ids bound to the log context (as the worker's job does) become tags of logged errors.
    assert logged["tags"]["delivery_id"] == "99"
    assert logged["tags"]["job_try"] == "2"
    text = json.dumps(events)
    for secret in ("whsec_very_secret_value_1", "chargebee-pass-2", "db-password-xyz"):
        assert secret not in text
    assert "[Filtered]" in first["exception"]["values"][0]["value"]
    # Frame locals (which held the secret) are not collected at all.
    frames = first["exception"]["values"][0]["stacktrace"]["frames"]
    assert all("vars" not in f for f in frames)
