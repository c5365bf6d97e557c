"""Ingest benchmark: Ledgerhook's webhook edge against the HTTP floor, in one run.

Phases, all on the same server (uvicorn, same flags), same wrk settings:

1. **floor**: ``bench.noop_app`` (POST reads the body, answers 200): the most this machine's HTTP
   stack can answer with these requests, with ``--workers`` processes (and with 2 for the
   scale-out phase's floor, when that differs).
2. **ingest max**: ``ledgerhook serve`` on a fresh migrated database: verify and group-commit into
   the log. Same connections and duration as the floor.
3. **ingest half**: a constant rate of half the measured maximum, with a sequencer running (as a
   worker would): HTTP p99 must be <= 50 ms, and receipt-to-integrated (a delivery's leaf) p99
   <= 1 s, read from ``audit.leaves`` for the phase's deliveries.
4. **ingest overload**: many more connections than the maximum needs, to show what happens above
   capacity (latency bounded by back-pressure or fast 503s, never timeouts).
5. **scale-out**: ingest max again with 1, 2 and 4 API processes (``--scale-out``), each on a
   database of its own, against the floor of uvicorn with 2 workers: 2 processes must do at least
   what 1 does (appends do not serialise), and ``serve --workers 2`` must reach >= 0.40x that
   floor (the acceptance setup).

After each ingest phase every acknowledged delivery is checked against the audit log: wrk runs
one connection per thread and records (thread, request, status) for every answer (see
``bench/wrk/cycle.lua``), each request file maps those to event ids, and for every event the
number of rows in ``audit.deliveries`` must be at least the number of 2xx answers it got. A 2xx
for a delivery that is not stored is reported as a failure, whatever the load.

Deliveries are built and signed right before each phase, with distinct event ids, and each
ingest phase starts after a ``CHECKPOINT`` (:func:`bench.common.checkpoint`), so that it is not
timed while the kernel writes back the previous phase's pages.
``python -m bench.ingest --help`` for the options; results go to ``bench/results/ingest.json``.
"""

from __future__ import annotations

import argparse
import asyncio
import math
import shutil
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

from bench import common, loadgen, servers
from bench.common import WrkResult, log

HALF_RATE_P99_MS = 50.0
FLOOR_RATIO_TARGET = 0.25
INTEGRATED_P99_S = 1.0
SCALE_OUT_RATIO_TARGET = 0.40  # serve --workers 2 against the 2-worker floor


def build(wd: Path, name: str, count: int, threads: int, run: str, objects: int) -> Path:
    out = wd / name
    if out.exists():
        shutil.rmtree(out)
    t0 = time.monotonic()
    loadgen.write_request_files(
        out, max(count, threads), threads, run=f"{run}{name}", host="127.0.0.1", objects=objects
    )
    log(f"built {max(count, threads)} signed deliveries for {name} in {time.monotonic() - t0:.1f}s")
    return out


async def integration_lag(url: str, since: float, until: float) -> dict[str, Any]:
    """Receipt-to-integrated (leaf) seconds of the deliveries received in [since, until)."""
    import asyncpg

    conn = await asyncpg.connect(url)
    try:
        row = await conn.fetchrow(
            """
            SELECT count(*) AS n, count(lag) AS integrated,
                   percentile_disc(0.5) WITHIN GROUP (ORDER BY lag) AS p50,
                   percentile_disc(0.99) WITHIN GROUP (ORDER BY lag) AS p99,
                   max(lag) AS max
            FROM (SELECT extract(epoch FROM l.integrated_at - d.received_at) AS lag
                  FROM audit.deliveries d
                  LEFT JOIN audit.leaves l ON l.delivery_id = d.id
                  WHERE d.received_at >= to_timestamp($1) AND d.received_at < to_timestamp($2)) x
            """,
            since,
            until,
        )
    finally:
        await conn.close()
    assert row is not None
    return {
        "deliveries": row["n"],
        "integrated": row["integrated"],
        "p50_s": None if row["p50"] is None else round(float(row["p50"]), 4),
        "p99_s": None if row["p99"] is None else round(float(row["p99"]), 4),
        "max_s": None if row["max"] is None else round(float(row["max"]), 4),
    }


def wait_integrated(url: str, timeout: float = 60.0) -> int:
    """Seconds-bounded wait until every stored delivery is a leaf; how many are not."""
    import asyncpg

    async def left() -> int:
        conn = await asyncpg.connect(url)
        try:
            n: int = await conn.fetchval(
                "SELECT count(*) FROM audit.deliveries d "
                "WHERE NOT EXISTS (SELECT 1 FROM audit.leaves l WHERE l.delivery_id = d.id)"
            )
            return n
        finally:
            await conn.close()

    deadline = time.monotonic() + timeout
    while (n := asyncio.run(left())) and time.monotonic() < deadline:
        time.sleep(0.5)
    return n


def check(url: str, req_dir: Path, result: WrkResult) -> dict[str, Any]:
    acked = common.acknowledged(req_dir, result)
    stored = asyncio.run(common.stored_counts(url))
    return common.check_acknowledged(acked, stored)


def ensure_py_spy() -> str:
    exe = shutil.which("py-spy", path=str(common.VENV_BIN)) or shutil.which("py-spy")
    if exe:
        return exe
    log("installing py-spy into the virtual environment (pip)")
    subprocess.run(
        [
            str(common.VENV_BIN / "pip"),
            "install",
            "--quiet",
            "--disable-pip-version-check",
            "py-spy",
        ],
        check=True,
    )
    return str(common.VENV_BIN / "py-spy")


def profile_during(pid: int, seconds: int, fmt: str, out: Path) -> subprocess.Popen[bytes]:
    cmd = [
        ensure_py_spy(),
        "record",
        "--pid",
        str(pid),
        "--subprocesses",
        "--nonblocking",
        "--rate",
        "200",
        "--duration",
        str(seconds),
        "--format",
        fmt,
        "--output",
        str(out),
    ]
    return subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)


def run(args: argparse.Namespace) -> dict[str, Any]:
    common.ensure_wrk()
    run_id = common.run_id()
    queue = f"lhbench-{run_id}"
    wd = common.workdir("ingest")
    pg = asyncio.run(common.pg_settings())
    log(f"PostgreSQL fsync={pg['fsync']} synchronous_commit={pg['synchronous_commit']}")
    result: dict[str, Any] = {
        "benchmark": "ingest",
        "command": "make bench-ingest  (python -m bench.ingest " + " ".join(sys.argv[1:]) + ")",
        "machine": common.machine(),
        "postgresql": pg,
        "server": {"uvicorn_workers": args.workers, "flags": list(servers.UVICORN_FLAGS)},
        "load": {
            "generator": "wrk (one connection per thread, bench/wrk/cycle.lua)",
            "connections": args.connections,
            "duration_s": args.duration,
            "stripe_and_chargebee": "every 10th delivery is Chargebee (Basic auth), the rest Stripe (signed)",
        },
    }
    per_phase = math.ceil(args.expected_rate * args.duration)
    try:
        # 1. floor
        reqs = build(wd, "max", per_phase, args.connections, run_id, args.objects)
        port = common.free_port()
        with servers.floor(
            port, args.workers, common.server_env("postgresql://unused/x", wd, queue), wd
        ) as proc:
            proc.wait_http(f"http://127.0.0.1:{port}/health/live")
            cpu0 = common.cpu_by_group(proc.pid)
            floor = common.run_wrk(
                f"http://127.0.0.1:{port}",
                reqs,
                connections=args.connections,
                duration=args.duration,
            )
            cpu1 = common.cpu_by_group(proc.pid)
        log(floor.line("floor"))
        result["floor"] = floor.as_dict()
        result["floor"]["cpu_cores"] = common.cpu_cores(cpu0, cpu1, floor)

        # 2-4. ingest, on a database of its own
        dbname = f"lhbench_{run_id}_ingest"
        with common.database(dbname, keep=args.keep_db) as url:
            env = common.server_env(url, wd, queue)
            port = common.free_port()
            base = f"http://127.0.0.1:{port}"
            with servers.serve(port, args.workers, env, wd) as proc:
                proc.wait_http(f"{base}/health/live")
                reqs = build(wd, "max", per_phase, args.connections, run_id, args.objects)
                settled = {"max": common.checkpoint()}
                rss_start = common.rss_kib(proc.pid)
                m0 = common.scrape(base)
                cpu0 = common.cpu_by_group(proc.pid)
                top = common.run_wrk(
                    base, reqs, connections=args.connections, duration=args.duration
                )
                cpu1 = common.cpu_by_group(proc.pid)
                log(top.line("ingest max"))
                phase = top.as_dict()
                phase["cpu_cores"] = common.cpu_cores(cpu0, cpu1, top)
                phase["mean_commit_batch"] = common.mean_batch(m0, common.scrape(base))
                phase["server_cpu_ms_per_request"] = round(
                    (cpu1["server"] - cpu0["server"]) / max(top.requests, 1) * 1000, 3
                )
                phase["stored_check"] = check(url, reqs, top)
                result["ingest_max"] = phase

                half_rate = max(1.0, top.ok / (top.summary["duration_us"] / 1e6) / 2)
                count = math.ceil(half_rate * args.half_duration * 1.3) + args.half_connections
                reqs = build(wd, "half", count, args.half_connections, run_id, args.objects)
                # The sequencer integrates the maximum phase's backlog first, then keeps up.
                with servers.sequencer(env, wd) as seq:
                    left = wait_integrated(url, timeout=300)
                    log(f"sequencer integrated the backlog ({left} left)")
                    settled["half"] = common.checkpoint()
                    since = time.time()
                    half = common.run_wrk(
                        base,
                        reqs,
                        connections=args.half_connections,
                        duration=args.half_duration,
                        rate=half_rate,
                    )
                    until = time.time()
                    wait_integrated(url, timeout=60)
                    lag = asyncio.run(integration_lag(url, since, until))
                    if seq.proc.returncode not in (None, 0, -15, 143):
                        log(f"sequencer exited with {seq.proc.returncode}:\n{seq.tail()}")
                log(half.line(f"ingest @{half_rate:.0f}/s"))
                log(f"receipt to integrated at half rate: {lag}")
                phase = half.as_dict()
                phase["stored_check"] = check(url, reqs, half)
                phase["integration"] = lag
                result["ingest_half_rate"] = phase

                if args.overload_connections > 0:
                    count = math.ceil(args.expected_rate * args.overload_duration)
                    reqs = build(wd, "over", count, args.overload_connections, run_id, args.objects)
                    settled["overload"] = common.checkpoint()
                    over = common.run_wrk(
                        base,
                        reqs,
                        connections=args.overload_connections,
                        duration=args.overload_duration,
                    )
                    log(over.line("ingest overload"))
                    phase = over.as_dict()
                    phase["stored_check"] = check(url, reqs, over)
                    result["ingest_overload"] = phase

                if args.profile:
                    # Separate phases, so the profiler's own cost never shows in the numbers above.
                    for fmt, out in (("raw", "ingest.folded"), ("flamegraph", "ingest.svg")):
                        reqs = build(wd, "prof", per_phase, args.connections, run_id, args.objects)
                        prof = profile_during(
                            proc.pid, max(1, int(args.duration) - 1), fmt, common.RESULTS / out
                        )
                        common.run_wrk(
                            base, reqs, connections=args.connections, duration=args.duration
                        )
                        prof.wait(timeout=60)
                        log(f"profile written to {common.RESULTS / out}")
                result["server_rss_kib"] = {"start": rss_start, "end": common.rss_kib(proc.pid)}
                # Seconds of the CHECKPOINT before each phase (common.checkpoint).
                result["checkpoint_before_phase_s"] = settled
            if proc.proc.returncode not in (0, -15, 143):
                log(f"serve exited with {proc.proc.returncode}:\n{proc.tail()}")

        if args.scale_out:
            result["scale_out"] = scale_out(args, wd, queue, run_id)
    finally:
        common.cleanup_queue(queue)
        shutil.rmtree(wd, ignore_errors=True)

    ingest_rps = result["ingest_max"]["requests_per_s"]
    ok_rps = result["ingest_max"]["ok_2xx"] / result["ingest_max"]["duration_s"]
    ratio = ok_rps / result["floor"]["requests_per_s"]
    half_p99 = result["ingest_half_rate"]["latency_ms"]["p99"]
    checks = [
        result[k]["stored_check"]["ok"]
        for k in ("ingest_max", "ingest_half_rate", "ingest_overload")
        if k in result
    ]
    integration = result["ingest_half_rate"].get("integration", {})
    integrated_p99 = integration.get("p99_s")
    targets: dict[str, bool] = {}
    scale = result.get("scale_out", {})
    ratios = {
        k.removeprefix("api_processes_"): v["ratio_to_floor_2_workers"]
        for k, v in scale.items()
        if k.startswith("api_processes_")
    }
    if "1" in ratios and "2" in ratios:
        targets["2 API processes >= 1 API process"] = ratios["2"] >= ratios["1"]
    if "2" in ratios:
        targets[f"serve --workers 2 >= {SCALE_OUT_RATIO_TARGET}x the 2-worker floor"] = (
            ratios["2"] >= SCALE_OUT_RATIO_TARGET
        )
    checks += [v["stored_check"]["ok"] for k, v in scale.items() if k.startswith("api_processes_")]
    result["summary"] = {
        "scale_out_ratios_to_floor_2_workers": ratios,
        "integrated_p99_s_at_half_rate": integrated_p99,
        "floor_rps": result["floor"]["requests_per_s"],
        "ingest_max_rps": ingest_rps,
        "ingest_max_2xx_rps": round(ok_rps, 1),
        "ratio_ingest_to_floor": round(ratio, 3),
        "half_rate": result["ingest_half_rate"]["target_rate"],
        "half_rate_achieved_rps": result["ingest_half_rate"]["requests_per_s"],
        "half_rate_p99_ms": half_p99,
        "every_2xx_stored": all(checks),
        "targets": {
            f"ratio >= {FLOOR_RATIO_TARGET}": ratio >= FLOOR_RATIO_TARGET,
            f"p99 at half rate <= {HALF_RATE_P99_MS} ms": half_p99 <= HALF_RATE_P99_MS,
            f"receipt to integrated p99 at half rate <= {INTEGRATED_P99_S} s": (
                integrated_p99 is not None and integrated_p99 <= INTEGRATED_P99_S
            ),
            **targets,
            "zero 2xx not stored": all(checks),
        },
    }
    return result


def scale_out(args: argparse.Namespace, wd: Path, queue: str, run_id: str) -> dict[str, Any]:
    """Ingest max with 1, 2, 4 API processes, against the floor of uvicorn with 2 workers."""
    out: dict[str, Any] = {"connections": args.connections, "duration_s": args.duration}
    per_phase = math.ceil(args.expected_rate * args.duration)
    reqs = build(wd, "scale-floor", per_phase, args.connections, run_id, args.objects)
    port = common.free_port()
    with servers.floor(port, 2, common.server_env("postgresql://unused/x", wd, queue), wd) as proc:
        proc.wait_http(f"http://127.0.0.1:{port}/health/live")
        cpu0 = common.cpu_by_group(proc.pid)
        floor2 = common.run_wrk(
            f"http://127.0.0.1:{port}", reqs, connections=args.connections, duration=args.duration
        )
        cpu1 = common.cpu_by_group(proc.pid)
    log(floor2.line("floor, 2 workers"))
    out["floor_2_workers"] = floor2.as_dict()
    out["floor_2_workers"]["cpu_cores"] = common.cpu_cores(cpu0, cpu1, floor2)
    for n in args.scale_out:
        dbname = f"lhbench_{run_id}_scale{n}"
        with common.database(dbname, keep=args.keep_db) as url:
            env = common.server_env(url, wd, queue)
            port = common.free_port()
            base = f"http://127.0.0.1:{port}"
            with servers.serve(port, n, env, wd) as proc:
                proc.wait_http(f"{base}/health/live")
                reqs = build(wd, f"scale{n}", per_phase, args.connections, run_id, args.objects)
                common.checkpoint()
                cpu0 = common.cpu_by_group(proc.pid)
                r = common.run_wrk(base, reqs, connections=args.connections, duration=args.duration)
                cpu1 = common.cpu_by_group(proc.pid)
                log(r.line(f"ingest max, {n} API process{'es' if n > 1 else ''}"))
                phase = r.as_dict()
                # Where the two cores go: the bound on a small machine (see the README).
                phase["cpu_cores"] = common.cpu_cores(cpu0, cpu1, r)
                phase["stored_check"] = check(url, reqs, r)
                phase["ratio_to_floor_2_workers"] = round(
                    r.ok / (r.summary["duration_us"] / 1e6) / floor2.as_dict()["requests_per_s"], 3
                )
                out[f"api_processes_{n}"] = phase
    return out


def print_summary(result: dict[str, Any]) -> None:
    s = result["summary"]
    pg = result["postgresql"]
    print()
    print("== ingest benchmark ==")
    print(f"machine: {result['machine']['cpus']} CPUs, {result['machine']['cpu']}")
    print(
        f"postgresql {pg['server_version']}: fsync={pg['fsync']} synchronous_commit={pg['synchronous_commit']}"
    )
    for key, label in (
        ("floor", "floor (no-op POST)"),
        ("ingest_max", "ingest max"),
        ("ingest_half_rate", "ingest at half max"),
        ("ingest_overload", "ingest overload"),
    ):
        if key not in result:
            continue
        p = result[key]
        lat = p["latency_ms"]
        stored = p.get("stored_check")
        extra = ""
        if stored:
            extra = f"  2xx not stored: {stored['acknowledged_but_not_stored']}"
        print(
            f"{label:<20} {p['requests_per_s']:>9.0f} req/s  c={p['connections']:<4} p50 {lat['p50']:.2f}"
            f"  p99 {lat['p99']:.2f}  p99.9 {lat['p99_9']:.2f}  max {lat['max']:.2f} ms"
            f"  non-2xx {p['non_2xx']}  timeouts {p['socket_errors']['timeout']}{extra}"
        )
    print(
        f"mean deliveries per group commit at max: {result['ingest_max'].get('mean_commit_batch')}"
    )
    for key in ("floor", "ingest_max"):
        if "cpu_cores" in result.get(key, {}):
            print(f"cores used during {key}: {result[key]['cpu_cores']}")
    print(f"ratio ingest/floor: {s['ratio_ingest_to_floor']:.3f}")
    print(f"receipt to integrated at half rate: {result['ingest_half_rate'].get('integration')}")
    scale = result.get("scale_out", {})
    if scale:
        f2 = scale["floor_2_workers"]
        print(
            f"scale-out (c={scale['connections']}): floor with 2 workers {f2['requests_per_s']:.0f} req/s"
            f"  cores {f2.get('cpu_cores')}"
        )
        for key, p in scale.items():
            if key.startswith("api_processes_"):
                n = key.removeprefix("api_processes_")
                lat = p["latency_ms"]
                print(
                    f"  {n} API process(es): {p['requests_per_s']:>8.0f} req/s = "
                    f"{p['ratio_to_floor_2_workers']:.3f}x  p99 {lat['p99']:.2f} ms  "
                    f"non-2xx {p['non_2xx']}  2xx not stored "
                    f"{p['stored_check']['acknowledged_but_not_stored']}"
                )
                print(f"      cores {p.get('cpu_cores')}")
    for name, ok in s["targets"].items():
        print(f"  [{'PASS' if ok else 'FAIL'}] {name}")


def parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="python -m bench.ingest", description=__doc__.split("\n")[0])
    p.add_argument(
        "--duration", type=float, default=15, help="seconds per max phase (floor, ingest)"
    )
    p.add_argument("--connections", type=int, default=64, help="wrk connections (= threads)")
    p.add_argument("--workers", type=int, default=1, help="uvicorn worker processes")
    p.add_argument("--half-duration", type=float, default=15)
    p.add_argument("--half-connections", type=int, default=32)
    p.add_argument("--overload-connections", type=int, default=256, help="0 skips the phase")
    p.add_argument("--overload-duration", type=float, default=8)
    p.add_argument(
        "--expected-rate",
        type=float,
        default=8000,
        help="deliveries built per second of a max phase",
    )
    p.add_argument("--objects", type=int, default=500, help="distinct objects per fixture")
    p.add_argument(
        "--profile",
        action="store_true",
        help="py-spy the server (extra phases after the measured ones)",
    )
    p.add_argument(
        "--scale-out",
        type=lambda v: [int(x) for x in v.split(",") if x.strip()],
        default=[1, 2, 4],
        help="API process counts for the scale-out phase (comma-separated; empty skips it)",
    )
    p.add_argument("--keep-db", action="store_true")
    p.add_argument("--name", default="ingest", help="result file bench/results/<name>.json")
    return p


def main() -> None:
    args = parser().parse_args()
    result = run(args)
    path = common.write_result(args.name, result)
    print_summary(result)
    print(f"results: {path}")


if __name__ == "__main__":
    main()
