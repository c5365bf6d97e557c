"""Start from the provider's truth: list its objects and store each as a delivery (origin sync).

- :mod:`.runner`: ``ledgerhook sync`` (and the worker's sync job): resumable, page by page.
- :mod:`.stripe_api`, :mod:`.chargebee_api`: the official SDKs, exact bytes, retries (:mod:`.retry`).
- :mod:`.store`: fetched objects → deliveries (also drift repairs); :mod:`.identity` (pure):
  event ids that make an unchanged re-fetch a duplicate, and the fetch second.
- :mod:`.cursors`: where each listing stands, in PostgreSQL.
"""

from processors.sync.runner import ListProgress, ListSummary, SyncSummary, run_sync, target

__all__ = ["ListProgress", "ListSummary", "SyncSummary", "run_sync", "target"]
