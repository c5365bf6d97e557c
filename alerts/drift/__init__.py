"""State drift: is the billing state still what the provider holds? (compare: pure; check: I/O)."""

from alerts.drift.check import DriftReport, drift_sweep, run_drift
from alerts.drift.compare import Verdict, compare

__all__ = ["DriftReport", "Verdict", "compare", "drift_sweep", "run_drift"]
