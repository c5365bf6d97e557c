"""Sync benchmark: ``ledgerhook sync`` against a local stand-in serving ``--count`` objects.

The stand-in (``python -m ledgerhook.demo.objects_api``, its own process) serves Stripe's (or
Chargebee's) object API from the real fixtures, 100 objects a page. ``ledgerhook sync`` runs as
its own process on a fresh database, exactly as an operator would run it: every page through the
official SDK, stored in the audit log with its cursor, applied through the processors. Measured:
objects per second stored and applied (from the database: rows over the span of their
timestamps, and over the command's wall time), and the sync process's resident memory sampled
through the run, which must stay flat (pages are streamed: one in hand, one being fetched).
"""

from __future__ import annotations

import argparse
import asyncio
import shutil
import sys
import time
from typing import Any

import asyncpg

from bench import common
from bench.common import log

# After warm-up (this share of the run), RSS may grow by at most this much: flat.
WARMUP_SHARE = 0.2
FLAT_GROWTH = 0.10


def _env(url: str, wd: Any, queue: str, provider: str, api_url: str) -> dict[str, str]:
    env = common.server_env(url, wd, queue, LEDGERHOOK_LOG_LEVEL="WARNING")
    if provider == "stripe":
        env.update(
            LEDGERHOOK_STRIPE_API_KEY="sk_test_bench",
            LEDGERHOOK_STRIPE_API_BASE=api_url,
            LEDGERHOOK_STRIPE_ACCOUNT="acct_bench",
        )
    else:
        env.update(
            LEDGERHOOK_CHARGEBEE_API_KEY="cb_test_bench",
            LEDGERHOOK_CHARGEBEE_API_BASE=api_url,
            LEDGERHOOK_CHARGEBEE_SITE="bench",
        )
    return env


async def measure(url: str) -> dict[str, Any]:
    conn = await asyncpg.connect(url)
    try:
        stored = await conn.fetchrow(
            "SELECT count(*) AS n, count(duplicate_of) AS dups, "
            "extract(epoch FROM max(received_at) - min(received_at))::float8 AS span "
            "FROM audit.deliveries WHERE origin = 'sync'"
        )
        applied = await conn.fetchrow(
            "SELECT count(*) AS n, count(*) FILTER (WHERE outcome = 'applied') AS applied, "
            "extract(epoch FROM max(processed_at) - min(processed_at))::float8 AS span "
            "FROM processors.processed"
        )
        cursors = await conn.fetch(
            "SELECT object_type, status, pages, listed FROM processors.sync_cursors"
        )
        assert stored is not None and applied is not None
        return {
            "stored": int(stored["n"]),
            "stored_duplicates": int(stored["dups"]),
            "stored_span_s": round(float(stored["span"] or 0.0), 3),
            "processed": int(applied["n"]),
            "applied": int(applied["applied"]),
            "applied_span_s": round(float(applied["span"] or 0.0), 3),
            "cursors": {r["object_type"]: [r["status"], r["pages"], r["listed"]] for r in cursors},
        }
    finally:
        await conn.close()


def flat(samples: list[tuple[float, int]]) -> dict[str, Any]:
    """RSS after warm-up vs its maximum later on (pure)."""
    if not samples:
        return {"ok": False, "after_warmup_kib": 0, "max_kib": 0, "growth": None}
    end = samples[-1][0]
    warm = [r for t, r in samples if t >= end * WARMUP_SHARE] or [samples[-1][1]]
    base, peak = warm[0], max(warm)
    growth = (peak - base) / base if base else None
    return {
        "ok": growth is not None and growth <= FLAT_GROWTH,
        "after_warmup_kib": base,
        "max_kib": peak,
        "growth": None if growth is None else round(growth, 4),
    }


def run(args: argparse.Namespace) -> dict[str, Any]:
    run_id = common.run_id()
    queue = f"lhbench-{run_id}"
    wd = common.workdir("sync")
    pg = asyncio.run(common.pg_settings())
    log(f"PostgreSQL fsync={pg['fsync']} synchronous_commit={pg['synchronous_commit']}")
    types = args.types or "customers"
    expected = args.count * len([t for t in types.split(",") if t.strip()])
    result: dict[str, Any] = {
        "benchmark": "sync",
        "command": "make bench-sync  (python -m bench.sync " + " ".join(sys.argv[1:]) + ")",
        "machine": common.machine(),
        "postgresql": pg,
        "provider": args.provider,
        "types": types,
        "count": args.count,
    }
    port = common.free_port()
    api_url = f"http://127.0.0.1:{port}"
    try:
        with common.database(f"lhbench_{run_id}_sync", keep=args.keep_db) as url:
            env = _env(url, wd, queue, args.provider, api_url)
            standin = common.Process(
                "standin",
                [
                    sys.executable,
                    "-m",
                    "ledgerhook.demo.objects_api",
                    "--port",
                    str(port),
                    "--count",
                    str(args.count),
                ],
                env,
                wd,
            )
            try:
                standin.wait_http(f"{api_url}/health", timeout=30)
                t0 = time.monotonic()
                sync = common.Process(
                    "sync",
                    [
                        sys.executable,
                        "-m",
                        "ledgerhook.cli",
                        "sync",
                        "--provider",
                        args.provider,
                        "--types",
                        types,
                    ],
                    env,
                    wd,
                )
                samples: list[tuple[float, int]] = []
                cpu = 0.0
                deadline = t0 + args.timeout
                while sync.alive() and time.monotonic() < deadline:
                    rss = common.rss_kib(sync.pid)
                    if rss:
                        samples.append((round(time.monotonic() - t0, 2), rss))
                        cpu = common.cpu_seconds(sync.pid)
                    time.sleep(args.sample_every)
                code = sync.stop()
                wall = time.monotonic() - t0
                standin_cpu = common.cpu_seconds(standin.pid)
                output = sync.tail(2000)
            finally:
                standin.stop()
            m = asyncio.run(measure(url))
    finally:
        common.cleanup_queue(queue)
        shutil.rmtree(wd, ignore_errors=True)
    memory = flat(samples)
    result.update(
        {
            "sync_exit_code": code,
            "sync_output_tail": output[-600:],
            "wall_s": round(wall, 2),
            "sync_cpu_s": round(cpu, 2),
            "standin_cpu_s": round(standin_cpu, 2),
            **m,
            "objects_per_s_wall": round(m["applied"] / wall, 1) if wall else 0.0,
            "stored_per_s": round(m["stored"] / m["stored_span_s"], 1)
            if m["stored_span_s"]
            else 0.0,
            "applied_per_s": round(m["applied"] / m["applied_span_s"], 1)
            if m["applied_span_s"]
            else 0.0,
            "rss_samples": samples[:: max(1, len(samples) // 60)],
            "memory": memory,
            "expected": expected,
            "complete": code == 0 and m["stored"] == expected and m["applied"] == expected,
        }
    )
    return result


def print_summary(result: dict[str, Any]) -> None:
    print()
    print("== sync benchmark ==")
    print(f"machine: {result['machine']['cpus']} CPUs, {result['machine']['cpu']}")
    pg = result["postgresql"]
    print(
        f"postgresql {pg['server_version']}: fsync={pg['fsync']} synchronous_commit={pg['synchronous_commit']}"
    )
    print(
        f"{result['provider']} {result['types']}: {result['stored']}/{result['expected']} objects stored, "
        f"{result['applied']} applied, in {result['wall_s']} s (ledgerhook sync, start to exit): "
        f"{result['objects_per_s_wall']:.0f} objects/s"
    )
    print(
        f"  stored {result['stored_per_s']:.0f}/s over {result['stored_span_s']} s, "
        f"applied {result['applied_per_s']:.0f}/s over {result['applied_span_s']} s; "
        f"sync CPU {result['sync_cpu_s']} s, stand-in CPU {result['standin_cpu_s']} s"
    )
    mem = result["memory"]
    print(
        f"  RSS after warm-up {mem['after_warmup_kib'] / 1024:.1f} MiB, max {mem['max_kib'] / 1024:.1f} MiB"
        f" (growth {mem['growth']})"
    )
    print(f"  [{'PASS' if result['complete'] else 'FAIL'}] every object stored and applied once")
    print(
        f"  [{'PASS' if mem['ok'] else 'FAIL'}] flat memory (growth <= {FLAT_GROWTH:.0%} after warm-up)"
    )


def parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="python -m bench.sync", description=__doc__.split("\n")[0])
    p.add_argument("--count", type=int, default=100_000, help="objects the stand-in serves")
    p.add_argument("--provider", choices=("stripe", "chargebee"), default="stripe")
    p.add_argument("--types", default=None, help="lists to sync (default: customers)")
    p.add_argument("--timeout", type=float, default=3600, help="stop the sync after this long")
    p.add_argument("--sample-every", type=float, default=0.5, help="RSS sampling period, s")
    p.add_argument("--keep-db", action="store_true")
    p.add_argument("--name", default="sync")
    return p


def main() -> None:
    args = parser().parse_args()
    result = run(args)
    path = common.write_result(args.name, result)
    print_summary(result)
    print(f"results: {path}")
    if not result["complete"]:
        sys.exit(1)


if __name__ == "__main__":
    main()
