"""The contract between the ingest edge and the workers: job names, ids and serialisation.

Jobs carry a delivery id, never a payload: the payload is in PostgreSQL. The job id is derived
from the delivery id, so enqueuing the same delivery twice while a job is queued is a no-op in
Redis. That is an optimisation only; exactly-once is guaranteed by PostgreSQL (processors).
Jobs are serialised with msgpack (msgspec), never pickle.
"""

from __future__ import annotations

import uuid
from typing import Any

import msgspec
from arq.connections import ArqRedis

from ledgerhook.settings import Settings

__all__ = [
    "CHECK_DRIFT",
    "PROCESS_DELIVERY",
    "SYNC_OBJECTS",
    "deserialize",
    "enqueue_run",
    "job_id",
    "run_job_id",
    "serialize",
]

PROCESS_DELIVERY = "process_delivery"
# Started by API (admin), run by the worker: arguments are names and numbers, never payloads.
SYNC_OBJECTS = "sync_objects"
CHECK_DRIFT = "check_drift"


def _encode_other(obj: Any) -> Any:
    # arq serialises a failed job's exception as its result (for a job whose data was removed
    # because the batcher drained its delivery, "job expired"). The text is enough; results
    # are not kept (keep_result=0) and outcomes live in PostgreSQL.
    if isinstance(obj, BaseException):
        return f"{type(obj).__name__}: {obj}"
    raise TypeError(f"cannot serialise {type(obj).__name__}")


_encoder = msgspec.msgpack.Encoder(enc_hook=_encode_other)
_decoder = msgspec.msgpack.Decoder()


def serialize(obj: dict[str, Any]) -> bytes:
    return _encoder.encode(obj)


def deserialize(data: bytes) -> dict[str, Any]:
    out: dict[str, Any] = _decoder.decode(data)
    return out


def job_id(settings: Settings, delivery_id: int) -> str:
    return f"{settings.processors.queue_name}:delivery:{delivery_id}"


def run_job_id(settings: Settings, name: str) -> str:
    """A fresh id for one requested run: PostgreSQL, not Redis, keeps two runs apart (a sync
    holds an advisory lock), so a run whose worker died can simply be requested again."""
    return f"{settings.processors.queue_name}:{name}:{uuid.uuid4().hex}"


async def enqueue_run(redis: ArqRedis, settings: Settings, name: str, **kwargs: Any) -> str:
    """Queue one run of ``name`` for the worker; its job id. Redis errors go to the caller."""
    run_id = run_job_id(settings, name)
    await redis.enqueue_job(
        name, _job_id=run_id, _queue_name=settings.processors.queue_name, **kwargs
    )
    return run_id
