"""``ledgerhook run``: migrate, then the API and the worker together, for local use.

Two child processes, ``ledgerhook serve`` and ``ledgerhook worker``, supervised by this one. They
run in a process group of their own, so a terminal's Ctrl-C reaches only the supervisor, which
forwards one SIGTERM to each child (both stop gracefully on it) and exits 0 once both are gone.
A second Ctrl-C, or a child still running after the grace period, gets SIGKILL. If a child dies
on its own, the other is stopped and ``run`` exits non-zero: half a Ledgerhook (webhooks stored
but never applied, or nothing answering) must not look healthy. Children also get SIGTERM if the
supervisor itself is killed (``PR_SET_PDEATHSIG`` on Linux).

What the supervisor says goes through logging, in the format the children use (the configured
``json`` or ``text``), so the terminal shows one format.

Both children share one ``PROMETHEUS_MULTIPROC_DIR``, so the API's ``/metrics`` shows the
worker's metrics too. Production runs ``serve`` and ``worker`` separately (see deploy/).
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import ctypes
import ctypes.util
import logging
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import time
import urllib.error
import urllib.request
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from types import FrameType
from typing import Any

from ledgerhook.logs import configure_logging
from ledgerhook.migrations import MigrationError, migrate
from ledgerhook.settings import load_settings

__all__ = ["Supervisor", "cmd_run", "register"]

log = logging.getLogger("ledgerhook.run")

CLI = (sys.executable, "-m", "ledgerhook.cli")
GRACE_SECONDS = 20.0
_PR_SET_PDEATHSIG = 1
# A child that exits 0, or by the signal we sent it, stopped cleanly.
_CLEAN = {0, -signal.SIGTERM, -signal.SIGINT, 128 + signal.SIGTERM, 128 + signal.SIGINT}


def register(sub: Any) -> None:
    p = sub.add_parser(
        "run",
        help="migrate, then run the API and the worker together (local use; Ctrl-C stops both)",
    )
    p.add_argument("--host", default="127.0.0.1", help="API address (default 127.0.0.1)")
    p.add_argument("--port", type=int, default=8000, help="API port (default 8000)")
    p.add_argument("--workers", type=int, default=1, help="API server processes (default 1)")
    p.set_defaults(handler=cmd_run)


def _die_with_parent() -> None:
    """In the child, before exec: get SIGTERM when the supervisor dies (Linux only)."""
    name = ctypes.util.find_library("c")
    if name is None:
        return
    with contextlib.suppress(OSError, AttributeError):
        ctypes.CDLL(name, use_errno=True).prctl(_PR_SET_PDEATHSIG, signal.SIGTERM)


@dataclass
class Child:
    name: str
    argv: list[str]
    proc: subprocess.Popen[bytes] | None = None

    def send(self, sig: signal.Signals) -> None:
        if self.proc is not None and self.proc.poll() is None:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(self.proc.pid, sig)


@dataclass
class Supervisor:
    """Start children, wait until one dies or a stop is requested, stop the rest, report."""

    children: list[Child]
    env: Mapping[str, str]
    grace: float = GRACE_SECONDS
    on_tick: Callable[[], None] | None = None
    _stop: int = field(default=0, init=False)

    def request_stop(self, signum: int, frame: FrameType | None = None) -> None:
        self._stop += 1
        if self._stop > 1:  # impatient second Ctrl-C: no more waiting
            for child in self.children:
                child.send(signal.SIGKILL)

    def run(self) -> int:
        previous = {
            sig: signal.signal(sig, self.request_stop) for sig in (signal.SIGINT, signal.SIGTERM)
        }
        try:
            for child in self.children:
                child.proc = subprocess.Popen(  # noqa: S603 (our own interpreter and CLI)
                    child.argv,
                    env=dict(self.env),
                    process_group=0,
                    preexec_fn=_die_with_parent,  # noqa: PLW1509 (no threads yet)
                )
                log.info("started %s (pid %s)", child.name, child.proc.pid)
            failed = self._wait()
            self._stop_all()
        finally:
            for sig, handler in previous.items():
                signal.signal(sig, handler)
        if failed is not None:
            code = failed.proc.returncode if failed.proc else 1
            log.error("%s exited unexpectedly (code %s); stopped the others", failed.name, code)
            return code if code > 0 else 1
        unclean = [c for c in self.children if c.proc and c.proc.returncode not in _CLEAN]
        for child in unclean:
            assert child.proc is not None
            log.error("%s did not stop cleanly (code %s)", child.name, child.proc.returncode)
        log.info("stopped")
        return 1 if unclean else 0

    def _wait(self) -> Child | None:
        """The first child to die on its own, or None when a stop was requested."""
        while not self._stop:
            for child in self.children:
                if child.proc is not None and child.proc.poll() is not None:
                    return child
            if self.on_tick is not None:
                self.on_tick()
            time.sleep(0.1)
        return None

    def _stop_all(self) -> None:
        for child in self.children:
            child.send(signal.SIGTERM)
        deadline = time.monotonic() + self.grace
        for child in self.children:
            if child.proc is None:
                continue
            try:
                child.proc.wait(max(0.0, deadline - time.monotonic()))
            except subprocess.TimeoutExpired:
                log.warning("%s still running after %.0fs: killing it", child.name, self.grace)
                child.send(signal.SIGKILL)
                child.proc.wait()


class _ReadyProbe:
    """Prints once when the API answers ``/health/ready``: the moment to send webhooks."""

    def __init__(self, url: str) -> None:
        self.url = url
        self.done = False
        self.next_try = 0.0

    def __call__(self) -> None:
        if self.done or time.monotonic() < self.next_try:
            return
        self.next_try = time.monotonic() + 0.5
        try:
            with urllib.request.urlopen(self.url + "/health/ready", timeout=0.5) as resp:  # noqa: S310
                ready = resp.status == 200
        except (urllib.error.URLError, OSError):
            return
        if ready:
            self.done = True
            log.info("ready: %s (webhooks at %s/webhooks/stripe, Ctrl-C stops)", self.url, self.url)


def build_children(host: str, port: int, workers: int) -> list[Child]:
    serve = [*CLI, "serve", "--host", host, "--port", str(port)]
    if workers > 1:
        serve += ["--workers", str(workers)]
    return [Child("api", serve), Child("worker", [*CLI, "worker"])]


def cmd_run(args: argparse.Namespace) -> int:
    settings = load_settings()
    configure_logging(settings)
    try:
        applied = asyncio.run(migrate(settings))
    except MigrationError as exc:
        log.error("migration failed: %s", exc)
        return 1
    log.info("database migrated (%s migration(s) applied)", len(applied))
    env = dict(os.environ)
    own_dir = None
    if not env.get("PROMETHEUS_MULTIPROC_DIR"):
        own_dir = tempfile.mkdtemp(prefix="ledgerhook-metrics-")
        env["PROMETHEUS_MULTIPROC_DIR"] = own_dir
    display_host = "127.0.0.1" if args.host in {"0.0.0.0", "::"} else args.host  # noqa: S104
    probe = _ReadyProbe(f"http://{display_host}:{args.port}")
    supervisor = Supervisor(build_children(args.host, args.port, args.workers), env, on_tick=probe)
    try:
        return supervisor.run()
    finally:
        if own_dir is not None:
            shutil.rmtree(own_dir, ignore_errors=True)
