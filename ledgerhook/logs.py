"""Structured logs: one JSON object per line, with bound context (request, delivery, job ids).

Context travels in a ContextVar, so concurrent requests and jobs never mix their ids. Raw bodies
and secrets are never logged: callers log ids and outcomes, and Secret values mask themselves.

Every line a process writes has the one configured format (``json`` or ``text``): the root logger
has the only handler, and the libraries' loggers (uvicorn, arq, Litestar, stripe, httpx, Python
warnings) propagate to it instead of bringing their own. An idle worker is quiet: arq's "job
started/finished" lines for cron jobs are debug (:class:`QuietCronJobs`); a cron job that did
something says so itself, at info.
"""

from __future__ import annotations

import contextvars
import logging
import sys
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import UTC, datetime
from typing import Any

import msgspec

from ledgerhook.settings import Settings

__all__ = [
    "DrainedJobsExpire",
    "QuietCronJobs",
    "bind",
    "configure_logging",
    "log_context",
    "quiet_cron_jobs",
]

log_context: contextvars.ContextVar[dict[str, Any] | None] = contextvars.ContextVar(
    "log_context", default=None
)
_encoder = msgspec.json.Encoder()
_RESERVED = set(logging.LogRecord("", 0, "", 0, "", (), None).__dict__) | {"message", "asctime"}


class JsonFormatter(logging.Formatter):
    def format(self, record: logging.LogRecord) -> str:
        entry: dict[str, Any] = {
            "ts": datetime.fromtimestamp(record.created, UTC).isoformat(timespec="milliseconds"),
            "level": record.levelname.lower(),
            "logger": record.name,
            "msg": record.getMessage(),
        }
        entry.update(log_context.get() or {})
        for key, value in record.__dict__.items():
            if key not in _RESERVED and not key.startswith("_"):
                entry[key] = value
        if record.exc_info:
            entry["exc"] = self.formatException(record.exc_info)
        return _encoder.encode(entry).decode()


@contextmanager
def bind(**values: Any) -> Iterator[None]:
    token = log_context.set({**(log_context.get() or {}), **values})
    try:
        yield
    finally:
        log_context.reset(token)


class DrainedJobsExpire(logging.Filter):
    """arq's "job ... expired" warning, demoted to debug.

    The batcher removes the queued jobs of deliveries it drained from PostgreSQL; arq may
    already have read such a job's id from the queue, and then finds its data gone. That is
    the design working (the delivery was applied), not something for on-call, and under load it
    would be several warnings a second.
    """

    def filter(self, record: logging.LogRecord) -> bool:
        if record.levelno == logging.WARNING and record.msg == "job %s expired":
            record.levelno, record.levelname = logging.DEBUG, "DEBUG"
            return logging.getLogger().isEnabledFor(logging.DEBUG)
        return True


# arq's lines for a job starting and finishing (see arq.worker.Worker.run_job).
_ARQ_JOB_LINES = frozenset({"%6.2fs → %s(%s)%s", "%6.2fs ← %s ● %s"})


class QuietCronJobs(logging.Filter):
    """arq's "started"/"finished" lines of the named cron jobs, demoted to debug.

    The worker runs a dozen crons a minute (sweeper, analyze, alert sweep): at info these were
    ~1,200 lines an hour saying nothing happened. The cron jobs log at info themselves when they
    did something (re-enqueued, analyzed, opened or resolved alerts, found missing events); a
    failing cron is still arq's error line with its traceback.
    """

    def __init__(self, names: frozenset[str]) -> None:
        super().__init__()
        self.names = names

    def filter(self, record: logging.LogRecord) -> bool:
        if (
            record.levelno == logging.INFO
            and record.msg in _ARQ_JOB_LINES
            and isinstance(record.args, tuple)
            and len(record.args) >= 2
            and record.args[1] in self.names
        ):
            record.levelno, record.levelname = logging.DEBUG, "DEBUG"
            return logging.getLogger().isEnabledFor(logging.DEBUG)
        return True


def quiet_cron_jobs(names: frozenset[str]) -> None:
    """Install :class:`QuietCronJobs` for ``names`` on arq's logger (replacing an earlier one)."""
    arq_worker = logging.getLogger("arq.worker")
    for f in [f for f in arq_worker.filters if isinstance(f, QuietCronJobs)]:
        arq_worker.removeFilter(f)
    arq_worker.addFilter(QuietCronJobs(names))


TEXT_FORMAT = "%(asctime)s %(levelname)s %(name)s: %(message)s"
# Libraries that would otherwise log per request or per call at info.
_QUIET_LIBRARIES = {
    "uvicorn.access": logging.WARNING,  # every webhook URL; our own request log says what matters
    "httpx": logging.WARNING,
    "httpcore": logging.WARNING,
    "stripe": logging.WARNING,  # "Request to Stripe api", each retry: our reconcile log says it
}


def configure_logging(settings: Settings) -> None:
    handler = logging.StreamHandler(sys.stderr)
    if settings.log_format == "json":
        handler.setFormatter(JsonFormatter())
    else:
        handler.setFormatter(logging.Formatter(TEXT_FORMAT))
    root = logging.getLogger()
    root.handlers[:] = [handler]
    root.setLevel(settings.log_level)
    # Libraries that set up handlers of their own (uvicorn's default config, an imported
    # library's NullHandler aside) would print in their own format: route them to the root.
    for name in ("uvicorn", "uvicorn.error", "uvicorn.access", "arq", "litestar"):
        lib = logging.getLogger(name)
        lib.handlers[:] = []
        lib.propagate = True
    for name, level in _QUIET_LIBRARIES.items():
        logging.getLogger(name).setLevel(level)
    logging.captureWarnings(True)
    # The stripe library logs two INFO lines per API request (a sync makes thousands); our
    # own lines say what failed.
    logging.getLogger("stripe").setLevel(logging.WARNING)
    arq_worker = logging.getLogger("arq.worker")
    if not any(isinstance(f, DrainedJobsExpire) for f in arq_worker.filters):
        arq_worker.addFilter(DrainedJobsExpire())
