"""The console benchmark still runs: a tiny log, a few requests per page, every page's queries
explained. The numbers mean nothing here; the wiring does."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

from tests.conftest import PG_BASE, REDIS_URL

ROOT = Path(__file__).resolve().parents[2]
PAGES = {
    "deliveries",
    "deliveries_by_event_type",
    "deliveries_by_object",
    "deliveries_older_page",
    "deliveries_time_window",
    "deliveries_dead_letters",
    "delivery",
    "object_timeline",
    "alerts_open",
    "alert",
    "health",
}


def test_console_benchmark_tiny(tmp_path: Path) -> None:
    env = {
        **os.environ,
        "LEDGERHOOK_BENCH_RESULTS": str(tmp_path),
        "LEDGERHOOK_BENCH_PG": PG_BASE,
        "LEDGERHOOK_BENCH_REDIS": REDIS_URL,
    }
    args = ["--count", "300", "--requests", "3", "--warmup", "1", "--alerts", "3"]
    proc = subprocess.run(
        [sys.executable, "-m", "bench.console", *args, "--name", "console"],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=240,
        check=False,
    )
    assert proc.returncode == 0, proc.stderr[-3000:] + proc.stdout[-2000:]
    r = json.loads((tmp_path / "console.json").read_text())
    assert set(r["pages"]) == PAGES == set(r["plans"])
    for name, page in r["pages"].items():
        assert page["statuses"] == {"200": 3}, name
        assert page["p95_ms"] > 0
        assert r["plans"][name]["status"] == 200 and r["plans"][name]["statements"] >= 3
    assert sum(r["outcomes"].values()) == 300
    assert r["sequencer"]["leaves"] == 300  # the health and proof reads meet a real tree
    assert "p95 < 100 ms on every page" in proc.stdout
