"""Structured logs: one JSON object per line, with bound context (request, delivery, job ids).

Context travels in a ContextVar, so concurrent requests and jobs never mix their ids. Raw bodies
and secrets are never logged: callers log ids and outcomes, and Secret values mask themselves.
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

__all__ = ["DrainedJobsExpire", "bind", "configure_logging", "log_context"]

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


def configure_logging(settings: Settings) -> None:
    handler = logging.StreamHandler(sys.stderr)
    if settings.log_format == "json":
        handler.setFormatter(JsonFormatter())
    else:
        handler.setFormatter(logging.Formatter("%(asctime)s %(levelname)s %(name)s: %(message)s"))
    root = logging.getLogger()
    root.handlers[:] = [handler]
    root.setLevel(settings.log_level)
    # Access logs would print every webhook URL; our own request log says what matters.
    logging.getLogger("uvicorn.access").setLevel(logging.WARNING)
    logging.getLogger("httpx").setLevel(logging.WARNING)
    # The stripe library logs two INFO lines per API request (a sync makes thousands); our
    # own lines say what failed.
    logging.getLogger("stripe").setLevel(logging.WARNING)
    arq_worker = logging.getLogger("arq.worker")
    if not any(isinstance(f, DrainedJobsExpire) for f in arq_worker.filters):
        arq_worker.addFilter(DrainedJobsExpire())
