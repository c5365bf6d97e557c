"""The pre-encoded pieces the appender hashes with give exactly the documented ``LHv1`` hash."""

from __future__ import annotations

from datetime import UTC, datetime

from hypothesis import given
from hypothesis import strategies as st

from audit.canonical import ChainFields, encode_fixed, row_hash, row_hash_from_parts

_text = st.text(max_size=40)
_opt_text = st.none() | _text


@given(
    prev=st.binary(min_size=32, max_size=32),
    id=st.integers(min_value=1, max_value=2**62),
    received_at=st.datetimes(
        min_value=datetime(1971, 1, 1), max_value=datetime(2200, 1, 1), timezones=st.just(UTC)
    ),
    provider=_text,
    endpoint=_text,
    account=_text,
    event_id=_text,
    event_type=_text,
    event_created=st.integers(min_value=0, max_value=2**53),
    object_id=_opt_text,
    origin=_text,
    source_address=_opt_text,
    content_type=_opt_text,
    headers=_text,
    verification=_text,
    duplicate_of=st.none() | st.integers(min_value=1, max_value=2**62),
    body_sha256=st.binary(min_size=32, max_size=32),
)
def test_parts_hash_equals_row_hash(
    prev: bytes, id: int, duplicate_of: int | None, body_sha256: bytes, **fixed: object
) -> None:
    fields = ChainFields(id=id, duplicate_of=duplicate_of, body_sha256=body_sha256, **fixed)  # type: ignore[arg-type]
    pre = encode_fixed(**fixed)  # type: ignore[arg-type]
    assert row_hash_from_parts(prev, id, pre, duplicate_of, body_sha256) == row_hash(prev, fields)
