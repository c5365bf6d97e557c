"""No acknowledged delivery is lost or applied twice, whatever fails, shown with real processes.

A private PostgreSQL and Redis, ``ledgerhook serve`` x2 and ``ledgerhook worker`` x2 take a
stream of signed deliveries (30% redeliveries, shuffled) while the harness kills and stalls
processes and stops, flushes and restarts the servers. After the first fault of each kind,
``ledgerhook replay --rebuild --compare`` runs under load and must exit 0 (live equals the
rebuild from the log in one snapshot, with workers busy). Then: every 2xx is in the log with its
bytes, no 2xx came while PostgreSQL was down, every event took effect exactly once, nothing is
left unprocessed after the sweeper ran, the same comparison exits 0 on the quiet system, and the
log verifies (every stored delivery a leaf, the tree and its checkpoints).

The default run is short (about a minute of load); ``make soak`` runs the long one, for
``LEDGERHOOK_SOAK_SECONDS`` seconds (default 600).
"""

from __future__ import annotations

import asyncio
import os
import time
import uuid
from collections.abc import Iterator

import asyncpg
import pytest

from tests.faults.cluster import Cluster, ClusterConfig
from tests.faults.invariants import check, wait_processed
from tests.faults.load import (
    COMPARE,
    FAULT_KINDS,
    Comparison,
    Driver,
    Record,
    acked_while_pg_down,
    summary,
)
from tests.faults.services import cli_has, run_cli
from tests.faults.stream import build_events, schedule


@pytest.fixture
def cluster() -> Iterator[Cluster]:
    c = Cluster(ClusterConfig())
    try:
        missing = [cmd for cmd in ("serve", "worker") if not cli_has(c.env, cmd)]
        if missing:
            pytest.skip(f"ledgerhook {' and '.join(missing)} not available yet")
        c.start()
        yield c
    finally:
        c.close()


async def _run(cluster: Cluster, *, seconds: float, rate: float, seed: int) -> None:
    tag = uuid.uuid4().hex[:6]
    events = build_events(int(seconds * rate), tag=tag, seed=seed)
    order = schedule(events, redeliver=0.3, window=40, seed=seed)
    record = Record()
    driver = Driver(cluster, record, seed=seed, concurrency=16)
    t0 = time.monotonic()
    until = t0 + seconds
    stall = cluster.config.job_timeout_seconds + 2.0
    every = (seconds / (len(FAULT_KINDS) * 4), seconds / (len(FAULT_KINDS) * 2))
    left, _, _ = await asyncio.gather(
        driver.load(order, until),
        driver.inject(until - 3, every=every, stall_seconds=stall),
        driver.supervise(until),
    )
    unacked = await driver.drain(left, time.monotonic() + 60)
    load_seconds = time.monotonic() - t0
    await driver.comparisons_done()

    conn = await asyncpg.connect(cluster.database_url)
    try:
        left_unprocessed = await wait_processed(conn, within=90)
        findings = await check(conn, record)
    finally:
        await conn.close()

    verify = run_cli(cluster.env, "verify")
    final = run_cli(cluster.env, *COMPARE)
    comparisons = [
        *record.comparisons,
        Comparison(
            after="end",
            returncode=final.returncode,
            seconds=0.0,
            output=final.stdout[-2000:] + final.stderr[-1000:],
        ),
    ]
    for c in comparisons:
        if c.returncode != 0:
            findings.problems.append(
                f"replay --rebuild --compare after {c.after} exited {c.returncode}: {c.output}"
            )
    not_compared = set(FAULT_KINDS) - {c.after for c in record.comparisons}
    if not_compared:
        findings.problems.append(f"no comparison after: {sorted(not_compared)}")
    down_acks = acked_while_pg_down(record)
    if down_acks:
        findings.fail(
            "2xx answered while PostgreSQL was down",
            [a.event.event_id for a in down_acks],
        )
    if unacked:
        findings.fail(
            "events never acknowledged after faults stopped", [e.event_id for e in unacked]
        )
    if left_unprocessed:
        findings.problems.append(f"{left_unprocessed} deliveries still unprocessed after 90 s")
    if verify.returncode != 0:
        findings.problems.append(f"ledgerhook verify exited {verify.returncode}: {verify.stdout}")
    if any(t is None or t > 10 for t in record.takeovers):
        findings.problems.append(
            f"a standby sequencer did not take over within 10 s: {record.takeovers}"
        )
    if cluster.unexpected_exits:
        findings.problems.append(f"processes exited on their own: {cluster.unexpected_exits}")

    report = summary(
        record,
        {
            **findings.counts,
            "events generated": len(events),
            "PostgreSQL down windows": len(record.pg_down),
            "2xx while PostgreSQL down": len(down_acks),
            "ledgerhook verify": f"exit {verify.returncode}",
            "sequencer takeovers after kill -9 (s)": [
                None if t is None else round(t, 2) for t in record.takeovers
            ],
            "ledgerhook replay --rebuild --compare exits (after each fault kind, at the end)": (
                " ".join(f"{c.after}:{c.returncode}" for c in comparisons)
            ),
            "load + drain seconds": round(load_seconds, 1),
        },
    )
    print("\n=== fault run ===\n" + report + "\nfault log:\n  " + "\n  ".join(record.fault_log))
    assert not findings.problems, (
        "\n".join(findings.problems) + "\n\n" + report + f"\nprocess logs: {cluster.logdir}"
    )
    assert set(record.faults) == set(FAULT_KINDS), record.faults


async def test_faults_short(cluster: Cluster) -> None:
    await _run(cluster, seconds=50, rate=20, seed=9)


@pytest.mark.slow
@pytest.mark.timeout(float(os.environ.get("LEDGERHOOK_SOAK_SECONDS", "600")) + 600)
async def test_faults_soak(cluster: Cluster) -> None:
    seconds = float(os.environ.get("LEDGERHOOK_SOAK_SECONDS", "600"))
    await _run(cluster, seconds=seconds, rate=40, seed=int(time.time()))
