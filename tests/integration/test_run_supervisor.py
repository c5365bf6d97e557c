"""The supervisor of ``ledgerhook run`` with stand-in children: signals, crashes, clean exits.

The supervisor runs in a child process of the test (it installs signal handlers), supervising
small Python programs that behave like ``serve``/``worker`` on SIGTERM.
"""

from __future__ import annotations

import os
import re
import signal
import subprocess
import sys
import textwrap
import time

import pytest

GRACEFUL = (
    "import signal,sys,time; signal.signal(signal.SIGTERM, lambda *a: sys.exit(0)); time.sleep(120)"
)
STUBBORN = "import signal,time; signal.signal(signal.SIGTERM, signal.SIG_IGN); time.sleep(120)"
CRASHES = "import time,sys; time.sleep(0.5); sys.exit(3)"


def _supervise(*programs: str, grace: float = 5.0) -> subprocess.Popen[str]:
    script = textwrap.dedent(
        f"""
        import logging, sys
        logging.basicConfig(level=logging.INFO)  # the supervisor logs; `run` configures this
        from ledgerhook.cli.run import Child, Supervisor
        programs = {list(programs)!r}
        children = [Child(f"c{{i}}", [sys.executable, "-c", p]) for i, p in enumerate(programs)]
        sys.exit(Supervisor(children, dict(__import__("os").environ), grace={grace}).run())
        """
    )
    return subprocess.Popen([sys.executable, "-c", script], stderr=subprocess.PIPE, text=True)


def _pids(proc: subprocess.Popen[str], count: int) -> list[int]:
    assert proc.stderr is not None
    pids: list[int] = []
    while len(pids) < count:
        line = proc.stderr.readline()
        assert line, "supervisor ended before starting its children"
        match = re.search(r"started \S+ \(pid (\d+)\)", line)
        if match:
            pids.append(int(match.group(1)))
    return pids


def _gone(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return True
    return False


@pytest.mark.parametrize("sig", [signal.SIGINT, signal.SIGTERM])
def test_signal_stops_both_children_and_exits_zero(sig: signal.Signals) -> None:
    with _supervise(GRACEFUL, GRACEFUL) as proc:
        pids = _pids(proc, 2)
        time.sleep(0.3)
        proc.send_signal(sig)
        assert proc.wait(timeout=10) == 0
        assert all(_gone(p) for p in pids)
        assert proc.stderr is not None
        assert "stopped" in proc.stderr.read()


def test_a_dying_child_stops_the_other_and_fails() -> None:
    with _supervise(GRACEFUL, CRASHES) as proc:
        pids = _pids(proc, 2)
        assert proc.wait(timeout=10) == 3
        assert all(_gone(p) for p in pids)
        assert proc.stderr is not None
        assert "c1 exited unexpectedly (code 3)" in proc.stderr.read()


def test_a_child_that_exits_zero_on_its_own_is_still_a_failure() -> None:
    with _supervise(GRACEFUL, "pass") as proc:
        _pids(proc, 2)
        assert proc.wait(timeout=10) == 1


def test_a_child_ignoring_sigterm_is_killed_after_the_grace_period() -> None:
    with _supervise(GRACEFUL, STUBBORN, grace=1.0) as proc:
        pids = _pids(proc, 2)
        time.sleep(0.3)
        started = time.monotonic()
        proc.send_signal(signal.SIGINT)
        code = proc.wait(timeout=10)
        assert time.monotonic() - started < 5
        assert all(_gone(p) for p in pids)
        assert code == 1  # killed, not a clean stop
        assert proc.stderr is not None
        assert "killing it" in proc.stderr.read()


def test_children_die_with_a_killed_supervisor() -> None:
    with _supervise(GRACEFUL, GRACEFUL) as proc:
        pids = _pids(proc, 2)
        proc.kill()
        proc.wait(timeout=5)
        deadline = time.monotonic() + 5
        while time.monotonic() < deadline and not all(_gone(p) for p in pids):
            time.sleep(0.05)
        assert all(_gone(p) for p in pids)
