"""The worker's log stays for people: expected arq chatter is demoted, job results serialise."""

from __future__ import annotations

import logging

import pytest
from arq.worker import JobExecutionFailed

from ledgerhook.app import create_app
from ledgerhook.jobs import deserialize, serialize
from ledgerhook.logs import DrainedJobsExpire, QuietCronJobs, configure_logging
from ledgerhook.settings import Secret, Settings


def _record(msg: str, level: int = logging.WARNING) -> logging.LogRecord:
    return logging.LogRecord("arq.worker", level, __file__, 1, msg, ("q:delivery:7",), None)


@pytest.mark.parametrize(("root_level", "passes"), [(logging.INFO, False), (logging.DEBUG, True)])
def test_a_drained_jobs_expiry_is_debug(root_level: int, passes: bool) -> None:
    root = logging.getLogger()
    before = root.level
    root.setLevel(root_level)
    try:
        r = _record("job %s expired")
        assert DrainedJobsExpire().filter(r) is passes
        assert r.levelname == "DEBUG"
    finally:
        root.setLevel(before)


def test_other_arq_warnings_are_left_alone() -> None:
    r = _record("job %s timed out")
    assert DrainedJobsExpire().filter(r) is True
    assert r.levelno == logging.WARNING


def test_a_failed_jobs_exception_serialises_as_text() -> None:
    # arq stores the exception of a failed (e.g. expired) job as its result.
    data = serialize({"r": JobExecutionFailed("job expired"), "s": False})
    assert deserialize(data) == {"r": "JobExecutionFailed: job expired", "s": False}


def test_anything_else_unserialisable_is_still_an_error() -> None:
    with pytest.raises(TypeError):
        serialize({"r": object()})


def _arq_line(msg: str, *args: object) -> logging.LogRecord:
    return logging.LogRecord("arq.worker", logging.INFO, __file__, 1, msg, args, None)


def test_cron_start_and_finish_lines_are_debug_other_jobs_stay_info() -> None:
    quiet = QuietCronJobs(frozenset({"q:processors.sweep"}))
    root = logging.getLogger()
    before = root.level
    root.setLevel(logging.INFO)
    try:
        start = _arq_line("%6.2fs → %s(%s)%s", 1.0, "q:processors.sweep", "", "")
        finish = _arq_line("%6.2fs ← %s ● %s", 0.01, "q:processors.sweep", "0")
        assert quiet.filter(start) is False and start.levelno == logging.DEBUG
        assert quiet.filter(finish) is False
        job = _arq_line("%6.2fs → %s(%s)%s", 0.0, "abc:process_delivery", "7", "")
        assert quiet.filter(job) is True and job.levelno == logging.INFO
        failed = _arq_line("%6.2fs ! %s failed, %s: %s", 0.1, "q:processors.sweep", "E", "x")
        failed.levelno = logging.ERROR
        assert quiet.filter(failed) is True  # a failing cron is still heard
    finally:
        root.setLevel(before)


def test_the_app_leaves_logging_to_ledgerhook() -> None:
    """Litestar's default logging config replaced the root handler: a third format on stderr."""
    settings = Settings(database_url=Secret("postgresql://h/x"), log_format="text")
    root = logging.getLogger()
    saved = list(root.handlers), root.level
    try:
        configure_logging(settings)
        handlers = list(root.handlers)
        create_app(settings)
        assert root.handlers == handlers
        assert root.level == logging.INFO
        assert logging.getLogger("stripe").getEffectiveLevel() == logging.WARNING
    finally:
        root.handlers[:] = saved[0]
        root.setLevel(saved[1])
        logging.captureWarnings(False)
