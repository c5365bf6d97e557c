"""``ledgerhook demo`` end to end against a real ``ledgerhook run``."""

from __future__ import annotations

import asyncio
import re
import subprocess
import sys

import asyncpg

from tests.conftest import free_port
from tests.integration.run_helpers import REPO, ledgerhook_run


def _database_view(
    database_url: str, leave_out: list[int]
) -> tuple[dict[str, int], list[tuple[str, bool]]]:
    """Outcomes of the deliveries in the (demo's own) database but ``leave_out``, and its tokens
    (name, revoked)."""

    async def read() -> tuple[dict[str, int], list[tuple[str, bool]]]:
        conn = await asyncpg.connect(database_url)
        try:
            rows = await conn.fetch(
                "SELECT coalesce(p.outcome, 'unprocessed') AS outcome, count(*) AS n "
                "FROM audit.deliveries d LEFT JOIN processors.processed p ON p.delivery_id = d.id "
                "WHERE d.id <> ALL($1::bigint[]) GROUP BY 1",
                leave_out,
            )
            tokens = await conn.fetch(
                "SELECT t.name, r.token_id IS NOT NULL AS revoked FROM audit.api_tokens t "
                "LEFT JOIN audit.api_token_revocations r ON r.token_id = t.id"
            )
        finally:
            await conn.close()
        return {r["outcome"]: r["n"] for r in rows}, [(t["name"], t["revoked"]) for t in tokens]

    return asyncio.run(read())


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
        # The migration story's deliveries (printed after its heading) have a summary of their own.
        migration = out.stdout.split("Migration story:", 1)[1]
        outcomes, tokens = _database_view(
            lh.database_url, [int(n) for n in re.findall(r"delivery #(\d+)", migration)]
        )
    text = out.stdout
    assert (
        "deliveries stored      10 (+1 backfilled by reconciliation), 1 recognised as duplicate"
        in text
    )
    # The summary counts every delivery of the story, the backfilled one too: what the API shows.
    printed = re.search(r"processing outcomes +(.+)", text)
    assert printed is not None
    counts = {k: int(v) for v, k in (part.split(" ")[::-1] for part in printed[1].split(", "))}
    assert counts == outcomes == {"applied": 9, "duplicate": 1, "stale": 1}
    # The admin token the demo made for itself does not outlive it.
    assert tokens and all(revoked for _, revoked in tokens), tokens
    assert ": active, MRR 49.00 EUR" in text  # upgraded; the late activation did not undo it
    assert "MRR 199.00 EUR" in text  # the Chargebee change applied
    assert "customer email         ada.billing@example.com" in text  # backfilled event applied
    assert "out_of_order:" in text
    assert "missing_event:" in text
    assert "audit log              verified: tree OK" in text
    assert "proof of inclusion     delivery" in text and "checked with the public key" in text
    # The migration story: verification finds Linus's price, Marie is charged twice.
    assert "Migration story: three Chargebee customers moving to Stripe" in text
    assert "6 linked pairs, 3 matched, 2 explained, 1 mismatched" in text
    assert "[mismatch] chargebee/" in text and "linussub -> stripe/" in text
    assert "amount 9900 vs 8900" in text
    assert "[critical] coexist_double_billing: billing account" in text
    # Nothing secret in what the demo prints.
    assert "whsec_" not in text and "lh_" not in text.replace("ledgerhook", "")
