"""Hypothesis against the webhook endpoints: arbitrary headers and bodies, real PostgreSQL/Redis.

Whatever arrives, the answer is one of the documented codes (200 stored, 400 bad envelope or
Stripe signature, 401 bad Chargebee credentials, 404 unknown endpoint, 413 too large, 431 header flood, 408 slow body, 503
overloaded), never a 5xx otherwise, with a JSON reason on refusal; a refused request leaves no
delivery row (only its rejection record); an accepted one is stored byte for byte.

Examples are bounded (``LEDGERHOOK_FUZZ_EXAMPLES``, default 500) so the default run
stays around a minute.
"""

from __future__ import annotations

import asyncio
import base64
import os
import time
import uuid
from collections.abc import AsyncIterator
from typing import Any

import asyncpg
import msgspec
import pytest
import pytest_asyncio
from hypothesis import HealthCheck, event, given
from hypothesis import settings as hsettings
from hypothesis import strategies as st
from litestar import Litestar
from litestar.testing import AsyncTestClient

from ledgerhook.app import create_app
from ledgerhook.settings import IngestSettings, Settings
from tests.conftest import CHARGEBEE_AUTH, STRIPE_SECRET, fixture_bytes, stripe_fixture_names
from tests.faults.stream import stripe_signature

EXAMPLES = int(os.environ.get("LEDGERHOOK_FUZZ_EXAMPLES", "500"))
DOCUMENTED = {200, 400, 401, 404, 408, 413, 431, 503}
MAX_BODY = 64 * 1024

Client = AsyncTestClient[Litestar]
FUZZ = hsettings(
    max_examples=EXAMPLES,
    deadline=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
)


@pytest_asyncio.fixture(scope="module")
async def fuzz_app(settings: Settings, pool: asyncpg.Pool) -> AsyncIterator[Client]:
    s = msgspec.structs.replace(
        settings, ingest=IngestSettings(rejections_per_minute=1_000_000, max_body_bytes=MAX_BODY)
    )
    # The test client runs the app on its own loop (a portal thread): the app opens its own
    # pool there; the shared ``pool`` (this loop) is only for the test's checks.
    del pool
    async with AsyncTestClient(create_app(s)) as c:
        yield c


# Header names and values as HTTP allows them (tokens; visible latin-1 plus spaces).
_name = st.text(alphabet="abcdefghijklmnopqrstuvwxyz0123456789-_", min_size=1, max_size=24)
_value = st.text(
    alphabet=st.characters(min_codepoint=0x20, max_codepoint=0xFF, exclude_characters="\x7f"),
    max_size=200,
)
_signature = st.one_of(
    _value,
    st.builds(
        lambda t, v: f"t={t},v1={v}",
        st.integers(-(10**15), 10**15),
        st.text("0123456789abcdef", max_size=70),
    ),
    st.lists(st.sampled_from(["t=1", "v1=00", "v0=ab", "=", ",", "t=", "v1="]), max_size=80).map(
        ",".join
    ),
)
_authorization = st.one_of(
    _value,
    st.binary(max_size=60).map(lambda b: "Basic " + base64.b64encode(b).decode()),
    st.just("Basic " + base64.b64encode(CHARGEBEE_AUTH.encode()).decode()),
    st.just("Basic " + base64.b64encode(CHARGEBEE_AUTH.encode() + b"x").decode()),
)
_json = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False) | st.text(max_size=20),
    lambda inner: (
        st.lists(inner, max_size=5) | st.dictionaries(st.text(max_size=10), inner, max_size=5)
    ),
    max_leaves=30,
)


@st.composite
def _envelope_like(draw: Any) -> bytes:
    """A fixture-shaped event with fields replaced by arbitrary JSON (valid signature later)."""
    name = draw(st.sampled_from(stripe_fixture_names()))
    data = msgspec.json.decode(fixture_bytes("stripe", name))
    for key in draw(
        st.lists(
            st.sampled_from(["id", "type", "created", "data", "object", "account"]), max_size=3
        )
    ):
        data[key] = draw(_json)
    data.setdefault("id", "x")
    if isinstance(data.get("id"), str):
        data["id"] = f"evt_fz_{uuid.uuid4().hex}"
    return msgspec.json.encode(data)


@st.composite
def _requests(draw: Any) -> dict[str, Any]:
    known = st.sampled_from(
        [
            "/webhooks/stripe",
            "/webhooks/chargebee",
            "/webhooks/stripe/default",
            "/webhooks/chargebee/default",
        ]
    )
    path = draw(
        st.one_of(
            known,
            known,
            known,
            st.just("/webhooks/stripe"),
            st.builds(
                lambda p, n: f"/webhooks/{p}/{n}",
                st.sampled_from(["stripe", "chargebee", "paypal", "x"]),
                _name,
            ),
        )
    )
    body = draw(
        st.one_of(
            st.binary(max_size=2048),
            _json.map(msgspec.json.encode),
            _envelope_like(),
            st.just(b"x" * (MAX_BODY + 1)),
        )
    )
    headers: dict[str, str] = draw(st.dictionaries(_name, _value, max_size=8))
    if draw(st.booleans()):
        headers["stripe-signature"] = draw(_signature)
    if draw(st.booleans()):
        # A correct signature over these exact bytes, so the envelope parser gets exercised too.
        headers["stripe-signature"] = stripe_signature(body, int(time.time()), STRIPE_SECRET)
    if draw(st.booleans()):
        headers["authorization"] = draw(_authorization)
    headers.pop("content-length", None)
    headers.pop("transfer-encoding", None)
    headers.pop("host", None)
    return {"path": path, "body": body, "headers": headers}


@FUZZ
@given(req=_requests())
async def test_webhooks_answer_only_documented_codes(
    fuzz_app: Client, pool: asyncpg.Pool, req: dict[str, Any]
) -> None:
    marker = uuid.uuid4().hex
    headers = [
        (k.encode("latin-1"), v.encode("latin-1"))
        for k, v in {**req["headers"], "x-fuzz-marker": marker}.items()
    ]
    r = await fuzz_app.post(req["path"], content=req["body"], headers=headers)
    assert r.status_code in DOCUMENTED, (r.status_code, r.text[:300])
    event(f"status {r.status_code}")
    if r.status_code == 200:
        out = r.json()
        row = await pool.fetchrow(
            "SELECT body FROM audit.deliveries WHERE id = $1", out["delivery_id"]
        )
        assert row is not None and bytes(row["body"]) == req["body"]
        return
    assert isinstance(r.json().get("error"), str) and r.json()["error"]
    assert STRIPE_SECRET not in r.text and CHARGEBEE_AUTH not in r.text
    stored = await pool.fetchval(
        "SELECT count(*) FROM audit.deliveries WHERE headers::text LIKE $1", f"%{marker}%"
    )
    assert stored == 0
    if r.status_code != 503:
        await _rejection_recorded(pool, marker, r.status_code)


async def _rejection_recorded(pool: asyncpg.Pool, marker: str, status: int) -> None:
    deadline = time.monotonic() + 5
    while time.monotonic() < deadline:
        got = await pool.fetchval(
            "SELECT status FROM audit.rejections WHERE headers::text LIKE $1", f"%{marker}%"
        )
        if got is not None:
            assert got == status
            return
        await asyncio.sleep(0.02)
    pytest.fail(f"no rejection record for a {status}")
