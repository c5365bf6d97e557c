"""Private PostgreSQL and Redis servers and Ledgerhook processes, for tests that break them.

Everything here runs on loopback, on free ports, in a temporary directory, and never touches the
shared servers on 5432/6379: fault tests stop, kill and flush what they start, and only that.
PostgreSQL refuses to run as root, so when the tests run as root the cluster is created and run
as the ``postgres`` system user (``runuser``); its data directory is chowned to that user.

Processes are started in their own session (``start_new_session``) so that ``kill -9`` reaches a
server's children too (uvicorn reloaders, arq subprocesses) and nothing outlives the test.
"""

from __future__ import annotations

import contextlib
import os
import pwd
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
from collections.abc import Mapping, Sequence
from pathlib import Path

PG_BIN = Path(os.environ.get("LEDGERHOOK_TEST_PG_BIN", "/usr/lib/postgresql/15/bin"))
REPO = Path(__file__).resolve().parents[2]
LEDGERHOOK = [sys.executable, "-m", "ledgerhook.cli"]


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port: int = s.getsockname()[1]
        return port


def wait_port(port: int, timeout: float, *, proc: subprocess.Popen[bytes] | None = None) -> bool:
    """True once something accepts on 127.0.0.1:port; False at the deadline or if proc died."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc is not None and proc.poll() is not None:
            return False
        try:
            with socket.create_connection(("127.0.0.1", port), timeout=0.2):
                return True
        except OSError:
            time.sleep(0.05)
    return False


def _as_postgres_user() -> list[str]:
    """A command prefix that drops root for PostgreSQL's tools (they refuse to run as root)."""
    if os.geteuid() != 0:
        return []
    try:
        pwd.getpwnam("postgres")
    except KeyError:
        raise RuntimeError(
            "running as root and there is no 'postgres' user to run initdb as"
        ) from None
    return ["runuser", "-u", "postgres", "--"]


class PrivatePostgres:
    """A throwaway cluster: trust auth on 127.0.0.1, fsync on (durability is what we test)."""

    def __init__(self) -> None:
        self.port = free_port()
        self.root = Path(tempfile.mkdtemp(prefix="lh-pg-"))
        self.data = self.root / "data"
        self.log = self.root / "postgres.log"
        self._prefix = _as_postgres_user()
        if self._prefix:
            pg = pwd.getpwnam("postgres")
            os.chown(self.root, pg.pw_uid, pg.pw_gid)
        self._run(
            [
                str(PG_BIN / "initdb"),
                "-D",
                str(self.data),
                "-U",
                "postgres",
                "-A",
                "trust",
                "-E",
                "UTF8",
                "--no-instructions",
            ]
        )

    @property
    def url(self) -> str:
        return f"postgresql://postgres@127.0.0.1:{self.port}"

    def _run(self, args: Sequence[str], timeout: float = 120) -> None:
        subprocess.run(
            [*self._prefix, *args],
            check=True,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.PIPE,
            timeout=timeout,
            cwd=self.root,
        )

    def start(self) -> None:
        options = (
            f"-p {self.port} -k {self.root} -c listen_addresses=127.0.0.1 -c fsync=on "
            "-c max_connections=200 -c shared_buffers=32MB"
        )
        self._run(
            [
                str(PG_BIN / "pg_ctl"),
                "-D",
                str(self.data),
                "-l",
                str(self.log),
                "-o",
                options,
                "-w",
                "-t",
                "60",
                "start",
            ]
        )

    def stop(self, mode: str = "fast") -> None:
        self._run([str(PG_BIN / "pg_ctl"), "-D", str(self.data), "-m", mode, "-w", "stop"])

    def close(self) -> None:
        with contextlib.suppress(subprocess.SubprocessError, OSError):
            self.stop("immediate")
        shutil.rmtree(self.root, ignore_errors=True)


class PrivateRedis:
    """A Redis of our own, without persistence: a restart or FLUSHALL loses every queued job."""

    def __init__(self) -> None:
        exe = shutil.which("redis-server")
        if exe is None:
            raise RuntimeError("redis-server is not installed")
        self.exe = exe
        self.port = free_port()
        self.root = Path(tempfile.mkdtemp(prefix="lh-redis-"))
        self.proc: subprocess.Popen[bytes] | None = None

    @property
    def url(self) -> str:
        return f"redis://127.0.0.1:{self.port}/0"

    def start(self) -> None:
        self.proc = subprocess.Popen(
            [
                self.exe,
                "--port",
                str(self.port),
                "--bind",
                "127.0.0.1",
                "--save",
                "",
                "--appendonly",
                "no",
                "--dir",
                str(self.root),
            ],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
            start_new_session=True,
        )
        if not wait_port(self.port, 10, proc=self.proc):
            raise RuntimeError("private redis-server did not start")

    def stop(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait()
        self.proc = None

    def flushall(self) -> None:
        with socket.create_connection(("127.0.0.1", self.port), timeout=2) as s:
            s.sendall(b"*1\r\n$8\r\nFLUSHALL\r\n")
            reply = s.recv(64)
        if not reply.startswith(b"+OK"):
            raise RuntimeError(f"FLUSHALL answered {reply!r}")

    def close(self) -> None:
        self.stop()
        shutil.rmtree(self.root, ignore_errors=True)


class Service:
    """One ``ledgerhook`` process (``serve`` or ``worker``) that can be killed, stalled, restarted."""

    def __init__(
        self,
        name: str,
        args: Sequence[str],
        env: Mapping[str, str],
        logdir: Path,
        port: int | None = None,
    ) -> None:
        self.name = name
        self.args = list(args)
        self.env = dict(env)
        self.port = port
        self.logfile = logdir / f"{name}.log"
        self.proc: subprocess.Popen[bytes] | None = None
        self.starts = 0

    def start(self, *, wait: float = 30) -> None:
        with self.logfile.open("ab") as log:
            log.write(f"--- start {self.starts} ---\n".encode())
            log.flush()
            self.proc = subprocess.Popen(
                [*LEDGERHOOK, *self.args],
                env=self.env,
                cwd=REPO,
                stdout=log,
                stderr=subprocess.STDOUT,
                start_new_session=True,
            )
        self.starts += 1
        if self.port is not None and not wait_port(self.port, wait, proc=self.proc):
            raise RuntimeError(f"{self.name} did not listen on {self.port}: see {self.logfile}")

    def alive(self) -> bool:
        return self.proc is not None and self.proc.poll() is None

    def signal(self, sig: signal.Signals) -> None:
        if self.proc is not None:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(self.proc.pid, sig)

    def kill(self) -> None:
        """``kill -9`` of the whole process group, then reap it."""
        if self.proc is None:
            return
        self.signal(signal.SIGKILL)
        self.proc.wait()
        self.proc = None

    def stop(self, timeout: float = 10) -> None:
        if self.proc is None:
            return
        self.signal(signal.SIGCONT)
        self.signal(signal.SIGTERM)
        try:
            self.proc.wait(timeout)
        except subprocess.TimeoutExpired:
            self.kill()
        self.proc = None

    def output(self) -> str:
        return self.logfile.read_text(errors="replace") if self.logfile.exists() else ""


def run_cli(
    env: Mapping[str, str], *args: str, timeout: float = 300
) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [*LEDGERHOOK, *args],
        env=dict(env),
        cwd=REPO,
        capture_output=True,
        text=True,
        timeout=timeout,
        check=False,
    )


def cli_has(env: Mapping[str, str], *command: str) -> bool:
    """Whether ``ledgerhook <command> --help`` exists (parts of the CLI land over time)."""
    return run_cli(env, *command, "--help", timeout=60).returncode == 0
