"""Start-up objects are frozen once per process, so full GC passes stay short."""

from __future__ import annotations

import subprocess
import sys
import textwrap


def test_freezing_is_once_per_process_and_shortens_full_passes() -> None:
    # In a child process: the test runner's own process must not have its objects frozen.
    code = textwrap.dedent(
        """
        import gc, time
        import ledgerhook.app  # the API's imports: tens of thousands of objects
        from ledgerhook.gc_tuning import freeze_startup_objects

        def full_pass():
            t = time.perf_counter(); gc.collect(); return time.perf_counter() - t

        before = min(full_pass() for _ in range(3))
        frozen = freeze_startup_objects()
        assert frozen > 10_000, frozen
        junk = [object() for _ in range(1000)]
        assert freeze_startup_objects() == frozen  # a second call freezes nothing new
        after = min(full_pass() for _ in range(3))
        assert after < before / 5, (before, after)
        """
    )
    subprocess.run([sys.executable, "-c", code], check=True, timeout=60)
