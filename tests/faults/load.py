"""Drive the cluster: send the delivery stream and inject faults at random moments, recording all.

Timing uses one monotonic clock for requests and faults, so "this 2xx was answered while
PostgreSQL was down" is a comparison of numbers. A PostgreSQL down window starts when
``pg_ctl stop`` has returned (the server is gone) and ends when ``pg_ctl start`` is issued.

The client behaves like a provider: a delivery that did not get a 2xx (503, 5xx, refused
connection, timeout) is sent again later; when the run ends, every event still unacknowledged is
sent until it is acknowledged (faults have stopped by then).
"""

from __future__ import annotations

import asyncio
import random
import time
from collections import Counter
from dataclasses import dataclass, field
from typing import Any

import httpx
import msgspec

from tests.faults.cluster import Cluster
from tests.faults.services import run_cli
from tests.faults.stream import Event, headers_for

FAULT_KINDS = (
    "kill_api",
    "kill_worker",
    "kill_sequencer",
    "redis_stop",
    "redis_flushall",
    "pg_stop_fast",
    "pg_stop_immediate",
    "worker_stall",
)

# ``replay``'s exit code for "could not run to the end" (ledgerhook/cli/replay.py).
COULD_NOT_RUN = 3
COMPARE_ATTEMPTS = 20

PATHS = {"stripe": "/webhooks/stripe", "chargebee": "/webhooks/chargebee"}


@dataclass(frozen=True, slots=True)
class Attempt:
    event: Event
    started: float
    ended: float
    status: int | None  # None: no HTTP answer (refused, reset, timeout)
    body: bytes
    error: str = ""

    @property
    def acknowledged(self) -> bool:
        return self.status is not None and 200 <= self.status < 300

    def delivery_id(self) -> int | None:
        try:
            data = msgspec.json.decode(self.body)
        except msgspec.DecodeError:
            return None
        if isinstance(data, dict):
            value = data.get("delivery_id", data.get("id"))
            if isinstance(value, int):
                return value
        return None


@dataclass(frozen=True, slots=True)
class Comparison:
    """``ledgerhook replay --rebuild --compare`` run right after a fault, under load."""

    after: str
    returncode: int
    seconds: float
    output: str


# The outside consistency check: state rebuilt from the log equals live, in one snapshot.
COMPARE = ("replay", "--rebuild", "--compare")


@dataclass
class Record:
    attempts: list[Attempt] = field(default_factory=list)
    faults: Counter[str] = field(default_factory=Counter)
    pg_down: list[tuple[float, float]] = field(default_factory=list)
    fault_log: list[str] = field(default_factory=list)
    comparisons: list[Comparison] = field(default_factory=list)
    # Seconds from kill -9 of the leading sequencer to a standby holding the lock (None: never).
    takeovers: list[float | None] = field(default_factory=list)

    def acked_events(self) -> set[str]:
        return {a.event.event_id for a in self.attempts if a.acknowledged}

    def statuses(self) -> Counter[str]:
        return Counter(str(a.status) if a.status is not None else a.error for a in self.attempts)


class Driver:
    def __init__(self, cluster: Cluster, record: Record, *, seed: int, concurrency: int) -> None:
        self.cluster = cluster
        self.record = record
        self.rng = random.Random(seed)
        self.concurrency = concurrency
        self.t0 = time.monotonic()
        # Faults whose consistency check is still to run, and the task running them in turn.
        self._compare_queue: asyncio.Queue[str] = asyncio.Queue()
        self._comparer: asyncio.Task[None] | None = None

    async def send(self, client: httpx.AsyncClient, event: Event) -> Attempt:
        ports = self.cluster.api_ports
        port = ports[self.rng.randrange(len(ports))]
        url = f"http://127.0.0.1:{port}{PATHS[event.provider]}"
        started = time.monotonic()
        try:
            response = await client.post(
                url, content=event.body, headers=headers_for(event, time.time())
            )
            attempt = Attempt(
                event, started, time.monotonic(), response.status_code, response.content
            )
        except httpx.HTTPError as exc:
            attempt = Attempt(event, started, time.monotonic(), None, b"", type(exc).__name__)
        self.record.attempts.append(attempt)
        return attempt

    async def load(self, order: list[Event], until: float) -> list[Event]:
        """Send ``order`` (spread over the run), retrying failures; returns events never acked."""
        queue: asyncio.Queue[Event] = asyncio.Queue()
        for e in order:
            queue.put_nowait(e)
        pending: set[str] = set()
        acked: set[str] = set()
        interval = max(0.0, (until - time.monotonic()) / max(1, len(order))) * self.concurrency

        async def worker(client: httpx.AsyncClient) -> None:
            while time.monotonic() < until:
                try:
                    event = queue.get_nowait()
                except asyncio.QueueEmpty:
                    await asyncio.sleep(0.05)
                    continue
                attempt = await self.send(client, event)
                if attempt.acknowledged:
                    acked.add(event.event_id)
                    pending.discard(event.event_id)
                elif event.event_id not in acked:
                    pending.add(event.event_id)
                    queue.put_nowait(event)  # the provider retries later
                    await asyncio.sleep(0.2)
                await asyncio.sleep(interval * self.rng.random() * 2)

        limits = httpx.Limits(max_connections=self.concurrency * 2)
        async with httpx.AsyncClient(timeout=15, limits=limits) as client:
            await asyncio.gather(*(worker(client) for _ in range(self.concurrency)))
        left = {e.event_id: e for e in order if e.event_id not in acked}
        return list(left.values())

    async def drain(self, events: list[Event], deadline: float) -> list[Event]:
        """Faults are over: send each unacknowledged event until it is acknowledged."""
        left = list(events)
        async with httpx.AsyncClient(timeout=15) as client:
            while left and time.monotonic() < deadline:
                results = await asyncio.gather(*(self.send(client, e) for e in left))
                left = [a.event for a in results if not a.acknowledged]
                if left:
                    await asyncio.sleep(0.5)
        return left

    async def inject(
        self, until: float, *, every: tuple[float, float], stall_seconds: float
    ) -> None:
        """Faults at random moments; each kind at least once before any repeats.

        After the first fault of each kind, the consistency check is queued: it runs in the
        background, one at a time, while the load and the next faults go on (workers busy, a
        backlog, jobs being retried), so the run injects as many faults as before.
        """
        kinds = list(FAULT_KINDS)
        self.rng.shuffle(kinds)
        while True:
            await asyncio.sleep(self.rng.uniform(*every))
            if time.monotonic() >= until:
                return
            kind = kinds.pop() if kinds else self.rng.choice(FAULT_KINDS)
            self.record.fault_log.append(f"{time.monotonic() - self.t0:7.2f}s {kind}")
            await asyncio.to_thread(self._locked_fault, kind, stall_seconds)
            self.record.faults[kind] += 1
            if self.record.faults[kind] == 1:
                self._compare_queue.put_nowait(kind)
                if self._comparer is None:
                    self._comparer = asyncio.create_task(self._compare_queued())

    async def _compare_queued(self) -> None:
        while True:
            kind = await self._compare_queue.get()
            try:
                await self.compare(after=kind)
            finally:
                self._compare_queue.task_done()

    async def comparisons_done(self) -> None:
        """Wait for the queued consistency checks (they may outlast the load)."""
        await self._compare_queue.join()
        if self._comparer is not None:
            self._comparer.cancel()
            self._comparer = None

    async def compare(self, *, after: str) -> None:
        """Run the consistency check now and record it.

        Exit 3 says it could not run to the end (a later fault stopped PostgreSQL under it) and
        concludes nothing, so it is run again; any other exit is the check's verdict.
        """
        started = time.monotonic()
        for _ in range(COMPARE_ATTEMPTS):
            result = await asyncio.to_thread(run_cli, self.cluster.env, *COMPARE)
            if result.returncode != COULD_NOT_RUN:
                break
            self.record.fault_log.append(
                f"{time.monotonic() - self.t0:7.2f}s replay --rebuild --compare could not run "
                f"(queued after {after}); again"
            )
            await asyncio.sleep(1.0)
        seconds = time.monotonic() - started
        self.record.comparisons.append(
            Comparison(
                after=after,
                returncode=result.returncode,
                seconds=seconds,
                output=(result.stdout[-2000:] + result.stderr[-1000:]),
            )
        )
        # Whether it ran mid-flight (the report names what live had not applied yet), and how
        # long the fold took (its summary line on stderr).
        notes = [
            line
            for line in (result.stdout + result.stderr).splitlines()
            if line.startswith(("not compared", "replay --compare: rebuilt"))
        ]
        self.record.fault_log.append(
            f"{time.monotonic() - self.t0:7.2f}s replay --rebuild --compare: "
            f"exit {result.returncode} in {seconds:.1f}s (queued after {after})"
            + "".join(f"\n             {n}" for n in notes)
        )

    def _locked_fault(self, kind: str, stall_seconds: float) -> None:
        with self.cluster.lock:
            self._fault(kind, stall_seconds)

    def _fault(self, kind: str, stall_seconds: float) -> None:
        c = self.cluster
        if kind == "kill_api":
            api = self.rng.choice(c.apis)
            api.kill()
            time.sleep(self.rng.uniform(0.2, 1.0))
            api.start()
        elif kind == "kill_worker":
            w = self.rng.choice(c.workers)
            w.kill()
            time.sleep(self.rng.uniform(0.2, 1.0))
            w.start()
        elif kind == "kill_sequencer":
            # kill -9 the worker whose sequencer leads; a standby must take over in seconds.
            leader = c.sequencer_leader() or self.rng.choice(c.workers)
            leader.kill()
            killed = time.monotonic()
            while c.leaders() != 1 and time.monotonic() - killed < 30:
                time.sleep(0.1)
            took = time.monotonic() - killed
            self.record.takeovers.append(took if c.leaders() == 1 else None)
            leader.start()
        elif kind == "redis_stop":
            c.redis.stop()
            time.sleep(self.rng.uniform(1.0, 3.0))
            c.redis.start()
        elif kind == "redis_flushall":
            c.redis.flushall()
        elif kind in ("pg_stop_fast", "pg_stop_immediate"):
            c.pg.stop("fast" if kind == "pg_stop_fast" else "immediate")
            down = time.monotonic()
            time.sleep(self.rng.uniform(1.0, 3.0))
            up = time.monotonic()
            self.record.pg_down.append((down, up))
            c.pg.start()
        elif kind == "worker_stall":
            c.stall(self.rng.choice(c.workers), stall_seconds)

    async def supervise(self, until: float) -> None:
        while time.monotonic() < until:
            await asyncio.sleep(0.5)
            await asyncio.to_thread(self.cluster.supervise)


def acked_while_pg_down(record: Record) -> list[Attempt]:
    return [
        a
        for a in record.attempts
        if a.acknowledged
        and any(down <= a.started and a.ended <= up for down, up in record.pg_down)
    ]


def summary(record: Record, extra: dict[str, Any]) -> str:
    lines = [
        f"sent: {len(record.attempts)} requests",
        f"statuses: {dict(sorted(record.statuses().items()))}",
        f"faults injected: {dict(sorted(record.faults.items()))} (total {sum(record.faults.values())})",
    ]
    lines += [f"{k}: {v}" for k, v in extra.items()]
    return "\n".join(lines)
