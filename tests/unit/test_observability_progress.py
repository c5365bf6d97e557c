"""Progress lines: periodic, rate-limited, and a summary (a fake clock, no sleeping)."""

from __future__ import annotations

import io

from ledgerhook.cli.progress import Progress


def test_periodic_counts_and_summary() -> None:
    now = [100.0]
    out = io.StringIO()
    p = Progress("verify", total=1000, interval=2.0, stream=out, clock=lambda: now[0])
    for _ in range(10):
        now[0] += 0.5
        p.advance(100)
    lines = out.getvalue().splitlines()
    # 5 seconds of work, one line at most every 2 seconds.
    assert lines == ["verify: 400/1000 rows (40%), 200/s", "verify: 800/1000 rows (80%), 200/s"]
    assert p.finish("chain OK") == "verify: chain OK: 1000 rows in 5.0s (200/s)"


def test_without_total() -> None:
    now = [0.0]
    out = io.StringIO()
    p = Progress("export", unit="deliveries", interval=1.0, stream=out, clock=lambda: now[0])
    now[0] = 1.0
    p.advance(7)
    assert out.getvalue() == "export: 7 deliveries, 7/s\n"
