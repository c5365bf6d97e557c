"""schemathesis against the OpenAPI schema the running server publishes, every route.

Requests carry a valid admin token so handlers run (not just the 401 guard). Checks: no 5xx,
responses conform to the documented schema and content type. The example count per operation is
bounded (``LEDGERHOOK_SCHEMATHESIS_EXAMPLES``, default 50) to keep the run near a minute.
"""

from __future__ import annotations

import os
import uuid
from collections import Counter
from collections.abc import Iterator

import asyncpg
import pytest
import pytest_asyncio
import schemathesis
from hypothesis import HealthCheck, given
from hypothesis import settings as hsettings
from hypothesis.errors import Unsatisfiable
from schemathesis import GenerationMode
from schemathesis.checks import (
    content_type_conformance,
    not_a_server_error,
    response_schema_conformance,
)

from audit.tokens import create_token
from ledgerhook.settings import Settings
from tests.faults.services import Service
from tests.fuzz.live import base_url, start_server

EXAMPLES = int(os.environ.get("LEDGERHOOK_SCHEMATHESIS_EXAMPLES", "50"))


@pytest.fixture(scope="module")
def live_server(settings: Settings) -> Iterator[Service]:
    # A high brute-force threshold: negative cases send bad tokens, and a 429 would hide handlers.
    service = start_server(
        settings,
        LEDGERHOOK_LOG_LEVEL="WARNING",
        LEDGERHOOK_API__AUTH_FAILURES_PER_MINUTE="1000000",
    )
    try:
        yield service
    finally:
        service.stop()


@pytest_asyncio.fixture(scope="module")
async def admin_token(pool: asyncpg.Pool) -> str:
    async with pool.acquire() as conn:
        return await create_token(conn, name=f"fuzz-admin-{uuid.uuid4().hex[:8]}", role="admin")


def _fuzz_operation(
    operation: schemathesis.APIOperation, url: str, token: str, mode: GenerationMode
) -> Counter[int]:
    """Run one operation's generated cases; the status codes seen (for the report)."""
    seen: Counter[int] = Counter()

    @given(case=operation.as_strategy(generation_mode=mode))
    @hsettings(
        max_examples=EXAMPLES,
        deadline=None,
        suppress_health_check=list(HealthCheck),
        database=None,
    )
    def run(case: schemathesis.Case) -> None:
        response = case.call_and_validate(
            base_url=url,
            headers={"Authorization": f"Bearer {token}"},
            checks=[not_a_server_error, response_schema_conformance, content_type_conformance],
            timeout=30,
        )
        seen[response.status_code] += 1

    run()
    return seen


@pytest.mark.parametrize("mode", [GenerationMode.POSITIVE, GenerationMode.NEGATIVE])
def test_every_route_conforms(live_server: Service, admin_token: str, mode: GenerationMode) -> None:
    """Every operation in the served schema, valid (positive) and invalid (negative) inputs.

    Run in one test rather than schemathesis' pytest plugin, which does not support pytest 9."""
    url = base_url(live_server)
    schema = schemathesis.openapi.from_url(f"{url}/schema/openapi.json")
    operations = [result.ok() for result in schema.get_all_operations()]
    assert len(operations) >= 10, "the served schema lists too few operations"
    report = []
    failures = []
    for op in operations:
        label = f"{op.method.upper():6} {op.path}"
        try:
            seen = _fuzz_operation(op, url, admin_token, mode)
        except Unsatisfiable:
            report.append(f"{label}: no invalid input possible")
            continue
        except (Exception, BaseExceptionGroup) as exc:  # collect every failure, fail once
            failures.append(f"{label}: {_first_lines(exc)}")
            continue
        report.append(f"{label}: {sum(seen.values())} requests {dict(seen)}")
    print(f"\nschemathesis ({mode.value}), {len(operations)} operations:\n  " + "\n  ".join(report))
    assert not failures, f"{len(failures)} operations failed:\n" + "\n".join(failures)


def _first_lines(exc: BaseException) -> str:
    inner = exc.exceptions if isinstance(exc, BaseExceptionGroup) else [exc]
    parts = []
    for e in inner:
        lines = str(e).split("\n")
        curl = [ln.strip() for ln in str(exc).split("\n") if "curl " in ln][:1]
        parts.append(" ".join(lines[:8])[:500] + (f" [{curl[0]}]" if curl else ""))
    return " | ".join(parts)
