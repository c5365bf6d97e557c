"""Apply benchmark: worker throughput alone, on a backlog stored before it starts.

A fresh database gets ``--count`` deliveries appended directly with
:func:`audit.append.append_deliveries` (the fixtures, verified by the real provider verifiers so
every column is what ingest would store), integrated into the Merkle tree by the sequencer's own
function (:func:`audit.sequencer.integrate_once`; its rate is reported too: deliveries are
applied in leaf order), and one ``process_delivery`` job per delivery is put on the queue. Then ``ledgerhook worker --burst`` runs (``--processes`` of them at once) until the
queue is empty. The rate is counted from the database: rows of ``processors.processed`` divided by
the span of their ``processed_at``, so it includes everything an apply does (event and per-object
locks, normalisation, state rows, history rows, anomalies, the tracking row) and excludes start-up.
``--objects`` sets how many distinct objects each fixture is spread over (fewer: more contention on
the per-object locks).
"""

from __future__ import annotations

import argparse
import asyncio
import shutil
import sys
import time
from datetime import UTC, datetime
from typing import Any

import asyncpg
import msgspec

from bench import common, loadgen, servers
from bench.common import log
from bench.stack import outcomes, table_counts


def _stored(d: loadgen.Delivery, now: float) -> Any:
    from audit.append import NewDelivery
    from ingest.providers import chargebee, stripe
    from ledgerhook.settings import EndpointSettings, Secret

    headers = {k.lower(): v for k, v in d.headers}
    if d.provider == "stripe":
        ep = EndpointSettings(
            provider="stripe",
            name=loadgen.ENDPOINT,
            account=loadgen.STRIPE_ACCOUNT,
            secrets=(Secret(loadgen.STRIPE_SECRET),),
        )
        v = stripe.verify(headers, d.body, now, ep)
    else:
        ep = EndpointSettings(
            provider="chargebee",
            name=loadgen.ENDPOINT,
            account=loadgen.CHARGEBEE_SITE,
            basic_auth=(Secret(f"{loadgen.CHARGEBEE_USER}:{loadgen.CHARGEBEE_PASSWORD}"),),
        )
        v = chargebee.verify(headers, d.body, now, ep)
    shown = [[k, "[redacted]" if k.lower() in ("authorization",) else val] for k, val in d.headers]
    return NewDelivery(
        received_at=datetime.now(UTC),
        provider=v.provider,
        endpoint=loadgen.ENDPOINT,
        account=v.account,
        event_id=v.event_id,
        event_type=v.event_type,
        event_created=v.event_created,
        object_id=v.object_id,
        source_address="127.0.0.1",
        content_type=headers.get("content-type"),
        headers=msgspec.json.encode(shown).decode(),
        verification=v.verification,
        body=d.body,
    )


async def integrate(url: str, batch: int = 5000) -> dict[str, Any]:
    """The sequencer's work on the backlog: integrate everything, timed (leaves per second)."""
    from audit.sequencer import integrate_once, load_state

    conn = await asyncpg.connect(url)
    try:
        state = await load_state(conn)
        t0 = time.monotonic()
        leaves = 0
        while True:
            state, done = await integrate_once(conn, state, batch)
            if done is None:
                break
            leaves += len(done.delivery_ids)
        seconds = time.monotonic() - t0
    finally:
        await conn.close()
    return {
        "leaves": leaves,
        "seconds": round(seconds, 3),
        "leaves_per_s": round(leaves / max(seconds, 1e-9), 1),
        "batch": batch,
    }


async def prefill(url: str, queue: str, count: int, run: str, objects: int) -> list[int]:
    """Append ``count`` deliveries in batches, then enqueue one job per delivery."""
    from arq import create_pool
    from arq.connections import RedisSettings

    from audit.append import append_deliveries
    from ledgerhook.jobs import PROCESS_DELIVERY, job_id, serialize
    from ledgerhook.settings import ProcessorSettings, Secret, Settings

    settings = Settings(database_url=Secret(url), processors=ProcessorSettings(queue_name=queue))
    now = time.time()
    ids: list[int] = []
    conn = await asyncpg.connect(url)
    try:
        batch = []
        for d in loadgen.deliveries(count, run=run, objects=objects):
            batch.append(_stored(d, now))
            if len(batch) == 500:
                ids += [a.id for a in await append_deliveries(conn, batch)]
                batch = []
        if batch:
            ids += [a.id for a in await append_deliveries(conn, batch)]
    finally:
        await conn.close()
    redis = await create_pool(
        RedisSettings.from_dsn(common.REDIS_URL), default_queue_name=queue, job_serializer=serialize
    )
    try:
        for i in range(0, len(ids), 500):
            await asyncio.gather(
                *(
                    redis.enqueue_job(PROCESS_DELIVERY, d, _job_id=job_id(settings, d))
                    for d in ids[i : i + 500]
                )
            )
    finally:
        await redis.aclose()
    return ids


async def measure(url: str) -> dict[str, Any]:
    conn = await asyncpg.connect(url)
    try:
        row = await conn.fetchrow(
            """
            SELECT count(*) AS n,
                   extract(epoch FROM max(processed_at) - min(processed_at))::float8 AS span
            FROM processors.processed
            """
        )
        assert row is not None
        return {
            "processed": int(row["n"]),
            "span_s": round(float(row["span"] or 0.0), 3),
            "outcomes": await outcomes(conn),
            "rows": await table_counts(conn),
        }
    finally:
        await conn.close()


def run(args: argparse.Namespace) -> dict[str, Any]:
    run_id = common.run_id()
    queue = f"lhbench-{run_id}"
    wd = common.workdir("apply")
    pg = asyncio.run(common.pg_settings())
    log(f"PostgreSQL fsync={pg['fsync']} synchronous_commit={pg['synchronous_commit']}")
    result: dict[str, Any] = {
        "benchmark": "apply",
        "command": "make bench-apply  (python -m bench.apply " + " ".join(sys.argv[1:]) + ")",
        "machine": common.machine(),
        "postgresql": pg,
        "count": args.count,
        "objects_per_fixture": args.objects,
        "worker_processes": args.processes,
    }
    try:
        with common.database(f"lhbench_{run_id}_apply", keep=args.keep_db) as url:
            t0 = time.monotonic()
            ids = asyncio.run(prefill(url, queue, args.count, run_id, args.objects))
            log(
                f"backlog of {len(ids)} deliveries stored and enqueued in {time.monotonic() - t0:.1f}s"
            )
            result["sequencer"] = asyncio.run(integrate(url))
            log(f"sequencer: {result['sequencer']}")
            env = common.server_env(url, wd, queue)
            t0 = time.monotonic()
            procs = [
                servers.worker(env, wd, burst=True, name=f"worker{i}")
                for i in range(args.processes)
            ]
            prof = None
            if args.profile:
                from bench.ingest import profile_during

                prof = profile_during(
                    procs[0].pid, int(args.profile_seconds), "raw", common.RESULTS / "apply.folded"
                )
            cpu: dict[str, float] = {}
            rss: dict[str, int] = {}
            try:
                deadline = t0 + args.timeout
                while any(p.alive() for p in procs) and time.monotonic() < deadline:
                    for p in procs:
                        if p.alive():
                            c, r = common.cpu_seconds(p.pid), common.rss_kib(p.pid)
                            if r:  # 0 once the process has exited between the checks
                                cpu[p.name], rss[p.name] = c, r
                    time.sleep(0.2)
            finally:
                codes = {p.name: p.stop() for p in procs}
                if prof is not None:
                    prof.wait(timeout=60)
            wall = time.monotonic() - t0
            m = asyncio.run(measure(url))
    finally:
        common.cleanup_queue(queue)
        shutil.rmtree(wd, ignore_errors=True)
    rate = m["processed"] / m["span_s"] if m["span_s"] else 0.0
    result.update(
        {
            "wall_s_including_startup": round(wall, 2),
            "worker_exit_codes": codes,
            "worker_cpu_s": {k: round(v, 2) for k, v in cpu.items()},
            "worker_rss_kib_last": rss,
            **m,
            "events_per_s": round(rate, 1),
            "events_per_s_per_process": round(rate / args.processes, 1),
            "complete": m["processed"] == len(ids),
        }
    )
    return result


def print_summary(result: dict[str, Any]) -> None:
    print()
    print("== apply benchmark ==")
    print(f"machine: {result['machine']['cpus']} CPUs, {result['machine']['cpu']}")
    pg = result["postgresql"]
    print(
        f"postgresql {pg['server_version']}: fsync={pg['fsync']} synchronous_commit={pg['synchronous_commit']}"
    )
    seq = result.get("sequencer", {})
    print(
        f"sequencer: {seq.get('leaves')} deliveries integrated in {seq.get('seconds')} s "
        f"= {seq.get('leaves_per_s')} leaves/s (one process, batches of {seq.get('batch')})"
    )
    print(
        f"{result['processed']}/{result['count']} deliveries applied by {result['worker_processes']} worker"
        f" process(es) in {result['span_s']} s: {result['events_per_s']:.0f} events/s"
        f" ({result['events_per_s_per_process']:.0f} per process)"
    )
    print(f"outcomes: {result['outcomes']}")
    print(f"state/history rows: {result['rows']}")
    print(f"worker CPU s: {result['worker_cpu_s']}  RSS KiB: {result['worker_rss_kib_last']}")
    if not result["complete"]:
        print("  [FAIL] not every delivery was processed before the workers stopped")


def parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="python -m bench.apply", description=__doc__.split("\n")[0])
    p.add_argument("--count", type=int, default=20000, help="deliveries in the backlog")
    p.add_argument("--processes", type=int, default=1, help="worker processes")
    p.add_argument("--objects", type=int, default=500, help="distinct objects per fixture")
    p.add_argument("--timeout", type=float, default=300, help="stop the workers after this long")
    p.add_argument("--profile", action="store_true", help="py-spy the first worker (raw stacks)")
    p.add_argument("--profile-seconds", type=float, default=20)
    p.add_argument("--keep-db", action="store_true")
    p.add_argument("--name", default="apply")
    return p


def main() -> None:
    args = parser().parse_args()
    result = run(args)
    path = common.write_result(args.name, result)
    print_summary(result)
    print(f"results: {path}")


if __name__ == "__main__":
    main()
