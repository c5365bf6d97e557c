"""A whole Ledgerhook installation of the test's own: PostgreSQL, Redis, API servers, workers.

``Cluster`` starts everything from the real CLI (``ledgerhook migrate``, ``serve``, ``worker``)
with environment variables pointing at the private servers, and restarts what a fault stops.
A process that exits without the harness having killed it is recorded in ``unexpected_exits``:
"never crashes a process" is one of the things the fault run checks.
"""

from __future__ import annotations

import asyncio
import os
import signal
import tempfile
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path

import asyncpg

from audit.sequencer import SEQUENCER_LOCK
from tests.faults.services import PrivatePostgres, PrivateRedis, Service, free_port, run_cli
from tests.faults.stream import CHARGEBEE_AUTH, CHARGEBEE_SITE, STRIPE_ACCOUNT, STRIPE_SECRET

CHECKPOINT_KEY = "PRIVATE+KEY+ledgerhook-faults+0ad2cc09+AQcHBwcHBwcHBwcHBwcHBwcHBwcHBwcHBwcHBwcHBwcH"  # not a secret
DBNAME = "ledgerhook_faults"


@dataclass
class ClusterConfig:
    api_processes: int = 2
    worker_processes: int = 2
    job_timeout_seconds: int = 3
    sweep_after_seconds: float = 2.0
    sweep_interval_seconds: int = 1
    extra_env: dict[str, str] = field(default_factory=dict)


class Cluster:
    def __init__(self, config: ClusterConfig | None = None) -> None:
        self.config = config or ClusterConfig()
        self.logdir = Path(tempfile.mkdtemp(prefix="lh-faults-"))
        self.pg = PrivatePostgres()
        self.redis = PrivateRedis()
        self.apis: list[Service] = []
        self.workers: list[Service] = []
        self.unexpected_exits: list[str] = []
        # Faults and the supervisor run in threads; one at a time touches the processes.
        self.lock = threading.RLock()

    @property
    def database_url(self) -> str:
        return f"{self.pg.url}/{DBNAME}"

    @property
    def env(self) -> dict[str, str]:
        c = self.config
        env = {k: v for k, v in os.environ.items() if not k.startswith("LEDGERHOOK_")}
        env.update(
            {
                "LEDGERHOOK_ENV_FILE": "",  # never a developer's .env
                "LEDGERHOOK_DATABASE_URL": self.database_url,
                "LEDGERHOOK_REDIS_URL": self.redis.url,
                "LEDGERHOOK_CHECKPOINT_KEY": CHECKPOINT_KEY,
                "LEDGERHOOK_LOG_FORMAT": "json",
                "LEDGERHOOK_LOG_LEVEL": "INFO",
                "LEDGERHOOK_DB_POOL_MIN": "1",
                "LEDGERHOOK_DB_POOL_MAX": "8",
                "LEDGERHOOK_STRIPE_WEBHOOK_SECRETS": STRIPE_SECRET,
                "LEDGERHOOK_STRIPE_ACCOUNT": STRIPE_ACCOUNT,
                "LEDGERHOOK_CHARGEBEE_BASIC_AUTH": CHARGEBEE_AUTH,
                "LEDGERHOOK_CHARGEBEE_SITE": CHARGEBEE_SITE,
                "LEDGERHOOK_INGEST__COMMIT_TIMEOUT_SECONDS": "5",
                "LEDGERHOOK_PROCESSORS__QUEUE_NAME": "lh-faults",
                "LEDGERHOOK_PROCESSORS__JOB_TIMEOUT_SECONDS": str(c.job_timeout_seconds),
                "LEDGERHOOK_PROCESSORS__SWEEP_AFTER_SECONDS": str(c.sweep_after_seconds),
                "LEDGERHOOK_PROCESSORS__SWEEP_INTERVAL_SECONDS": str(c.sweep_interval_seconds),
                "PYTHONUNBUFFERED": "1",
            }
        )
        env.update(c.extra_env)
        return env

    def start(self) -> None:
        self.pg.start()
        self.redis.start()
        migrated = run_cli(self.env, "migrate")
        if migrated.returncode != 0:
            raise RuntimeError(f"ledgerhook migrate failed: {migrated.stderr}")
        env = self.env
        for i in range(self.config.api_processes):
            port = free_port()
            api = Service(
                f"api{i}",
                ["serve", "--host", "127.0.0.1", "--port", str(port)],
                env,
                self.logdir,
                port=port,
            )
            self.apis.append(api)
        for i in range(self.config.worker_processes):
            self.workers.append(Service(f"worker{i}", ["worker"], env, self.logdir))
        for s in (*self.apis, *self.workers):
            s.start()

    @property
    def api_ports(self) -> list[int]:
        return [a.port for a in self.apis if a.port is not None]

    def supervise(self) -> None:
        """Restart any process that died on its own, and remember that it did."""
        with self.lock:
            for s in (*self.apis, *self.workers):
                if s.proc is not None and s.proc.poll() is not None:
                    code = s.proc.returncode
                    self.unexpected_exits.append(f"{s.name} exited with {code}")
                    s.proc = None
                    s.start()

    def sequencer_leader(self) -> Service | None:
        """The worker whose sequencer leads now, from its log since its last start."""
        for w in self.workers:
            if w.proc is None or w.proc.poll() is not None:
                continue
            current = w.output().rsplit("--- start ", 1)[-1]
            lead = current.rfind("sequencer leading")
            if lead >= 0 and current.rfind("sequencer stepped down") < lead:
                return w
        return None

    def leaders(self) -> int:
        """Sessions holding the sequencer's lock in PostgreSQL right now (0 or 1)."""

        async def count() -> int:
            conn = await asyncpg.connect(self.database_url, timeout=5)
            try:
                n: int = await conn.fetchval(
                    "SELECT count(*) FROM pg_locks WHERE locktype = 'advisory' AND granted "
                    "AND classid = 0 AND objid = $1::oid AND objsubid = 1",
                    SEQUENCER_LOCK,
                )
                return n
            finally:
                await conn.close()

        try:
            return asyncio.run(count())
        except (OSError, asyncpg.PostgresError, asyncpg.InterfaceError, TimeoutError):
            return -1

    def stall(self, service: Service, seconds: float) -> None:
        service.signal(signal.SIGSTOP)
        time.sleep(seconds)
        service.signal(signal.SIGCONT)

    def close(self) -> None:
        for s in (*self.apis, *self.workers):
            s.stop()
        self.redis.close()
        self.pg.close()
        # Process logs stay in ``logdir`` for a failed run's report; small, under /tmp.
