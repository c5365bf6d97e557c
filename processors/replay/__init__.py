"""Rebuild billing state from the audit log, and compare it with the live state.

The rebuild is the fold the workers do, run over the log again: normalise each delivery's stored
bytes, keep the first delivery of each event, apply the pure transitions, and derive every row
live processing writes (settlement outcome, history, subscription changes with their MRR deltas,
anomalies, current state) into ``processors_replay``, which has the same tables as
``processors`` and which the application role may empty and refill.

- :func:`rebuild` (``ledgerhook replay --rebuild``): the whole log, backlog included.
- :func:`rebuild_and_compare` (``--compare``, with or without ``--rebuild``): the deliveries live
  had settled in one snapshot, then every difference from live in that same snapshot, so it is
  correct while workers are busy (:mod:`._rebuild`).
- :func:`compare`: live as it is now against whatever ``processors_replay`` holds.

Which deliveries are folded, and in which order, is decided in one place: :mod:`._order`.
Modules: ``_order`` (which, in what order) → ``_fold`` (pure) → ``_store`` (COPY into the
replay schema) → ``_compare`` (SQL, field by field); ``_rebuild`` puts them in one transaction.
"""

from processors.replay._compare import TABLES, Difference, Table, compare
from processors.replay._order import replay_order
from processors.replay._rebuild import RebuildStats, Report, rebuild, rebuild_and_compare

__all__ = [
    "TABLES",
    "Difference",
    "RebuildStats",
    "Report",
    "Table",
    "compare",
    "rebuild",
    "rebuild_and_compare",
    "replay_order",
]
