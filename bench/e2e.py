"""End-to-end benchmark: API and worker together, constant-rate deliveries, lag from the database.

The API (``ledgerhook serve``) and the worker (``ledgerhook worker``) run together on a fresh
database. Deliveries arrive at a constant rate (wrk with a scheduled ``delay()``, see
``bench/wrk/cycle.lua``) in steps of increasing rate. During each step the age of the oldest
stored-but-unprocessed delivery is sampled twice a second; after it, the step's deliveries must
all be applied within ``--drain`` seconds, and their receipt-to-applied times (``received_at`` ->
``processed_at``) give p50/p99. A step is sustained when the oldest-unprocessed age stayed under
2 s, the rate was reached (>= 90 %), and no request failed. Steps go up ``--fractions`` until one
is not sustained; if even the first is not, they halve below it (down to 1/16 of it), so a slow
worker still gets a number; then up to three bisections between the best sustained step and the
failed one above it. The highest sustained rate is printed
as a ratio of the ingest maximum (``bench/results/ingest.json``, or measured here first with the
worker stopped, or ``--ingest-max``).
"""

from __future__ import annotations

import argparse
import asyncio
import math
import shutil
import sys
import threading
import time
from pathlib import Path
from typing import Any

import asyncpg

from bench import common, loadgen, servers
from bench.common import WrkResult, log
from bench.stack import Stack, backlog, head_id, lags, outcomes, table_counts

LAG_LIMIT_S = 2.0
P99_TARGET_S = 1.0
RATIO_TARGET = 0.5


def build(wd: Path, name: str, count: int, threads: int, run: str, objects: int) -> Path:
    out = wd / name
    if out.exists():
        shutil.rmtree(out)
    loadgen.write_request_files(
        out, count, threads, run=f"{run}{name}", host="127.0.0.1", objects=objects
    )
    return out


def sample_backlog(
    url: str, stop: threading.Event, into: list[tuple[float, float, int]], low: int
) -> None:
    """Every 0.5 s: (seconds since start, oldest unprocessed age, unprocessed count)."""

    async def loop() -> None:
        conn = await asyncpg.connect(url)
        t0 = time.monotonic()
        watermark = low
        try:
            while not stop.is_set():
                b = await backlog(conn, watermark)
                watermark = b.low_id
                into.append(
                    (round(time.monotonic() - t0, 2), round(b.oldest_age_s, 3), b.unprocessed)
                )
                await asyncio.sleep(0.5)
        finally:
            await conn.close()

    asyncio.run(loop())


def step(
    stack: Stack, url: str, wd: Path, run: str, rate: float, args: argparse.Namespace, n: int
) -> dict[str, Any]:
    count = math.ceil(rate * args.step_duration * 1.2) + args.connections
    reqs = build(wd, f"s{n}", count, args.connections, run, args.objects)
    first = asyncio.run(_head(url)) + 1
    samples: list[tuple[float, float, int]] = []
    stop = threading.Event()
    sampler = threading.Thread(target=sample_backlog, args=(url, stop, samples, first), daemon=True)
    sampler.start()
    m0 = common.scrape(stack.base)
    try:
        res: WrkResult = common.run_wrk(
            stack.base, reqs, connections=args.connections, duration=args.step_duration, rate=rate
        )
        # Drain: until everything of this step is applied, or the drain time is up.
        deadline = time.monotonic() + args.drain
        last = asyncio.run(_head(url))
        while time.monotonic() < deadline:
            _, pending = asyncio.run(_lags(url, first, last))
            if pending == 0:
                break
            time.sleep(0.25)
    finally:
        stop.set()
        sampler.join()
    done, pending = asyncio.run(_lags(url, first, last))
    m1 = common.scrape(stack.base)
    failures = m1.get("ledgerhook_enqueue_failures_total", 0.0) - m0.get(
        "ledgerhook_enqueue_failures_total", 0.0
    )
    shutil.rmtree(reqs, ignore_errors=True)
    stack.check_alive()
    max_age = max((s[1] for s in samples), default=0.0)
    achieved = res.ok / (res.summary["duration_us"] / 1e6)
    sustained = (
        max_age < LAG_LIMIT_S and pending == 0 and res.non_2xx == 0 and achieved >= 0.9 * rate
    )
    out = {
        "target_rate": round(rate, 1),
        "achieved_2xx_rps": round(achieved, 1),
        "wrk": res.as_dict(),
        "deliveries": last - first + 1,
        "unapplied_after_drain": pending,
        "lag_s": {
            "p50": round(common.percentile(done, 50), 3),
            "p99": round(common.percentile(done, 99), 3),
            "max": round(max(done, default=0.0), 3),
        },
        "oldest_unprocessed_age_s_max": round(max_age, 3),
        # Wake-ups the API could not put on Redis in time: those wait for the sweeper.
        "enqueue_failures": int(failures),
        "oldest_unprocessed_samples": samples,
        "sustained": sustained,
    }
    log(
        f"step {n}: target {rate:.0f}/s achieved {achieved:.0f}/s  lag p50 {out['lag_s']['p50']:.3f}s"
        f" p99 {out['lag_s']['p99']:.3f}s  oldest-unprocessed max {max_age:.2f}s"
        f"  non-2xx {res.non_2xx}  enqueue failures {int(failures)}  unapplied {pending}  -> {'sustained' if sustained else 'NOT sustained'}"
    )
    return out


async def _head(url: str) -> int:
    conn = await asyncpg.connect(url)
    try:
        return await head_id(conn)
    finally:
        await conn.close()


async def _lags(url: str, first: int, last: int) -> tuple[list[float], int]:
    conn = await asyncpg.connect(url)
    try:
        return await lags(conn, first, last)
    finally:
        await conn.close()


async def _final(url: str) -> dict[str, Any]:
    conn = await asyncpg.connect(url)
    try:
        return {"outcomes": await outcomes(conn), "rows": await table_counts(conn)}
    finally:
        await conn.close()


def ingest_max(args: argparse.Namespace, wd: Path, run: str, queue: str) -> tuple[float, str]:
    """The ingest maximum to compare with: given, from ingest.json, or measured here.

    Measured on a database and server of its own (worker stopped), so the steps below start on an
    empty log instead of a backlog.
    """
    if args.ingest_max:
        return args.ingest_max, "--ingest-max"
    if not args.measure_ingest:
        prior = common.read_result("ingest")
        if prior is not None:
            return float(prior["summary"]["ingest_max_2xx_rps"]), "bench/results/ingest.json"
    reqs = build(
        wd, "max", math.ceil(args.expected_rate * args.ingest_duration), 64, run, args.objects
    )
    with common.database(f"lhbench_{run}_e2emax") as url:
        env = common.server_env(url, wd, queue)
        port = common.free_port()
        with servers.serve(port, args.workers, env, wd) as proc:
            proc.wait_http(f"http://127.0.0.1:{port}/health/live")
            res = common.run_wrk(
                f"http://127.0.0.1:{port}", reqs, connections=64, duration=args.ingest_duration
            )
    shutil.rmtree(reqs, ignore_errors=True)
    log(res.line("ingest max (no worker)"))
    return res.ok / (res.summary["duration_us"] / 1e6), "measured in this run (worker stopped)"


def settle(url: str, timeout: float) -> int:
    """Wait until every stored delivery is processed (at most ``timeout`` s); what is left."""

    async def left() -> int:
        conn = await asyncpg.connect(url)
        try:
            return (await backlog(conn, 0)).unprocessed
        finally:
            await conn.close()

    deadline = time.monotonic() + timeout
    n = asyncio.run(left())
    if n:
        log(f"waiting for a backlog of {n} to be applied before the next step")
    while n and time.monotonic() < deadline:
        time.sleep(0.5)
        n = asyncio.run(left())
    return n


def fractions_to_try(planned: list[float], tried: list[tuple[float, bool]]) -> float | None:
    """The next step, as a fraction of the ingest max; None when the search is done.

    Up ``planned`` while steps are sustained; if the first is not, halve below it (down to 1/16);
    once there is a sustained step under a failed one, bisect between them (at most 3 times,
    stopping when they are within 20 % of each other).
    """
    ok = [f for f, good in tried if good]
    bad = [f for f, good in tried if not good]
    if not bad:
        return planned[len(tried)] if len(tried) < len(planned) else None
    hi = min(bad)
    below = [f for f in ok if f < hi]
    if not below:
        nxt = hi / 2
        return nxt if nxt >= planned[0] / 16 else None
    lo = max(below)
    bisections = sum(1 for f, _ in tried if f not in planned and f > lo / 2 and f != lo)
    if (hi - lo) / hi <= 0.2 or bisections >= 3:
        return None
    return round((lo + hi) / 2, 4)


def run(args: argparse.Namespace) -> dict[str, Any]:
    common.ensure_wrk()
    run_id = common.run_id()
    queue = f"lhbench-{run_id}"
    wd = common.workdir("e2e")
    pg = asyncio.run(common.pg_settings())
    log(f"PostgreSQL fsync={pg['fsync']} synchronous_commit={pg['synchronous_commit']}")
    result: dict[str, Any] = {
        "benchmark": "e2e",
        "command": "make bench-e2e  (python -m bench.e2e " + " ".join(sys.argv[1:]) + ")",
        "machine": common.machine(),
        "postgresql": pg,
        "api_workers": args.workers,
        "worker_processes": args.worker_processes,
        "connections": args.connections,
        "step_duration_s": args.step_duration,
    }
    steps: list[dict[str, Any]] = []
    try:
        top, source = ingest_max(args, wd, run_id, queue)
        result["ingest_max_rps"] = round(top, 1)
        result["ingest_max_source"] = source
        log(f"ingest max {top:.0f}/s ({source})")
        with common.database(f"lhbench_{run_id}_e2e", keep=args.keep_db) as url:
            stack = Stack(
                url, wd, queue, api_workers=args.workers, worker_processes=args.worker_processes
            )
            try:
                stack.wait()
                stack.start_workers()
                time.sleep(1.0)
                result["rss_kib_start"] = stack.rss()
                planned = [float(f) for f in args.fractions.split(",")]
                n = 0
                while (
                    frac := fractions_to_try(
                        planned, [(x["fraction_of_ingest_max"], x["sustained"]) for x in steps]
                    )
                ) is not None:
                    # Each step starts on an empty backlog: a failed step's leftovers must not
                    # count against the next one.
                    settled = settle(url, args.settle)
                    s = step(stack, url, wd, run_id, top * frac, args, n)
                    s["backlog_before_step"] = settled
                    s["fraction_of_ingest_max"] = frac
                    steps.append(s)
                    n += 1
                result["rss_kib_end"] = stack.rss()
                result["final"] = asyncio.run(_final(url))
            finally:
                result["exit_codes"] = stack.stop()
    finally:
        common.cleanup_queue(queue)
        shutil.rmtree(wd, ignore_errors=True)
    result["steps"] = steps
    good = [s for s in steps if s["sustained"]]
    best = max(good, key=lambda s: s["achieved_2xx_rps"]) if good else None
    top = result.get("ingest_max_rps") or 0.0
    ratio = (best["achieved_2xx_rps"] / top) if best and top else 0.0
    p99 = best["lag_s"]["p99"] if best else None
    result["summary"] = {
        "ingest_max_rps": top,
        "sustained_rate": best["achieved_2xx_rps"] if best else 0.0,
        "ratio_to_ingest_max": round(ratio, 3),
        "lag_p50_s": best["lag_s"]["p50"] if best else None,
        "lag_p99_s": p99,
        "highest_step_tried": steps[-1]["fraction_of_ingest_max"] if steps else None,
        "targets": {
            f"sustained >= {RATIO_TARGET} x ingest max": ratio >= RATIO_TARGET,
            f"receipt-to-applied p99 <= {P99_TARGET_S} s at that rate": p99 is not None
            and p99 <= P99_TARGET_S,
        },
    }
    return result


def print_summary(result: dict[str, Any]) -> None:
    s = result["summary"]
    print()
    print("== end-to-end benchmark ==")
    print(f"machine: {result['machine']['cpus']} CPUs, {result['machine']['cpu']}")
    pg = result["postgresql"]
    print(
        f"postgresql {pg['server_version']}: fsync={pg['fsync']} synchronous_commit={pg['synchronous_commit']}"
    )
    print(f"ingest max: {s['ingest_max_rps']:.0f}/s ({result.get('ingest_max_source')})")
    for st in result["steps"]:
        print(
            f"  {st['fraction_of_ingest_max']:.2f} x max = {st['target_rate']:>7.0f}/s: achieved {st['achieved_2xx_rps']:>7.0f}/s"
            f"  lag p50 {st['lag_s']['p50']:.3f}s p99 {st['lag_s']['p99']:.3f}s"
            f"  oldest-unprocessed max {st['oldest_unprocessed_age_s_max']:.2f}s"
            f"  {'sustained' if st['sustained'] else 'NOT sustained'}"
        )
    print(
        f"highest sustained rate: {s['sustained_rate']:.0f}/s = {s['ratio_to_ingest_max']:.3f} x ingest max"
        f"  (lag p50 {s['lag_p50_s']} s, p99 {s['lag_p99_s']} s)"
    )
    print(f"RSS KiB start {result.get('rss_kib_start')} end {result.get('rss_kib_end')}")
    for name, ok in s["targets"].items():
        print(f"  [{'PASS' if ok else 'FAIL'}] {name}")


def parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="python -m bench.e2e", description=__doc__.split("\n")[0])
    p.add_argument(
        "--fractions",
        default="0.2,0.3,0.4,0.5,0.6,0.7,0.8,1.0",
        help="rate steps, as fractions of the ingest max",
    )
    p.add_argument("--step-duration", type=float, default=15)
    p.add_argument(
        "--drain", type=float, default=10, help="seconds allowed after a step to apply its backlog"
    )
    p.add_argument(
        "--settle",
        type=float,
        default=120,
        help="max seconds to wait for an empty backlog before a step",
    )
    p.add_argument("--connections", type=int, default=64)
    p.add_argument("--workers", type=int, default=1, help="API (uvicorn) processes")
    p.add_argument("--worker-processes", type=int, default=1, help="ledgerhook worker processes")
    p.add_argument("--ingest-max", type=float, default=0.0, help="use this ingest maximum (req/s)")
    p.add_argument(
        "--measure-ingest",
        action="store_true",
        help="measure the ingest max here even if ingest.json exists",
    )
    p.add_argument("--ingest-duration", type=float, default=8)
    p.add_argument("--expected-rate", type=float, default=8000)
    p.add_argument("--objects", type=int, default=500)
    p.add_argument("--keep-db", action="store_true")
    p.add_argument("--name", default="e2e")
    return p


def main() -> None:
    args = parser().parse_args()
    result = run(args)
    path = common.write_result(args.name, result)
    print_summary(result)
    print(f"results: {path}")


if __name__ == "__main__":
    main()
