"""What an idle ``ledgerhook run`` writes: every line in the one configured format, and no line per
cron run (the sweeper, analyze and alert sweeps ran every 2 s here, and said nothing)."""

from __future__ import annotations

import json
import time
import urllib.request

from tests.integration.run_helpers import ledgerhook_run

CRONS_EVERY_2S = {
    "LEDGERHOOK_LOG_LEVEL": "INFO",
    "LEDGERHOOK_PROCESSORS__SWEEP_INTERVAL_SECONDS": "2",
    "LEDGERHOOK_PROCESSORS__ANALYZE_INTERVAL_SECONDS": "2",
    "LEDGERHOOK_ALERTS__SWEEP_INTERVAL_SECONDS": "2",
}


def test_an_idle_run_is_quiet_and_writes_one_format() -> None:
    with ledgerhook_run("idlelogs", **CRONS_EVERY_2S) as lh:
        time.sleep(8)
        with urllib.request.urlopen(lh.url + "/metrics", timeout=5) as resp:
            metrics = resp.read().decode()
        text = lh.output()
    # The crons did run: the sweeper and the alert sweep set these gauges.
    assert "ledgerhook_queue_depth" in metrics and "ledgerhook_alerts_open{" in metrics

    entries = []
    for line in text.splitlines():
        try:
            entries.append(json.loads(line))
        except ValueError:
            raise AssertionError(f"a line not in the configured JSON format: {line!r}") from None
    loggers = {e["logger"] for e in entries}
    assert {"ledgerhook.run", "uvicorn.error", "arq.worker"} <= loggers  # theirs too, as JSON

    ready = next(i for i, e in enumerate(entries) if e["msg"].startswith("ready: "))
    idle = [e for e in entries[ready + 1 :] if e["logger"] != "ledgerhook.run"]
    assert idle == [], "an idle worker logged:\n" + "\n".join(map(str, idle))
