"""Request ids: bound to the log context for the request, echoed in X-Request-ID."""

from __future__ import annotations

import logging

import pytest
from litestar import Litestar, get
from litestar.testing import AsyncTestClient

from ledgerhook.logs import JsonFormatter, log_context
from ledgerhook.observability import RequestIdMiddleware


@get("/probe", sync_to_thread=False)
def probe() -> dict[str, str]:
    logging.getLogger("ledgerhook.test").info("probe handled")
    return {"request_id": str((log_context.get() or {}).get("request_id"))}


def _app() -> Litestar:
    return Litestar(route_handlers=[probe], middleware=[RequestIdMiddleware])


async def test_fresh_request_id_is_bound_and_echoed() -> None:
    async with AsyncTestClient(app=_app()) as client:
        first = await client.get("/probe")
        second = await client.get("/probe")
    assert first.status_code == 200
    rid = first.headers["x-request-id"]
    assert len(rid) == 32
    assert first.json() == {"request_id": rid}
    assert second.headers["x-request-id"] != rid
    # Outside a request nothing is bound.
    assert "request_id" not in (log_context.get() or {})


async def test_json_log_line_carries_the_request_id() -> None:
    lines: list[str] = []

    class Collect(logging.Handler):
        def emit(self, record: logging.LogRecord) -> None:
            lines.append(JsonFormatter().format(record))

    logger = logging.getLogger("ledgerhook.test")
    handler = Collect()
    logger.addHandler(handler)
    logger.setLevel(logging.INFO)
    try:
        async with AsyncTestClient(app=_app()) as client:
            resp = await client.get("/probe", headers={"X-Request-ID": "edge-abc.123"})
    finally:
        logger.removeHandler(handler)
    assert resp.headers["x-request-id"] == "edge-abc.123"
    assert any('"request_id":"edge-abc.123"' in line for line in lines)


@pytest.mark.parametrize("bad", ["", "x" * 65, "has space", "new\\nline", "a;b", "<script>"])
async def test_malformed_incoming_ids_are_replaced(bad: str) -> None:
    async with AsyncTestClient(app=_app()) as client:
        resp = await client.get("/probe", headers={"X-Request-ID": bad})
    assert resp.headers["x-request-id"] != bad
    assert len(resp.headers["x-request-id"]) == 32
