"""``ledgerhook run`` for real: migrate, serve, work, and stop cleanly on Ctrl-C."""

from __future__ import annotations

import json
import os
import signal
import time
import urllib.request

from ledgerhook.demo.story import stripe_signature
from tests.conftest import STRIPE_SECRET, fixture_bytes, with_event_id
from tests.integration.run_helpers import ledgerhook_run, wait_outcome


def _gone(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return True
    return False


def test_run_serves_processes_and_stops_on_ctrl_c() -> None:
    with ledgerhook_run("runcli") as lh:
        body = with_event_id(fixture_bytes("stripe", "invoice_paid.json"), "evt_run_cli_1")
        request = urllib.request.Request(
            lh.url + "/webhooks/stripe",
            data=body,
            headers={
                "Stripe-Signature": stripe_signature(STRIPE_SECRET, int(time.time()), body),
                "Content-Type": "application/json",
            },
            method="POST",
        )
        with urllib.request.urlopen(request, timeout=10) as resp:
            assert resp.status == 200
            delivery_id = int(json.loads(resp.read())["delivery_id"])

        assert wait_outcome(lh.database_url, delivery_id) == "applied", lh.output()

        # The API's /metrics shows the worker's metrics too (one multiprocess directory).
        with urllib.request.urlopen(lh.url + "/metrics", timeout=5) as resp:
            text = resp.read().decode()
        assert 'ledgerhook_events_processed_total{outcome="applied",provider="stripe"}' in text

        pids = lh.child_pids()
        assert len(pids) == 2
        lh.proc.send_signal(signal.SIGINT)
        started = time.monotonic()
        assert lh.proc.wait(timeout=15) == 0, lh.output()
        assert time.monotonic() - started < 10
        assert all(_gone(p) for p in pids)
        assert ("ledgerhook.run", "stopped") in lh.messages()


def test_run_exits_non_zero_when_a_child_dies() -> None:
    with ledgerhook_run("runcrash") as lh:
        api, worker = lh.child_pids()
        os.kill(worker, signal.SIGKILL)
        code = lh.proc.wait(timeout=30)
        assert code != 0
        assert "worker exited unexpectedly" in lh.output()
        assert _gone(api)
