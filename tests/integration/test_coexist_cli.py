"""``ledgerhook migration`` as an operator runs it: import links and prices, plan, report with
progress, the rollout gate failing then passing, cut over, roll back, refusals with reasons."""

from __future__ import annotations

import os
import subprocess
import sys
import time
from pathlib import Path

import asyncpg
import msgspec

from ledgerhook.settings import Settings
from tests.conftest import CHECKPOINT_KEY
from tests.integration.coexist_helpers import (
    DAY,
    apply_events,
    cb_subscription,
    links_csv,
    pair_rows,
    stripe_customer,
    stripe_subscription,
    tag,
)


def _cli(env: dict[str, str], *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "ledgerhook.cli", "migration", *args],
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )


async def test_migration_commands(
    fresh_settings: Settings, fresh_pool: asyncpg.Pool, tmp_path: Path
) -> None:
    t = tag()
    now = int(time.time())
    cut = now - now % DAY + DAY  # the next midnight UTC: a period boundary
    env = {
        **os.environ,
        "LEDGERHOOK_DATABASE_URL": fresh_settings.database_url.reveal(),
        "LEDGERHOOK_CHECKPOINT_KEY": CHECKPOINT_KEY,
        "LEDGERHOOK_LOG_FORMAT": "text",
        "LEDGERHOOK_STRIPE_WEBHOOK_SECRETS": "whsec_cli",
        "LEDGERHOOK_STRIPE_ACCOUNT": "acct_test",
        "LEDGERHOOK_CHARGEBEE_BASIC_AUTH": "u:p",
        "LEDGERHOOK_CHARGEBEE_SITE": "acme-test",
    }
    v = (now - 10 * DAY) * 1000
    term = {"term_start": cut - 30 * DAY, "term_end": cut - 1}
    trial = {
        "status": "trialing",
        "trial_end": cut,
        "period_start": now - 9 * DAY,
        "period_end": cut,
    }
    await apply_events(
        fresh_pool,
        [
            ("chargebee", cb_subscription(customer_id=f"a{t}", sub_id=f"as{t}", version=v, **term)),
            ("chargebee", cb_subscription(customer_id=f"b{t}", sub_id=f"bs{t}", version=v, **term)),
            ("stripe", stripe_customer(cus_id=f"cus_a{t}", created=now - 9 * DAY)),
            ("stripe", stripe_customer(cus_id=f"cus_b{t}", created=now - 9 * DAY)),
            (
                "stripe",
                stripe_subscription(
                    sub_id=f"sub_a{t}", cus_id=f"cus_a{t}", created=now - 9 * DAY, **trial
                ),
            ),  # type: ignore[arg-type]
            (
                "stripe",
                stripe_subscription(
                    sub_id=f"sub_b{t}",
                    cus_id=f"cus_b{t}",
                    created=now - 9 * DAY,
                    amount=8_900,
                    **trial,
                ),
            ),  # type: ignore[arg-type]
        ],
    )
    cohort = f"wave-{t}"
    good = links_csv(
        pair_rows(cohort, f"a{t}", f"cus_a{t}", f"as{t}", f"sub_a{t}")
        + pair_rows(cohort, f"b{t}", f"cus_b{t}", f"bs{t}", f"sub_b{t}")
    )
    (tmp_path / "bad.csv").write_bytes(good + b'wave,customer,chargebee,"unterminated\n')
    (tmp_path / "links.csv").write_bytes(good)
    (tmp_path / "prices.csv").write_bytes(
        b"source_provider,source_price,target_provider,target_price\nchargebee,team-EUR-monthly,stripe,price_team\n"
    )

    bad = _cli(env, "link", str(tmp_path / "bad.csv"))
    assert bad.returncode == 1 and "line 6: malformed CSV" in bad.stderr
    ok = _cli(env, "link", str(tmp_path / "links.csv"), "--actor", "alice")
    assert ok.returncode == 0, ok.stderr
    assert "4 lines: 4 linked, 0 already linked" in ok.stdout
    assert _cli(env, "prices", str(tmp_path / "prices.csv")).returncode == 0
    plan = _cli(
        env,
        "plan",
        "--cohort",
        cohort,
        "--at",
        time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(cut)),
    )
    assert plan.returncode == 0, plan.stderr

    report = _cli(env, "report", "--cohort", cohort)
    assert report.returncode == 0, report.stderr
    assert (
        "pairs      4 (2 customers, 2 subscriptions): 2 matched, 1 explained, 1 mismatched"
        in report.stdout
    )
    assert "planned: the source is authoritative" in report.stdout
    assert (
        f"[mismatch] chargebee/acme-test/bs{t} -> stripe/acct_test/sub_b{t}: amount: 9900 vs 8900"
        in report.stdout
    )
    assert f"verify {cohort}: run " in report.stderr  # progress summary on stderr
    csv_out = _cli(env, "report", "--cohort", cohort, "--format", "csv")
    lines = csv_out.stdout.splitlines()
    assert lines[0].startswith("pair_key,kind,billing_account,source,target,verdict,check")
    assert any(",amount,mismatch,9900,8900," in ln for ln in lines)
    js = msgspec.json.decode(_cli(env, "report", "--cohort", cohort, "--format", "json").stdout)
    assert js["report"]["changes"]["unchanged"] == 4 and len(js["items"]) == 2

    gate = _cli(env, "verify", "--cohort", cohort)
    assert gate.returncode == 1
    assert "NOT verified" in gate.stderr and "1 linked pair(s) mismatched" in gate.stderr
    assert "EUR: priced MRR 19800 on the source, 18800 on the target" in gate.stderr

    await apply_events(
        fresh_pool,
        [
            (
                "stripe",
                stripe_subscription(
                    sub_id=f"sub_b{t}",
                    cus_id=f"cus_b{t}",
                    created=now - 60,
                    event_type="customer.subscription.updated",
                    **trial,  # type: ignore[arg-type]
                ),
            )
        ],
    )
    gate = _cli(env, "verify", "--cohort", cohort)
    assert gate.returncode == 0, gate.stderr + gate.stdout
    assert "since run" in gate.stdout and "1 changed" in gate.stdout

    assert _cli(env, "cutover", "--cohort", cohort, "--note", "go").returncode == 0
    again = _cli(env, "cutover", "--cohort", cohort)
    assert again.returncode == 1 and "already cut over" in again.stderr
    assert _cli(env, "rollback", "--cohort", cohort, "--actor", "bob").returncode == 0
    status = _cli(env, "status", "--cohort", cohort)
    assert status.returncode == 0
    history = [ln for ln in status.stdout.splitlines() if " effective " in ln]
    assert [ln.split()[2] for ln in history] == ["plan", "cutover", "rollback"]
    assert "rolled back: the source is authoritative" in status.stdout
    assert history[2].endswith("by bob")
    report = _cli(env, "report", "--cohort", cohort)
    assert "rolled back: the source is authoritative" in report.stdout

    past = _cli(env, "plan", "--cohort", cohort, "--at", "2020-01-01T00:00:00Z")
    assert past.returncode == 1 and "must be in the future" in past.stderr
    nobody = _cli(env, "cutover", "--account", f"nobody{t}", "--at", "2020-01-01T00:00:00Z")
    assert nobody.returncode == 1 and "has no link" in nobody.stderr
