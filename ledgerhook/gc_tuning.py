"""Keep the garbage collector's full passes off the request path.

CPython's full (generation 2) collection walks every tracked object. After imports and app
construction a Ledgerhook process holds about 80 000 of them, so each full pass paused the
event loop for ~20 ms, and under load those pauses landed in requests' latency (ingest
benchmark at the maximum rate: p99 41 ms before, 17 ms after). Objects alive at start-up live
as long as the process: :func:`gc.freeze` moves them to a permanent generation that
collections skip. Cycles created later are still found and collected.
"""

from __future__ import annotations

import gc

__all__ = ["freeze_startup_objects"]


def freeze_startup_objects() -> int:
    """Collect once, then exempt every surviving object from future passes; returns how many.

    Once per process: a later call (tests build many apps in one process) would make whatever
    is alive then permanent too, and frozen cycles are never freed.
    """
    if gc.get_freeze_count() == 0:
        gc.collect()
        gc.freeze()
    return gc.get_freeze_count()
