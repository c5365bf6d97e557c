"""The arq worker composition: names, serializer, queue, crons (no I/O)."""

from __future__ import annotations

import pytest

from ledgerhook.jobs import CHECK_DRIFT, PROCESS_DELIVERY, SYNC_OBJECTS, deserialize, serialize
from ledgerhook.settings import ProcessorSettings
from ledgerhook.worker import every, worker_settings
from tests.conftest import make_settings


def test_worker_settings_follow_the_shared_contract() -> None:
    s = make_settings(
        "x", processors=ProcessorSettings(queue_name="q1", max_jobs=7, job_timeout_seconds=9)
    )
    ws = worker_settings(s)
    assert [f.name for f in ws["functions"]] == [PROCESS_DELIVERY, SYNC_OBJECTS, CHECK_DRIFT]
    # Runs started by API resume when started again: arq does not retry them.
    assert [f.max_tries for f in ws["functions"][1:]] == [1, 1]
    assert ws["queue_name"] == "q1"
    assert ws["job_serializer"] is serialize
    assert ws["job_deserializer"] is deserialize
    assert (ws["max_jobs"], ws["job_timeout"], ws["keep_result"]) == (7, 9, 0)
    names = {c.name for c in ws["cron_jobs"]}
    # Cron names carry the queue: installations sharing one Redis never skip each other's runs.
    assert {"q1:processors.sweep", "q1:audit.ensure_partitions", "q1:processors.analyze"} <= names


def test_the_statistics_job_can_be_turned_off() -> None:
    s = make_settings(
        "x", processors=ProcessorSettings(queue_name="q1", analyze_interval_seconds=0)
    )
    assert "q1:processors.analyze" not in {c.name for c in worker_settings(s)["cron_jobs"]}


@pytest.mark.parametrize(
    ("seconds", "expected"),
    [
        (15, {"second": {0, 15, 30, 45}}),
        (1, {"second": set(range(60))}),
        (60, {"minute": set(range(60)), "second": 0}),
        (300, {"minute": set(range(0, 60, 5)), "second": 0}),
    ],
)
def test_every(seconds: int, expected: dict[str, object]) -> None:
    assert every(seconds) == expected
