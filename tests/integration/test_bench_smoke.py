"""The benchmarks still run: each script in a tiny mode (a second or two of load) against the real
PostgreSQL and Redis, with its results checked. The numbers mean nothing here; the wiring does:
signed deliveries accepted, every 2xx found in the audit log, the worker applying them.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from bench import common, loadgen
from tests.conftest import PG_BASE, REDIS_URL

ROOT = Path(__file__).resolve().parents[2]


def _have_wrk() -> bool:
    if shutil.which("wrk"):
        return True
    try:
        common.ensure_wrk()
    except SystemExit:
        return False
    return shutil.which("wrk") is not None


def _bench(tmp_path: Path, module: str, *args: str) -> dict[str, object]:
    env = {
        **os.environ,
        "LEDGERHOOK_BENCH_RESULTS": str(tmp_path),
        "LEDGERHOOK_BENCH_PG": PG_BASE,
        "LEDGERHOOK_BENCH_REDIS": REDIS_URL,
    }
    proc = subprocess.run(
        [sys.executable, "-m", f"bench.{module}", *args, "--name", module],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert proc.returncode == 0, proc.stderr[-3000:] + proc.stdout[-2000:]
    result: dict[str, object] = json.loads((tmp_path / f"{module}.json").read_text())
    return result


needs_wrk = pytest.mark.skipif(
    not _have_wrk(), reason="wrk is not installed and apt-get could not install it"
)


def test_check_acknowledged_finds_a_2xx_without_its_row() -> None:
    acked = {("stripe", "evt_1"): 1, ("stripe", "evt_2"): 2, ("chargebee", "ev_3"): 1}
    stored = {("stripe", "evt_1"): 1, ("stripe", "evt_2"): 1}
    check = common.check_acknowledged(acked, stored)
    assert not check["ok"]
    assert check["acknowledged_but_not_stored"] == 2
    assert common.check_acknowledged(
        acked, {**stored, ("stripe", "evt_2"): 2, ("chargebee", "ev_3"): 1}
    )["ok"]


def test_percentile_nearest_rank() -> None:
    values = [float(v) for v in range(1, 101)]
    assert common.percentile(values, 50) == 50.0
    assert common.percentile(values, 99) == 99.0
    assert common.percentile([], 99) == 0.0


def test_loadgen_signs_and_spreads(tmp_path: Path) -> None:
    ids = loadgen.write_request_files(tmp_path, 40, 3, run="t", host="127.0.0.1")
    assert len(set(ids)) == 40
    assert [e for _, e in loadgen.read_ids(tmp_path, 1)] == ids[1::3]
    raw = (tmp_path / "t0.req").read_bytes()
    length, _, rest = raw.partition(b"\n")
    request = rest[: int(length)]
    head, _, body = request.partition(b"\r\n\r\n")
    assert head.startswith(b"POST /webhooks/stripe/bench HTTP/1.1")
    sig = next(line for line in head.split(b"\r\n") if line.startswith(b"Stripe-Signature: "))
    ts = int(sig.split(b"t=")[1].split(b",")[0])
    assert sig.endswith(loadgen.stripe_signature(body, loadgen.STRIPE_SECRET, ts).encode())


@needs_wrk
def test_ingest_benchmark_tiny(tmp_path: Path) -> None:
    r = _bench(
        tmp_path,
        "ingest",
        "--duration",
        "1",
        "--connections",
        "4",
        "--half-duration",
        "1",
        "--half-connections",
        "4",
        "--overload-connections",
        "8",
        "--overload-duration",
        "1",
        "--expected-rate",
        "500",
    )
    summary = r["summary"]
    assert isinstance(summary, dict)
    assert summary["every_2xx_stored"] is True
    for phase in ("ingest_max", "ingest_half_rate", "ingest_overload"):
        p = r[phase]
        assert isinstance(p, dict)
        assert p["ok_2xx"] > 0
        assert p["stored_check"]["acknowledged_but_not_stored"] == 0
    assert r["postgresql"]["fsync"] == "on"  # type: ignore[index]
    assert summary["ratio_ingest_to_floor"] > 0


@needs_wrk
def test_e2e_benchmark_tiny(tmp_path: Path) -> None:
    # A rate any worker keeps up with (30/s), so the one step is sustained: this checks wiring.
    r = _bench(
        tmp_path,
        "e2e",
        "--ingest-max",
        "300",
        "--fractions",
        "0.1",
        "--step-duration",
        "2",
        "--drain",
        "20",
        "--connections",
        "4",
    )
    steps = r["steps"]
    assert isinstance(steps, list) and len(steps) == 1
    step = steps[0]
    assert step["deliveries"] > 0
    assert step["unapplied_after_drain"] == 0
    assert step["lag_s"]["p50"] > 0
    assert step["oldest_unprocessed_samples"]
    assert step["sustained"] is True


def test_e2e_search_halves_then_bisects() -> None:
    from bench.e2e import fractions_to_try

    planned = [0.2, 0.3, 0.4]
    tried: list[tuple[float, bool]] = []
    while (f := fractions_to_try(planned, tried)) is not None:
        tried.append((f, f <= 0.12))
    assert [f for f, _ in tried] == [0.2, 0.1, 0.15, 0.125]
    assert fractions_to_try(planned, [(0.2, True), (0.3, True), (0.4, True)]) is None


def test_apply_benchmark_tiny(tmp_path: Path) -> None:
    r = _bench(tmp_path, "apply", "--count", "200", "--timeout", "60")
    assert r["complete"] is True
    assert r["processed"] == 200
    assert r["events_per_s"] > 0  # type: ignore[operator]


def test_coexist_benchmark_tiny(tmp_path: Path) -> None:
    r = _bench(tmp_path, "coexist", "--accounts", "300", "--mismatch-every", "10")
    runs = r["runs"]
    assert isinstance(runs, dict)
    first, second = runs["first"], runs["second"]
    assert r["linked_pairs"] == 600 and first["pairs"] == 600
    assert first["mismatched"] == 30  # every 10th account's subscription pair
    assert second["changes"]["unchanged"] == 600 and second["changes"]["previous_run_id"]
    assert r["pass"] is True


@needs_wrk
def test_soak_tiny(tmp_path: Path) -> None:
    r = _bench(
        tmp_path,
        "soak",
        "--minutes",
        "0.05",
        "--chunk",
        "1.5",
        "--rate",
        "50",
        "--connections",
        "4",
        "--sample",
        "0.5",
    )
    rss = r["rss_kib"]
    assert isinstance(rss, dict) and set(rss) >= {"api", "worker0"}
    assert all(v["end"] > 0 for v in rss.values())
    assert r["ok_2xx"] > 0


def test_sync_benchmark_tiny(tmp_path: Path) -> None:
    r = _bench(tmp_path, "sync", "--count", "250", "--sample-every", "0.2")
    assert r["complete"] is True
    assert (r["stored"], r["applied"], r["stored_duplicates"]) == (250, 250, 0)
    assert r["cursors"] == {"customers": ["done", 3, 250]}
    assert r["objects_per_s_wall"] > 0 and r["rss_samples"]
