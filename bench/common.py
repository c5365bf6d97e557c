"""What every benchmark shares: its own database, server processes, wrk, and the result file.

Each benchmark creates the databases it measures against (``lhbench_<run>_<name>``, migrated with
Ledgerhook's own migrations) and drops them at the end, starts its servers as child processes on
loopback ports, and never touches anything else on the shared PostgreSQL and Redis (its queue name
is its own). Results go to ``bench/results/<name>.json`` with the machine and database settings
they were measured on.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import math
import os
import platform
import re
import resource
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
import urllib.error
import urllib.request
import uuid
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, cast

import asyncpg

from bench import loadgen

ROOT = Path(__file__).resolve().parents[1]
RESULTS = Path(os.environ.get("LEDGERHOOK_BENCH_RESULTS") or ROOT / "bench" / "results")
LUA = ROOT / "bench" / "wrk" / "cycle.lua"
VENV_BIN = Path(sys.executable).parent
PG_BASE = os.environ.get("LEDGERHOOK_BENCH_PG", "postgresql://postgres@127.0.0.1:5432")
REDIS_URL = os.environ.get("LEDGERHOOK_BENCH_REDIS", "redis://127.0.0.1:6379/0")
CHECKPOINT_KEY = "PRIVATE+KEY+ledgerhook-bench+f1402cb4+AQAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA"  # not a secret


def run_id() -> str:
    return uuid.uuid4().hex[:8]


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port: int = s.getsockname()[1]
        return port


def log(message: str) -> None:
    print(f"[{time.strftime('%H:%M:%S')}] {message}", file=sys.stderr, flush=True)


# --- wrk ------------------------------------------------------------------------------------------


def ensure_wrk() -> str:
    """wrk from Debian's packages, installed on first use (needs root or sudo, like the Makefile)."""
    exe = shutil.which("wrk")
    if exe:
        return exe
    log("installing wrk (apt-get)")
    sudo = [] if os.geteuid() == 0 else ["sudo", "-n"]
    subprocess.run([*sudo, "apt-get", "update", "-qq"], check=False, capture_output=True)
    subprocess.run(
        [*sudo, "apt-get", "install", "-y", "-qq", "wrk"], check=False, capture_output=True
    )
    exe = shutil.which("wrk")
    if not exe:
        raise SystemExit("wrk is not installed and apt-get could not install it")
    return exe


@dataclass(frozen=True, slots=True)
class WrkResult:
    connections: int
    threads: int
    duration_s: float
    target_rate: float
    summary: dict[str, Any]
    tracked: list[tuple[int, int, int]] = field(default_factory=list)

    @property
    def requests(self) -> int:
        n: int = self.summary["requests"]
        return n

    @property
    def rps(self) -> float:
        return self.requests / (float(self.summary["duration_us"]) / 1e6)

    @property
    def ok(self) -> int:
        return sum(v for k, v in self.summary["codes"].items() if k.startswith("2"))

    @property
    def non_2xx(self) -> int:
        return self.requests - self.ok

    def latency_ms(self, key: str) -> float:
        return float(self.summary["latency_us"][key]) / 1000.0

    def as_dict(self) -> dict[str, Any]:
        lat = self.summary["latency_us"]
        return {
            "connections": self.connections,
            "threads": self.threads,
            "duration_s": round(self.summary["duration_us"] / 1e6, 3),
            "target_rate": self.target_rate or None,
            "requests": self.requests,
            "requests_per_s": round(self.rps, 1),
            "ok_2xx": self.ok,
            "non_2xx": self.non_2xx,
            "codes": self.summary["codes"],
            "socket_errors": self.summary["errors"],
            "wraps": self.summary["wraps"],
            "lost": self.summary["lost"],
            "wrk_cpu_s": self.summary.get("wrk_cpu_s"),
            "latency_ms": {k: round(float(v) / 1000.0, 3) for k, v in lat.items()},
        }

    def line(self, label: str) -> str:
        return (
            f"{label:<22} {self.rps:>9.0f} req/s  c={self.connections:<4} "
            f"p50 {self.latency_ms('p50'):>7.2f} ms  p99 {self.latency_ms('p99'):>7.2f} ms  "
            f"p99.9 {self.latency_ms('p99_9'):>7.2f} ms  max {self.latency_ms('max'):>8.2f} ms  "
            f"non-2xx {self.non_2xx} (codes {self.summary['codes']})"
        )


def run_wrk(
    url: str,
    req_dir: Path,
    *,
    connections: int,
    duration: float,
    threads: int | None = None,
    rate: float = 0.0,
    track: bool = True,
    timeout_s: int = 30,
) -> WrkResult:
    """One wrk run. ``track`` needs one connection per thread (see cycle.lua); that is the default."""
    wrk = ensure_wrk()
    threads = connections if threads is None else threads
    if track and threads != connections:
        raise ValueError("tracking needs one connection per wrk thread")
    out = req_dir / f"tracked-{time.monotonic_ns()}.txt"
    env = {
        **os.environ,
        "LH_WRK_DIR": str(req_dir),
        "LH_WRK_THREADS": str(threads),
        "LH_WRK_RATE": str(rate),
        "LH_WRK_TRACK": "1" if track else "0",
        "LH_WRK_OUT": str(out),
    }
    cmd = [
        wrk,
        f"-t{threads}",
        f"-c{connections}",
        f"-d{max(1, round(duration))}s",
        f"--timeout={timeout_s}s",
        "-s",
        str(LUA),
        url,
    ]
    before = resource.getrusage(resource.RUSAGE_CHILDREN)
    proc = subprocess.run(cmd, env=env, capture_output=True, text=True, check=False)
    after = resource.getrusage(resource.RUSAGE_CHILDREN)
    match = re.search(r"^LHWRK (\{.*\})$", proc.stdout, re.MULTILINE)
    if proc.returncode != 0 or match is None:
        raise RuntimeError(f"wrk failed ({proc.returncode}): {proc.stderr[-2000:]}{proc.stdout}")
    tracked: list[tuple[int, int, int]] = []
    if track and out.exists():
        for line in out.read_text().splitlines():
            t, i, s = line.split()
            tracked.append((int(t), int(i), int(s)))
        out.unlink()
    summary = json.loads(match.group(1))
    summary["wrk_cpu_s"] = round(
        after.ru_utime + after.ru_stime - before.ru_utime - before.ru_stime, 3
    )
    return WrkResult(connections, threads, duration, rate, summary, tracked)


def acknowledged(req_dir: Path, result: WrkResult) -> dict[tuple[str, str], int]:
    """(provider, event id) -> how many 2xx answers it got in a tracked run."""
    ids = {t: loadgen.read_ids(req_dir, t) for t in range(result.threads)}
    counts: dict[tuple[str, str], int] = {}
    for t, i, status in result.tracked:
        if 200 <= status < 300:
            key = ids[t][i - 1]
            counts[key] = counts.get(key, 0) + 1
    return counts


# --- databases ------------------------------------------------------------------------------------


async def _admin() -> asyncpg.Connection:
    return await asyncpg.connect(f"{PG_BASE}/postgres")


async def create_database(name: str) -> str:
    """A new migrated database; its URL."""
    from ledgerhook.migrations import migrate
    from ledgerhook.settings import Secret, Settings

    url = f"{PG_BASE}/{name}"
    await migrate(Settings(database_url=Secret(url)))
    return url


async def drop_database(name: str) -> None:
    conn = await _admin()
    try:
        await conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
    finally:
        await conn.close()


def checkpoint() -> float:
    """``CHECKPOINT``, so that one phase's writes are on disk before the next phase is timed.

    Without it the kernel writes back the previous phase's dirty pages (30 s after they were
    dirtied) while the next one runs, and the WAL flushes that every commit waits for queue
    behind that write-back: the half-rate phase, run right after the maximum-rate one, then
    measured PostgreSQL's 40-50 ms commit stalls (seen in its slow-statement log) rather than
    Ledgerhook. Returns the seconds it took.
    """

    async def run() -> None:
        conn = await _admin()
        try:
            await conn.execute("CHECKPOINT")
        finally:
            await conn.close()

    started = time.monotonic()
    asyncio.run(run())
    return round(time.monotonic() - started, 2)


async def pg_settings() -> dict[str, str]:
    conn = await _admin()
    try:
        out = {}
        for name in (
            "fsync",
            "synchronous_commit",
            "wal_sync_method",
            "shared_buffers",
            "server_version",
        ):
            out[name] = str(await conn.fetchval(f"SHOW {name}"))
        return out
    finally:
        await conn.close()


@contextlib.contextmanager
def database(name: str, keep: bool = False) -> Iterator[str]:
    url = asyncio.run(create_database(name))
    try:
        yield url
    finally:
        if not keep:
            asyncio.run(drop_database(name))


async def stored_counts(url: str) -> dict[tuple[str, str], int]:
    """(provider, event id) -> rows in audit.deliveries (duplicates included)."""
    conn = await asyncpg.connect(url)
    try:
        rows = await conn.fetch(
            "SELECT provider, event_id, count(*) AS n FROM audit.deliveries GROUP BY 1, 2"
        )
    finally:
        await conn.close()
    return {(r["provider"], r["event_id"]): r["n"] for r in rows}


def check_acknowledged(
    acked: Mapping[tuple[str, str], int], stored: Mapping[tuple[str, str], int]
) -> dict[str, Any]:
    """Every 2xx answer has its own row: for each event, rows >= 2xx answers it got."""
    missing = {k: n - stored.get(k, 0) for k, n in acked.items() if stored.get(k, 0) < n}
    return {
        "acknowledged_2xx": sum(acked.values()),
        "rows_for_acknowledged": sum(min(stored.get(k, 0), n) for k, n in acked.items()),
        "rows_total": sum(stored.values()),
        "acknowledged_but_not_stored": sum(missing.values()),
        "examples_missing": [f"{p}/{e}" for p, e in list(missing)[:5]],
        "ok": not missing,
    }


# --- processes ------------------------------------------------------------------------------------


def server_env(database_url: str, workdir: Path, queue: str, **extra: str) -> dict[str, str]:
    """Environment for ``ledgerhook serve``/``worker`` under benchmark (endpoints from loadgen)."""
    config = workdir / "bench.toml"
    config.write_text(loadgen.endpoints_toml())
    env = {k: v for k, v in os.environ.items() if not k.startswith("LEDGERHOOK_")}
    env.update(
        {
            "LEDGERHOOK_ENV_FILE": "",  # never a developer's .env
            "LEDGERHOOK_DATABASE_URL": database_url,
            "LEDGERHOOK_REDIS_URL": REDIS_URL,
            "LEDGERHOOK_CONFIG": str(config),
            "LEDGERHOOK_CHECKPOINT_KEY": CHECKPOINT_KEY,
            "LEDGERHOOK_PROCESSORS__QUEUE_NAME": queue,
            "LEDGERHOOK_LOG_LEVEL": "WARNING",
            "LEDGERHOOK_LOG_FORMAT": "json",
        }
    )
    env.update(extra)
    return env


class Process:
    """A child process in its own process group, output to a log file, stopped with SIGTERM."""

    def __init__(self, name: str, cmd: Sequence[str], env: Mapping[str, str], logdir: Path) -> None:
        self.name = name
        self.logfile = logdir / f"{name}.log"
        self._fh = self.logfile.open("wb")
        self.proc = subprocess.Popen(
            list(cmd),
            env=dict(env),
            cwd=ROOT,
            stdout=self._fh,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )

    @property
    def pid(self) -> int:
        return self.proc.pid

    def alive(self) -> bool:
        return self.proc.poll() is None

    def tail(self, n: int = 3000) -> str:
        return self.logfile.read_bytes()[-n:].decode(errors="replace")

    def wait_http(self, url: str, timeout: float = 60.0) -> None:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if not self.alive():
                raise RuntimeError(f"{self.name} exited ({self.proc.returncode}):\n{self.tail()}")
            try:
                with urllib.request.urlopen(url, timeout=1) as resp:
                    if resp.status < 500:
                        return
            except urllib.error.HTTPError as exc:
                if exc.code < 500:
                    return
            except OSError:
                pass
            time.sleep(0.2)
        raise RuntimeError(f"{self.name} did not answer {url} within {timeout}s:\n{self.tail()}")

    def stop(self, timeout: float = 20.0) -> int | None:
        if self.alive():
            with contextlib.suppress(ProcessLookupError):
                os.killpg(self.proc.pid, signal.SIGTERM)
            try:
                self.proc.wait(timeout)
            except subprocess.TimeoutExpired:
                with contextlib.suppress(ProcessLookupError):
                    os.killpg(self.proc.pid, signal.SIGKILL)
                self.proc.wait()
        self._fh.close()
        return self.proc.returncode

    def __enter__(self) -> Process:
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()


def tree_pids(pid: int) -> list[int]:
    """The process and its descendants (uvicorn workers), from /proc."""
    children: dict[int, list[int]] = {}
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            stat = (entry / "stat").read_text()
        except OSError:
            continue
        ppid = int(stat.rsplit(")", 1)[1].split()[1])
        children.setdefault(ppid, []).append(int(entry.name))
    out, todo = [], [pid]
    while todo:
        p = todo.pop()
        out.append(p)
        todo.extend(children.get(p, []))
    return out


def rss_kib(pid: int) -> int:
    """Resident set size of a process and its descendants, KiB (VmRSS from /proc)."""
    total = 0
    for p in tree_pids(pid):
        try:
            for line in Path(f"/proc/{p}/status").read_text().splitlines():
                if line.startswith("VmRSS:"):
                    total += int(line.split()[1])
        except OSError:
            continue
    return total


def cpu_seconds(pid: int) -> float:
    """User + system CPU of a process and its descendants so far (from /proc/<pid>/stat)."""
    tick = os.sysconf("SC_CLK_TCK")
    total = 0.0
    for p in tree_pids(pid):
        try:
            fields = Path(f"/proc/{p}/stat").read_text().rsplit(")", 1)[1].split()
        except OSError:
            continue
        total += (int(fields[11]) + int(fields[12])) / tick
    return total


# --- results --------------------------------------------------------------------------------------


def machine() -> dict[str, Any]:
    cpu = "unknown"
    with contextlib.suppress(OSError):
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    mem_kib = 0
    with contextlib.suppress(OSError):
        for line in Path("/proc/meminfo").read_text().splitlines():
            if line.startswith("MemTotal:"):
                mem_kib = int(line.split()[1])
    load = os.getloadavg()
    return {
        "cpu": cpu,
        "cpus": os.cpu_count(),
        "memory_gib": round(mem_kib / 1024 / 1024, 1),
        "kernel": platform.release(),
        "python": platform.python_version(),
        "loadavg_at_start": [round(x, 2) for x in load],
    }


def write_result(name: str, result: dict[str, Any]) -> Path:
    RESULTS.mkdir(parents=True, exist_ok=True)
    path = RESULTS / f"{name}.json"
    path.write_text(json.dumps(result, indent=2, sort_keys=False) + "\n")
    return path


def read_result(name: str) -> dict[str, Any] | None:
    path = RESULTS / f"{name}.json"
    if not path.exists():
        return None
    data: dict[str, Any] = json.loads(path.read_text())
    return data


def workdir(prefix: str) -> Path:
    return Path(tempfile.mkdtemp(prefix=f"lhbench-{prefix}-"))


def percentile(values: Sequence[float], q: float) -> float:
    """Nearest-rank percentile (q in 0..100) of unsorted values; 0.0 for none."""
    if not values:
        return 0.0
    ordered = sorted(values)
    k = max(0, min(len(ordered) - 1, math.ceil(q / 100 * len(ordered)) - 1))
    return float(ordered[k])


def cleanup_queue(queue: str) -> int:
    """Delete this run's arq keys from the shared Redis (its queue and job keys, nothing else)."""
    import redis

    client = redis.Redis.from_url(REDIS_URL)
    try:
        keys = [f"arq:queue:{queue}"]
        for pattern in (
            f"arq:job:{queue}:*",
            f"arq:in-progress:{queue}:*",
            f"arq:retry:{queue}:*",
            f"arq:result:{queue}:*",
            f"{queue}*",
        ):
            keys.extend(k.decode() for k in client.scan_iter(match=pattern, count=1000))
        removed = 0
        for i in range(0, len(keys), 500):
            removed += cast(int, client.delete(*keys[i : i + 500]))
        return removed
    finally:
        client.close()


def cpu_by_group(server_pid: int | None) -> dict[str, float]:
    """CPU seconds used so far by: the server's process tree, PostgreSQL, wrk, everything else.

    Deltas of two calls show where a phase's CPU went on the whole machine (other users of the
    shared PostgreSQL count under ``postgresql``: run on a quiet machine).
    """
    tick = os.sysconf("SC_CLK_TCK")
    server = set(tree_pids(server_pid)) if server_pid else set()
    out = {"server": 0.0, "postgresql": 0.0, "wrk": 0.0, "other": 0.0}
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            raw = (entry / "stat").read_text()
        except OSError:
            continue
        comm = raw[raw.index("(") + 1 : raw.rindex(")")]
        fields = raw.rsplit(")", 1)[1].split()
        used = (int(fields[11]) + int(fields[12])) / tick
        if int(entry.name) in server:
            out["server"] += used
        elif comm == "postgres":
            out["postgresql"] += used
        elif comm == "wrk":
            out["wrk"] += used
        else:
            out["other"] += used
    with contextlib.suppress(OSError, ValueError):
        first = Path("/proc/stat").read_text().splitlines()[0].split()[1:]
        values = [int(v) for v in first]
        out["machine_busy"] = (sum(values) - values[3] - values[4]) / tick
        out["machine_total"] = sum(values) / tick
    return out


def cpu_cores(
    before: dict[str, float], after: dict[str, float], result: WrkResult
) -> dict[str, float]:
    """Cores used per group over a wrk phase (1.0 = one core busy the whole time).

    wrk has exited by the second sample, so its share comes from the run's own rusage.
    """
    seconds = float(result.summary["duration_us"]) / 1e6
    d = {k: round((after[k] - before.get(k, 0.0)) / seconds, 2) for k in after}
    d.pop("machine_total", None)
    d["wrk"] = round(float(result.summary.get("wrk_cpu_s", 0.0)) / seconds, 2)
    # Processes that exit during the phase take their CPU time with them: "other" is the rest.
    if "machine_busy" in d:
        d["other"] = round(
            max(0.0, d["machine_busy"] - d["server"] - d["postgresql"] - d["wrk"]), 2
        )
    return d


def scrape(base: str) -> dict[str, float]:
    """Unlabelled and summed sample values from the server's ``/metrics`` (text format)."""
    out: dict[str, float] = {}
    try:
        with urllib.request.urlopen(f"{base}/metrics", timeout=5) as resp:
            text = resp.read().decode()
    except OSError:
        return out
    for line in text.splitlines():
        if not line or line.startswith("#"):
            continue
        name_labels, _, value = line.rpartition(" ")
        name = name_labels.split("{", 1)[0]
        with contextlib.suppress(ValueError):
            out[name] = out.get(name, 0.0) + float(value)
    return out


def mean_batch(before: dict[str, float], after: dict[str, float]) -> float | None:
    """Mean deliveries per group-commit transaction between two scrapes."""
    key = "ledgerhook_ingest_commit_batch_size"
    n = after.get(f"{key}_count", 0.0) - before.get(f"{key}_count", 0.0)
    if n <= 0:
        return None
    return round((after.get(f"{key}_sum", 0.0) - before.get(f"{key}_sum", 0.0)) / n, 1)
