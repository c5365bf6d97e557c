"""The worker serves its own metrics when ``LEDGERHOOK_WORKER_METRICS_PORT`` is set."""

from __future__ import annotations

import urllib.request

from ledgerhook import metrics
from ledgerhook.observability import start_worker_metrics
from ledgerhook.settings import Secret, Settings
from tests.conftest import free_port


def test_worker_metrics_server_serves_the_registry() -> None:
    assert start_worker_metrics(Settings(database_url=Secret("postgresql://x/y"))) is None
    port = free_port()
    server = start_worker_metrics(
        Settings(database_url=Secret("postgresql://x/y"), worker_metrics_port=port)
    )
    assert server is not None
    try:
        metrics.events_processed.labels(provider="stripe", outcome="applied").inc()
        with urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=5) as resp:
            text = resp.read().decode()
    finally:
        server.shutdown()
        server.server_close()
    assert 'ledgerhook_events_processed_total{outcome="applied",provider="stripe"}' in text
    assert "ledgerhook_oldest_unprocessed_age_seconds" in text
