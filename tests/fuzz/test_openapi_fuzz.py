"""schemathesis against the OpenAPI schema the running server publishes, every route.

Requests carry a valid admin token so handlers run (not just the 401 guard). Checks: no 5xx,
responses conform to the documented schema and content type. The example count per operation is
bounded (``LEDGERHOOK_SCHEMATHESIS_EXAMPLES``, default 25) to keep the run near a minute.
"""

from __future__ import annotations

import os
import uuid
from collections.abc import Iterator

import asyncpg
import pytest
import pytest_asyncio
import schemathesis
from hypothesis import HealthCheck
from hypothesis import settings as hsettings
from schemathesis.checks import (
    content_type_conformance,
    not_a_server_error,
    response_schema_conformance,
)

from audit.tokens import create_token
from ledgerhook.settings import Settings
from tests.faults.services import Service
from tests.fuzz.live import base_url, start_server

EXAMPLES = int(os.environ.get("LEDGERHOOK_SCHEMATHESIS_EXAMPLES", "25"))


@pytest.fixture(scope="module")
def live_server(settings: Settings) -> Iterator[Service]:
    service = start_server(settings, LEDGERHOOK_LOG_LEVEL="WARNING")
    try:
        yield service
    finally:
        service.stop()


@pytest_asyncio.fixture(scope="module")
async def admin_token(pool: asyncpg.Pool) -> str:
    async with pool.acquire() as conn:
        return await create_token(conn, name=f"fuzz-admin-{uuid.uuid4().hex[:8]}", role="admin")


@pytest.fixture(scope="module")
def api_schema(live_server: Service) -> schemathesis.BaseSchema:
    return schemathesis.openapi.from_url(f"{base_url(live_server)}/schema/openapi.json")


schema = schemathesis.pytest.from_fixture("api_schema")


@schema.parametrize()
@hsettings(
    max_examples=EXAMPLES,
    deadline=None,
    suppress_health_check=list(HealthCheck),
)
def test_every_route_conforms(
    case: schemathesis.Case, live_server: Service, admin_token: str
) -> None:
    case.call_and_validate(
        base_url=base_url(live_server),
        headers={"Authorization": f"Bearer {admin_token}"},
        checks=[not_a_server_error, response_schema_conformance, content_type_conformance],
        timeout=30,
    )
