"""Console benchmark: page render times with a large log (default 1 000 000 deliveries).

1. **Load.** A fresh database gets ``--count`` deliveries (the real fixtures, verified by the
   provider verifiers as ingest would, ``--objects`` distinct objects per fixture) appended with
   :func:`audit.append.append_deliveries` in batches of ``--batch``, their receipt times spread
   evenly over the last ``--days`` days, and integrated into the Merkle tree by the sequencer's
   own function (as the worker would; signed at full size by ``ledgerhook checkpoint`` before
   timing, so a delivery's page shows its proof). Then the real processors apply every one of them
   (:func:`processors.service.process_batch`, 100 per transaction as the worker's batcher does),
   the tables are analyzed (as the worker's ``analyze_stale`` keeps them), the sweeper scans once
   (as the worker does every 15 s), and alerts and a reconciliation run are recorded.
2. **Time.** ``ledgerhook serve`` (one process) serves the console; a client signed in with an
   admin token requests each page ``--requests`` times after ``--warmup`` unrecorded ones, one
   request at a time, each with a different sample (a random delivery, object, alert, cursor,
   time window). Latency is the client's: request sent to last byte received, including the
   session lookup and the access-log row every page writes. Target: p95 < 100 ms per page.
3. **Plans.** Each page is requested once more from an in-process server whose connections log
   every statement they run; every SELECT is then EXPLAINed with its own arguments, and the
   result lists the indexes each page's queries use and any sequential scan of a relation with
   more than 10 000 rows (there should be none).
"""

from __future__ import annotations

import argparse
import asyncio
import logging
import random
import re
import shutil
import statistics
import subprocess
import sys
import time
from datetime import UTC, datetime, timedelta
from typing import Any

import asyncpg
import httpx
import msgspec

from bench import common, loadgen, servers
from bench.apply import _stored, integrate
from bench.common import log

TARGET_P95_MS = 100.0
BIG_RELATION_ROWS = 10_000


# --- 1. load --------------------------------------------------------------------------------------


async def load(url: str, count: int, run: str, objects: int, days: float, batch: int) -> int:
    """Append ``count`` deliveries, received evenly over the last ``days`` days; returns the
    number appended."""
    from audit.append import append_deliveries

    now = time.time()
    start = datetime.now(UTC) - timedelta(days=days)
    step = timedelta(days=days) / max(count, 1)
    conn = await asyncpg.connect(url)
    appended = 0
    try:
        pending = []
        for i, d in enumerate(loadgen.deliveries(count, run=run, objects=objects)):
            pending.append(msgspec.structs.replace(_stored(d, now), received_at=start + step * i))
            if len(pending) == batch:
                appended += len(await append_deliveries(conn, pending))
                pending = []
                if appended % (batch * 20) == 0:
                    log(f"  appended {appended}")
        if pending:
            appended += len(await append_deliveries(conn, pending))
    finally:
        await conn.close()
    return appended


async def apply_all(url: str) -> dict[str, int]:
    """The real processors over the whole log, 100 deliveries per transaction."""
    from ledgerhook.db import APP_ROLE
    from processors.service import process_batch

    conn = await asyncpg.connect(url)
    try:
        await conn.execute(f"SET ROLE {APP_ROLE}")
        last = 0
        done = 0
        while True:
            ids = [
                r["id"]
                for r in await conn.fetch(
                    "SELECT id FROM audit.deliveries WHERE id > $1 ORDER BY id LIMIT 2000", last
                )
            ]
            if not ids:
                break
            last = ids[-1]
            for i in range(0, len(ids), 100):
                await process_batch(conn, ids[i : i + 100])
            done += len(ids)
            if done % 100_000 < 2000:
                log(f"  applied {done}")
        rows = await conn.fetch(
            "SELECT outcome, count(*) AS n FROM processors.processed GROUP BY 1 ORDER BY 1"
        )
        return {r["outcome"]: r["n"] for r in rows}
    finally:
        await conn.close()


async def prepare(url: str, run: str, alerts: int) -> dict[str, Any]:
    """Statistics, the sweeper's watermark, tokens, alerts, a reconciliation run, and samples."""
    from alerts.lifecycle import apply_findings
    from alerts.model import Finding
    from audit.reconciliations import ReconciliationRun, record_run
    from audit.tokens import create_token
    from ledgerhook.db import APP_ROLE
    from processors.sweeper import scan

    conn = await asyncpg.connect(url)
    try:
        await conn.execute("ANALYZE")
        await conn.execute(f"SET ROLE {APP_ROLE}")
        await scan(conn, older_than_seconds=0, limit=1000)
        token = await create_token(conn, name=f"bench-console-{run}", role="admin")
        ids = await conn.fetchval(
            "SELECT array_agg(id) FROM audit.deliveries TABLESAMPLE SYSTEM (1)"
        )
        delivery_ids = random.sample(list(ids or []), min(500, len(ids or [])))
        if not delivery_ids:
            delivery_ids = [
                r["id"] for r in await conn.fetch("SELECT id FROM audit.deliveries LIMIT 500")
            ]
        findings = [
            Finding(
                rule="out_of_order",
                severity="warning" if i % 3 else "critical",
                provider="stripe",
                subject=f"bench/{run}/{i}",
                summary=f"benchmark alert {i}",
                delivery_ids=tuple(random.sample(delivery_ids, min(3, len(delivery_ids)))),
                evidence={"i": i},
            )
            for i in range(alerts)
        ]
        fired = await apply_findings(conn, findings, datetime.now(UTC))
        now = datetime.now(UTC)
        await record_run(
            conn,
            ReconciliationRun(
                finished_at=now,
                provider="stripe",
                endpoint="default",
                account=loadgen.STRIPE_ACCOUNT,
                window_start=now - timedelta(hours=2),
                window_end=now,
                clamped=False,
                listed=0,
                missing=0,
                backfilled=0,
            ),
        )
        objects = []
        for kind in ("customers", "subscriptions", "invoices"):
            rows = await conn.fetch(
                f"SELECT provider, account, id FROM processors.{kind} ORDER BY random() LIMIT 100"
            )
            objects += [(kind, r["provider"], r["account"], r["id"]) for r in rows]
        types = [
            r["event_type"]
            for r in await conn.fetch(
                "SELECT DISTINCT event_type FROM audit.deliveries TABLESAMPLE SYSTEM (1)"
            )
        ] or ["invoice.paid"]
        span = await conn.fetchrow(
            "SELECT min(received_at) AS lo, max(received_at) AS hi FROM audit.deliveries"
        )
        assert span is not None
        return {
            "token": token,
            "delivery_ids": delivery_ids,
            "alert_ids": [f.alert_id for f in fired] or [1],
            "objects": objects,
            "event_types": types,
            "received": (span["lo"], span["hi"]),
        }
    finally:
        await conn.close()


# --- 2. pages ------------------------------------------------------------------------------------


def pages(samples: dict[str, Any]) -> dict[str, Any]:
    """Page name -> a function giving the next URL to request (a fresh sample each time)."""
    from audit.repository import encode_cursor

    ids: list[int] = samples["delivery_ids"]
    objects: list[tuple[str, str, str, str]] = samples["objects"]
    lo, hi = samples["received"]

    def window() -> str:
        start = lo + (hi - lo) * random.random()
        end = start + timedelta(hours=1)
        return (
            f"/console/deliveries?received_from={start:%Y-%m-%dT%H:%M:%S}"
            f"&received_to={end:%Y-%m-%dT%H:%M:%S}"
        )

    def an_object() -> str:
        if not objects:
            return "/console/objects"
        kind, provider, account, oid = random.choice(objects)
        return (
            "/console/objects?"
            + httpx.QueryParams(
                {"kind": kind, "provider": provider, "account": account, "id": oid}
            ).__str__()
        )

    def by_object() -> str:
        if not objects:
            return "/console/deliveries"
        return "/console/deliveries?" + str(
            httpx.QueryParams({"object_id": random.choice(objects)[3]})
        )

    return {
        "deliveries": lambda: "/console/deliveries",
        "deliveries_by_event_type": lambda: (
            "/console/deliveries?"
            + str(httpx.QueryParams({"event_type": random.choice(samples["event_types"])}))
        ),
        "deliveries_by_object": by_object,
        "deliveries_older_page": lambda: (
            f"/console/deliveries?cursor={encode_cursor(random.choice(ids))}"
        ),
        "deliveries_time_window": window,
        "deliveries_dead_letters": lambda: "/console/deliveries?outcome=dead_letter",
        "delivery": lambda: f"/console/deliveries/{random.choice(ids)}",
        "object_timeline": an_object,
        "alerts_open": lambda: "/console/alerts?status=open",
        "alert": lambda: f"/console/alerts/{random.choice(samples['alert_ids'])}",
        "health": lambda: "/console/health",
    }


def _sign_in(client: httpx.Client, token: str) -> None:
    page = client.get("/console/sign-in")
    csrf = re.search(r'name="csrf" value="([^"]*)"', page.text)
    assert csrf, page.text[:500]
    r = client.post("/console/sign-in", data={"csrf": csrf.group(1), "token": token})
    assert r.status_code == 303, (r.status_code, r.text[:500])


def time_pages(
    base: str, token: str, plan: dict[str, Any], requests: int, warmup: int
) -> dict[str, Any]:
    out: dict[str, Any] = {}
    with httpx.Client(base_url=base, timeout=30, follow_redirects=False) as client:
        _sign_in(client, token)
        for name, next_url in plan.items():
            for _ in range(warmup):
                client.get(next_url())
            ms: list[float] = []
            statuses: dict[int, int] = {}
            size = 0
            for _ in range(requests):
                url = next_url()
                t0 = time.perf_counter()
                r = client.get(url)
                ms.append((time.perf_counter() - t0) * 1000)
                statuses[r.status_code] = statuses.get(r.status_code, 0) + 1
                size += len(r.content)
            p95 = common.percentile(ms, 95)
            out[name] = {
                "requests": requests,
                "statuses": statuses,
                "p50_ms": round(statistics.median(ms), 2),
                "p95_ms": round(p95, 2),
                "p99_ms": round(common.percentile(ms, 99), 2),
                "max_ms": round(max(ms), 2),
                "mean_bytes": size // max(requests, 1),
                "pass": p95 < TARGET_P95_MS and set(statuses) == {200},
            }
            log(f"  {name:28} p50 {out[name]['p50_ms']:7.1f} ms  p95 {p95:7.1f} ms  {statuses}")
    return out


# --- 3. plans -------------------------------------------------------------------------------------


def _plan_nodes(node: dict[str, Any]) -> list[dict[str, Any]]:
    out = [node]
    for child in node.get("Plans", []):
        out += _plan_nodes(child)
    return out


async def explain_pages(url: str, token: str, plan: dict[str, Any]) -> dict[str, Any]:
    """Serve the app in-process with a pool that logs every statement, request each page once,
    and EXPLAIN what each page ran."""
    import uvicorn

    from ledgerhook.app import create_app
    from ledgerhook.db import APP_ROLE
    from ledgerhook.settings import Secret, Settings

    current: list[tuple[str, tuple[Any, ...]]] = []

    def logger(record: Any) -> None:
        current.append((record.query, tuple(record.args or ())))

    async def init(conn: asyncpg.Connection) -> None:
        await conn.execute(f"SET ROLE {APP_ROLE}")
        conn.add_query_logger(logger)

    pool = await asyncpg.create_pool(url, min_size=1, max_size=2, init=init)
    assert pool is not None
    settings = Settings(database_url=Secret(url), redis_url=Secret(common.REDIS_URL))
    port = common.free_port()
    server = uvicorn.Server(
        uvicorn.Config(
            create_app(settings, pool=pool), host="127.0.0.1", port=port, log_level="warning"
        )
    )
    task = asyncio.create_task(server.serve())
    for _ in range(600):  # uvicorn has no started event to await
        if server.started:
            break
        await asyncio.sleep(0.05)
    big: dict[str, float] = {
        r["relname"]: r["reltuples"]
        for r in await pool.fetch(
            "SELECT c.relname, c.reltuples::float8 AS reltuples FROM pg_class c "
            "JOIN pg_namespace n ON n.oid = c.relnamespace "
            "WHERE n.nspname IN ('audit', 'processors', 'alerts') AND c.relkind IN ('r', 'p')"
        )
    }
    out: dict[str, Any] = {}
    try:
        async with httpx.AsyncClient(base_url=f"http://127.0.0.1:{port}", timeout=60) as client:
            page = await client.get("/console/sign-in")
            csrf = re.search(r'name="csrf" value="([^"]*)"', page.text)
            assert csrf
            await client.post("/console/sign-in", data={"csrf": csrf.group(1), "token": token})
            for name, next_url in plan.items():
                current.clear()
                r = await client.get(next_url())
                ran = list({(q, repr(a)): (q, a) for q, a in current}.values())
                indexes: set[str] = set()
                seq: set[str] = set()
                async with pool.acquire() as conn:
                    for query, args in ran:
                        head = query.lstrip().split(None, 1)[0].upper()
                        if head not in ("SELECT", "WITH") or ";" in query.strip().rstrip(";"):
                            continue  # writes (the access log), and the pool's reset script
                        plan_json = await conn.fetchval(f"EXPLAIN (FORMAT JSON) {query}", *args)
                        for node in _plan_nodes(msgspec.json.decode(plan_json)[0]["Plan"]):
                            if node.get("Index Name"):
                                indexes.add(node["Index Name"])
                            rel = node.get("Relation Name")
                            # A partition's own row count: scanning an empty one is free.
                            seq_scan = node["Node Type"] == "Seq Scan"
                            if seq_scan and rel and big.get(rel, 0) > BIG_RELATION_ROWS:
                                seq.add(rel)
                out[name] = {
                    "status": r.status_code,
                    "statements": len(ran),
                    "indexes": sorted(indexes),
                    "seq_scans_of_big_relations": sorted(seq),
                }
    finally:
        server.should_exit = True
        await task
        await pool.close()
    return out


async def _analyze(url: str) -> None:
    """Statistics again after the timed requests (the access log grew), as the worker keeps them."""
    conn = await asyncpg.connect(url)
    try:
        await conn.execute("ANALYZE")
    finally:
        await conn.close()


# --- run ------------------------------------------------------------------------------------------


def run(args: argparse.Namespace) -> dict[str, Any]:
    run_id = common.run_id()
    queue = f"lhbench-{run_id}"
    wd = common.workdir("console")
    pg = asyncio.run(common.pg_settings())
    result: dict[str, Any] = {
        "benchmark": "console",
        "command": "make bench-console  (python -m bench.console " + " ".join(sys.argv[1:]) + ")",
        "machine": common.machine(),
        "postgresql": pg,
        "count": args.count,
        "objects_per_fixture": args.objects,
        "days": args.days,
        "target_p95_ms": TARGET_P95_MS,
    }
    random.seed(args.seed)
    try:
        with common.database(f"lhbench_{run_id}_console", keep=args.keep_db) as url:
            t0 = time.monotonic()
            n = asyncio.run(load(url, args.count, run_id, args.objects, args.days, args.batch))
            result["load_s"] = round(time.monotonic() - t0, 1)
            log(f"{n} deliveries appended in {result['load_s']} s")
            # As the worker's sequencer would: the health page reads the tree's state and a
            # delivery's page its proof, so the log must be a tree, signed at its full size.
            result["sequencer"] = asyncio.run(integrate(url))
            log(f"integrated into the tree: {result['sequencer']}")
            t0 = time.monotonic()
            result["outcomes"] = asyncio.run(apply_all(url))
            result["apply_s"] = round(time.monotonic() - t0, 1)
            log(f"applied in {result['apply_s']} s: {result['outcomes']}")
            samples = asyncio.run(prepare(url, run_id, args.alerts))
            plan = pages(samples)
            env = common.server_env(url, wd, queue)
            checkpoint = subprocess.run(
                [str(common.VENV_BIN / "ledgerhook"), "checkpoint"],
                env=env,
                capture_output=True,
                text=True,
                check=True,
            )
            log(checkpoint.stdout.strip())
            port = common.free_port()
            with servers.serve(port, 1, env, wd) as api:
                api.wait_http(f"http://127.0.0.1:{port}/health/ready")
                log("timing pages")
                result["pages"] = time_pages(
                    f"http://127.0.0.1:{port}", samples["token"], plan, args.requests, args.warmup
                )
            log("explaining each page's queries")
            asyncio.run(_analyze(url))
            result["plans"] = asyncio.run(explain_pages(url, samples["token"], plan))
    finally:
        common.cleanup_queue(queue)
        shutil.rmtree(wd, ignore_errors=True)
    result["pass"] = all(p["pass"] for p in result["pages"].values())
    result["index_only"] = not any(
        p["seq_scans_of_big_relations"] for p in result["plans"].values()
    )
    return result


def print_summary(result: dict[str, Any]) -> None:
    print()
    print("== console benchmark ==")
    print(f"machine: {result['machine']['cpus']} CPUs, {result['machine']['cpu']}")
    pg = result["postgresql"]
    print(
        f"postgresql {pg['server_version']}: fsync={pg['fsync']} synchronous_commit={pg['synchronous_commit']}"
    )
    print(
        f"{result['count']} deliveries (loaded in {result['load_s']} s, applied in {result['apply_s']} s)"
    )
    print(f"{'page':28} {'p50 ms':>8} {'p95 ms':>8} {'p99 ms':>8}  plans")
    for name, p in result["pages"].items():
        plan = result["plans"].get(name, {})
        seq = plan.get("seq_scans_of_big_relations")
        note = f"SEQ SCAN {seq}" if seq else f"{len(plan.get('indexes', []))} indexes"
        mark = "PASS" if p["pass"] else "FAIL"
        print(
            f"{name:28} {p['p50_ms']:8.1f} {p['p95_ms']:8.1f} {p['p99_ms']:8.1f}  [{mark}] {note}"
        )
    print(f"p95 < {TARGET_P95_MS:.0f} ms on every page: {'PASS' if result['pass'] else 'FAIL'}")
    print(f"no sequential scan of a large relation: {'PASS' if result['index_only'] else 'FAIL'}")


def parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="python -m bench.console", description=__doc__.split("\n")[0])
    p.add_argument("--count", type=int, default=1_000_000, help="deliveries in the log")
    p.add_argument("--objects", type=int, default=2000, help="distinct objects per fixture")
    p.add_argument(
        "--days", type=float, default=30, help="receipt times spread over this many days"
    )
    p.add_argument("--batch", type=int, default=5000, help="deliveries per append_deliveries call")
    p.add_argument("--alerts", type=int, default=200, help="alerts to open")
    p.add_argument("--requests", type=int, default=100, help="timed requests per page")
    p.add_argument("--warmup", type=int, default=10, help="untimed requests per page first")
    p.add_argument("--seed", type=int, default=16)
    p.add_argument("--keep-db", action="store_true")
    p.add_argument("--name", default="console")
    return p


def main() -> None:
    args = parser().parse_args()
    logging.getLogger("httpx").setLevel(logging.WARNING)
    result = run(args)
    path = common.write_result(args.name, result)
    print_summary(result)
    print(f"results: {path}")


if __name__ == "__main__":
    main()
