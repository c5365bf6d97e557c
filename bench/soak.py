"""Soak: API and worker under a steady constant rate for minutes; is memory flat?

``ledgerhook serve`` and ``ledgerhook worker`` run together on a fresh database while wrk sends
deliveries at ``--rate`` per second, in one-minute chunks (each chunk's deliveries are built and
signed while the previous chunk runs, so every delivery is distinct). The resident set size of
each process tree (``VmRSS`` from ``/proc``) is sampled every ``--sample`` seconds; the result
reports it at start, at end and at its peak, and the growth from the end of the first minute
(after warm-up: pools filled, caches primed) to the end.

It is also the long-run end-to-end check: the backlog (unprocessed deliveries, age of the oldest)
is sampled with the RSS, and receipt-to-applied lag is reported per minute from the database
timestamps, so a worker that keeps up for 15 seconds but falls behind as the tables grow shows.
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

from bench import common, loadgen
from bench.common import log
from bench.stack import Stack, backlog, lag_by_minute


def _build(wd: Path, name: str, count: int, threads: int, run: str) -> Path:
    out = wd / name
    loadgen.write_request_files(out, count, threads, run=f"{run}{name}", host="127.0.0.1")
    return out


def _build_into(
    holder: list[Path], wd: Path, name: str, count: int, threads: int, run: str
) -> None:
    holder.append(_build(wd, name, count, threads, run))


async def _at_end(url: str) -> tuple[int, list[dict[str, Any]]]:
    conn = await asyncpg.connect(url)
    try:
        return (await backlog(conn, 0)).unprocessed, await lag_by_minute(conn)
    finally:
        await conn.close()


class _BacklogProbe:
    """Backlog samples from the sampler thread (its own event loop and connection)."""

    def __init__(self, url: str) -> None:
        self._loop = asyncio.new_event_loop()
        self._conn: asyncpg.Connection = self._loop.run_until_complete(asyncpg.connect(url))
        self._low = 0

    def sample(self) -> dict[str, Any]:
        b = self._loop.run_until_complete(backlog(self._conn, self._low))
        self._low = b.low_id
        return {"unprocessed": b.unprocessed, "oldest_age_s": round(b.oldest_age_s, 2)}

    def close(self) -> None:
        self._loop.run_until_complete(self._conn.close())
        self._loop.close()


def default_rate() -> float:
    """A rate the whole system sustains: 0.8 x e2e's sustained rate, else 0.1 x ingest max, else 100.

    Above what the worker sustains the backlog (and with it memory) would grow for the whole soak,
    which measures the backlog, not a leak.
    """
    e2e = common.read_result("e2e")
    if e2e is not None and e2e["summary"].get("sustained_rate"):
        return 0.8 * float(e2e["summary"]["sustained_rate"])
    ingest = common.read_result("ingest")
    if ingest is not None:
        return 0.1 * float(ingest["summary"]["ingest_max_2xx_rps"])
    return 100.0


def run(args: argparse.Namespace) -> dict[str, Any]:
    common.ensure_wrk()
    run_id = common.run_id()
    queue = f"lhbench-{run_id}"
    wd = common.workdir("soak")
    rate = args.rate
    if not rate:
        rate = default_rate()
    chunk = min(args.chunk, args.minutes * 60)
    chunks = max(1, math.ceil(args.minutes * 60 / chunk))
    result: dict[str, Any] = {
        "benchmark": "soak",
        "command": "make bench-soak  (python -m bench.soak " + " ".join(sys.argv[1:]) + ")",
        "machine": common.machine(),
        "postgresql": asyncio.run(common.pg_settings()),
        "rate": round(rate, 1),
        "minutes": args.minutes,
    }
    samples: list[dict[str, Any]] = []
    backlogs: list[dict[str, Any]] = []
    sent = ok = 0
    try:
        with common.database(f"lhbench_{run_id}_soak", keep=args.keep_db) as url:
            stack = Stack(url, wd, queue, api_workers=args.workers)
            try:
                stack.wait()
                stack.start_workers()
                count = math.ceil(rate * chunk * 1.1) + args.connections
                nxt = _build(wd, "c0", count, args.connections, run_id)
                t0 = time.monotonic()
                stop = threading.Event()

                def sampler() -> None:
                    probe = _BacklogProbe(url)
                    try:
                        while not stop.is_set():
                            t = round(time.monotonic() - t0, 1)
                            samples.append({"t": t, **stack.rss()})
                            backlogs.append({"t": t, **probe.sample()})
                            stop.wait(args.sample)
                    finally:
                        probe.close()

                th = threading.Thread(target=sampler, daemon=True)
                th.start()
                for i in range(chunks):
                    current = nxt
                    builder = None
                    holder: list[Path] = []
                    if i + 1 < chunks:
                        builder = threading.Thread(
                            target=_build_into,
                            args=(holder, wd, f"c{i + 1}", count, args.connections, run_id),
                        )
                        builder.start()
                    res = common.run_wrk(
                        stack.base, current, connections=args.connections, duration=chunk, rate=rate
                    )
                    sent += res.requests
                    ok += res.ok
                    log(res.line(f"soak minute {i + 1}/{chunks}"))
                    stack.check_alive()
                    if builder is not None:
                        builder.join()
                        nxt = holder[0]
                    shutil.rmtree(current, ignore_errors=True)
                stop.set()
                th.join()
                samples.append({"t": round(time.monotonic() - t0, 1), **stack.rss()})
                result["unprocessed_at_end"], result["lag_by_minute"] = asyncio.run(_at_end(url))
            finally:
                result["exit_codes"] = stack.stop()
    finally:
        common.cleanup_queue(queue)
        shutil.rmtree(wd, ignore_errors=True)
    names = [k for k in samples[0] if k != "t"] if samples else []
    warm = next((s for s in samples if s["t"] >= min(60.0, samples[-1]["t"] / 2)), samples[0])
    result["requests"] = sent
    result["ok_2xx"] = ok
    result["rss_kib"] = {
        n: {
            "start": samples[0][n],
            "after_warmup": warm[n],
            "end": samples[-1][n],
            "peak": max(s[n] for s in samples),
            "growth_after_warmup_pct": round(100 * (samples[-1][n] - warm[n]) / max(warm[n], 1), 1),
        }
        for n in names
    }
    result["backlog"] = {
        "peak_unprocessed": max((b["unprocessed"] for b in backlogs), default=0),
        "peak_oldest_age_s": max((b["oldest_age_s"] for b in backlogs), default=0.0),
    }
    result["samples"] = samples
    result["backlog_samples"] = backlogs
    return result


def print_summary(result: dict[str, Any]) -> None:
    print()
    print("== soak ==")
    print(
        f"{result['minutes']} min at {result['rate']:.0f}/s: {result['ok_2xx']}/{result['requests']} answered 2xx,"
        f" {result.get('unprocessed_at_end')} unprocessed at the end"
    )
    b = result["backlog"]
    print(
        f"  backlog while running: peak {b['peak_unprocessed']} unprocessed,"
        f" oldest {b['peak_oldest_age_s']:.1f} s"
    )
    print("  receipt-to-applied by minute (p50 / p99 / max, s):")
    for m in result["lag_by_minute"]:
        print(
            f"    {m['minute']:>3}: {m['applied']}/{m['deliveries']} applied,"
            f" {m['p50']} / {m['p99']} / {m['max']}"
        )
    for name, r in result["rss_kib"].items():
        print(
            f"  {name:<8} RSS start {r['start'] / 1024:.1f} MiB, after warm-up {r['after_warmup'] / 1024:.1f} MiB,"
            f" end {r['end'] / 1024:.1f} MiB, peak {r['peak'] / 1024:.1f} MiB"
            f" (growth after warm-up {r['growth_after_warmup_pct']}%)"
        )


def parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="python -m bench.soak", description=__doc__.split("\n")[0])
    p.add_argument("--minutes", type=float, default=10)
    p.add_argument(
        "--rate",
        type=float,
        default=0.0,
        help="req/s (default: 0.8 x e2e sustained rate, else 0.1 x ingest max, else 100)",
    )
    p.add_argument("--connections", type=int, default=32)
    p.add_argument("--workers", type=int, default=1, help="API (uvicorn) processes")
    p.add_argument("--sample", type=float, default=10, help="seconds between RSS samples")
    p.add_argument("--chunk", type=float, default=60, help="seconds of load per built request set")
    p.add_argument("--keep-db", action="store_true")
    p.add_argument("--name", default="soak")
    return p


def main() -> None:
    args = parser().parse_args()
    result = run(args)
    path = common.write_result(args.name, result)
    print_summary(result)
    print(f"results: {path}")


if __name__ == "__main__":
    main()
