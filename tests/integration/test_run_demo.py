"""``ledgerhook demo`` end to end against a real ``ledgerhook run``."""

from __future__ import annotations

import subprocess
import sys

from tests.conftest import free_port
from tests.integration.run_helpers import REPO, ledgerhook_run


def test_demo_story_plays_out() -> None:
    standin = free_port()
    with ledgerhook_run("demo", standin_port=standin) as lh:
        out = subprocess.run(
            [
                sys.executable,
                "-m",
                "ledgerhook.cli",
                "demo",
                "--url",
                lh.url,
                "--standin-port",
                str(standin),
                "--wait",
                "60",
            ],
            env=lh.env,
            cwd=REPO,
            capture_output=True,
            text=True,
            timeout=150,
            check=False,
        )
        assert out.returncode == 0, out.stdout + out.stderr + lh.output()
    text = out.stdout
    assert (
        "deliveries stored      10 (+1 backfilled by reconciliation), 1 recognised as duplicate"
        in text
    )
    assert "applied 8, duplicate 1, stale 1" in text or "applied 9" in text
    assert ": active, MRR 49.00 EUR" in text  # upgraded; the late activation did not undo it
    assert "MRR 199.00 EUR" in text  # the Chargebee change applied
    assert "customer email         ada.billing@example.com" in text  # backfilled event applied
    assert "out_of_order:" in text
    assert "missing_event:" in text
    assert "audit chain            verified" in text
    # The migration story: verification finds Linus's price, Marie is charged twice.
    assert "Migration story: three Chargebee customers moving to Stripe" in text
    assert "6 linked pairs, 3 matched, 2 explained, 1 mismatched" in text
    assert "[mismatch] chargebee/" in text and "linussub -> stripe/" in text
    assert "amount 9900 vs 8900" in text
    assert "[critical] coexist_double_billing: billing account" in text
    # Nothing secret in what the demo prints.
    assert "whsec_" not in text and "lh_" not in text.replace("ledgerhook", "")
