"""The contract between the ingest edge and the workers: job names, ids and serialisation.

Jobs carry a delivery id, never a payload: the payload is in PostgreSQL. The job id is derived
from the delivery id, so enqueuing the same delivery twice while a job is queued is a no-op in
Redis. That is an optimisation only; exactly-once is guaranteed by PostgreSQL (processors).
Jobs are serialised with msgpack (msgspec), never pickle.
"""

from __future__ import annotations

from typing import Any

import msgspec

from ledgerhook.settings import Settings

__all__ = ["PROCESS_DELIVERY", "deserialize", "job_id", "serialize"]

PROCESS_DELIVERY = "process_delivery"


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
