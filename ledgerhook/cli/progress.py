"""Periodic counts for long commands (replay, export, verify, reconcile), then one summary line.

At most one line per ``interval`` seconds on stderr, so output stays readable in a terminal and
in CI logs alike (no carriage-return bars that logs mangle); stdout is left to the command's
result. Usage: ``p = Progress("verify", total=n)``, ``p.advance(k)`` as work is done,
``p.finish("chain OK")`` at the end.
"""

from __future__ import annotations

import sys
import time
from collections.abc import Callable
from typing import TextIO

__all__ = ["Progress"]


class Progress:
    def __init__(
        self,
        label: str,
        *,
        total: int | None = None,
        unit: str = "rows",
        interval: float = 2.0,
        stream: TextIO | None = None,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.label, self.total, self.unit, self.interval = label, total, unit, interval
        self.stream = stream or sys.stderr
        self.clock = clock
        self.done = 0
        self.started = clock()
        self._last = self.started

    def _rate(self, now: float) -> float:
        elapsed = now - self.started
        return self.done / elapsed if elapsed > 0 else 0.0

    def advance(self, n: int = 1) -> None:
        self.done += n
        now = self.clock()
        if now - self._last >= self.interval:
            self._last = now
            of = f"/{self.total}" if self.total is not None else ""
            pct = f" ({100 * self.done // self.total}%)" if self.total else ""
            print(
                f"{self.label}: {self.done}{of} {self.unit}{pct}, {self._rate(now):.0f}/s",
                file=self.stream,
                flush=True,
            )

    def finish(self, outcome: str = "done") -> str:
        now = self.clock()
        line = (
            f"{self.label}: {outcome}: {self.done} {self.unit} in {now - self.started:.1f}s "
            f"({self._rate(now):.0f}/s)"
        )
        print(line, file=self.stream, flush=True)
        return line
