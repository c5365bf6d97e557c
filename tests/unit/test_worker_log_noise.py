"""The worker's log stays for people: expected arq chatter is demoted, job results serialise."""

from __future__ import annotations

import logging

import pytest
from arq.worker import JobExecutionFailed

from ledgerhook.jobs import deserialize, serialize
from ledgerhook.logs import DrainedJobsExpire


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
