"""Tokens, roles, the access log, revocation and the brute-force brake, on real PostgreSQL and
Redis."""

from __future__ import annotations

import logging
import subprocess
import sys
import uuid
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any

import asyncpg
import msgspec
import pytest
from litestar import Litestar, Request, get
from litestar.datastructures import State
from litestar.testing import AsyncTestClient

from audit.auth import require_role
from audit.brake import open_brake
from audit.errors import TokenError
from audit.tokens import Principal, create_token, list_tokens, revoke_token
from ledgerhook.app import EXCEPTION_HANDLERS
from ledgerhook.db import create_pool
from ledgerhook.settings import ApiSettings, ProcessorSettings, Settings
from tests.conftest import PG_BASE, RUN_ID


@get("/t/auditor", guards=[require_role("auditor")])
async def auditor_route(request: Request[Any, Any, Any]) -> dict[str, str]:
    user: Principal = request.user
    return {"name": user.name, "role": user.role}


@get("/t/oncall", guards=[require_role("oncall")])
async def oncall_route() -> dict[str, str]:
    return {"ok": "oncall"}


@get("/t/admin", guards=[require_role("admin")])
async def admin_route() -> dict[str, str]:
    return {"ok": "admin"}


def _own_brake(settings: Settings) -> Settings:
    """The settings with a queue name of their own, so the brake's Redis keys (prefixed with it)
    are this test's alone: every test client calls from the same address, ``testclient``."""
    queue = f"lh-test-{RUN_ID}-{uuid.uuid4().hex[:8]}"
    return msgspec.structs.replace(settings, processors=ProcessorSettings(queue_name=queue))


def _app(settings: Settings, pool: asyncpg.Pool) -> Litestar:
    """A small app around the guard, with a brake of its own (see :func:`_own_brake`). The test
    client runs it on its own event loop (a portal thread), so it opens its own pool there;
    ``pool`` is only the test's handle to the same DB."""
    del pool
    settings = _own_brake(settings)

    @asynccontextmanager
    async def lifespan(app: Litestar) -> AsyncIterator[None]:
        app.state.pool = await create_pool(settings, min_size=1, max_size=2)
        try:
            async with open_brake(settings) as brake:
                app.state.brake = brake
                yield
        finally:
            await app.state.pool.close()

    return Litestar(
        route_handlers=[auditor_route, oncall_route, admin_route],
        exception_handlers=EXCEPTION_HANDLERS,
        lifespan=[lifespan],
        state=State({"settings": settings}),
    )


def _name() -> str:
    return f"t-{uuid.uuid4().hex[:10]}"


async def _tokens(pool: asyncpg.Pool) -> dict[str, tuple[str, str]]:
    out = {}
    async with pool.acquire() as conn:
        for role in ("auditor", "oncall", "admin"):
            name = _name()
            out[role] = (name, await create_token(conn, name=name, role=role))  # type: ignore[arg-type]
    return out


def _auth(token: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {token}"}


async def test_roles_are_ordered(settings: Settings, pool: asyncpg.Pool) -> None:
    tokens = await _tokens(pool)
    expected = {
        ("auditor", "/t/auditor"): 200,
        ("auditor", "/t/oncall"): 403,
        ("auditor", "/t/admin"): 403,
        ("oncall", "/t/auditor"): 200,
        ("oncall", "/t/oncall"): 200,
        ("oncall", "/t/admin"): 403,
        ("admin", "/t/auditor"): 200,
        ("admin", "/t/oncall"): 200,
        ("admin", "/t/admin"): 200,
    }
    async with AsyncTestClient(_app(settings, pool)) as client:
        for (role, path), status in expected.items():
            r = await client.get(path, headers=_auth(tokens[role][1]))
            assert r.status_code == status, (role, path, r.text)
        r = await client.get("/t/auditor", headers=_auth(tokens["oncall"][1]))
        assert r.json() == {"name": tokens["oncall"][0], "role": "oncall"}


@pytest.mark.parametrize(
    "header",
    [
        None,
        "Bearer",
        "Basic dXNlcjpwYXNz",
        "Bearer lh_short",
        "Bearer lh_" + "A" * 43,  # well-formed, unknown
        "Bearer not-a-token-at-all-but-long-enough-to-pass-length-checks",
    ],
)
async def test_bad_tokens_are_401(
    settings: Settings, pool: asyncpg.Pool, header: str | None
) -> None:
    async with AsyncTestClient(_app(settings, pool)) as client:
        r = await client.get(
            "/t/auditor", headers={} if header is None else {"Authorization": header}
        )
    assert r.status_code == 401
    assert r.headers["www-authenticate"] == "Bearer"
    assert "error" in r.json()


async def test_revocation_is_immediate(settings: Settings, pool: asyncpg.Pool) -> None:
    name = _name()
    async with pool.acquire() as conn:
        token = await create_token(conn, name=name, role="admin")
    async with AsyncTestClient(_app(settings, pool)) as client:
        assert (await client.get("/t/admin", headers=_auth(token))).status_code == 200
        async with pool.acquire() as conn:
            assert await revoke_token(conn, name) is True
            assert await revoke_token(conn, name) is False
        assert (await client.get("/t/admin", headers=_auth(token))).status_code == 401
    async with pool.acquire() as conn:
        listed = {t.name: t for t in await list_tokens(conn)}
        assert listed[name].revoked_at is not None
        with pytest.raises(TokenError):
            await create_token(conn, name=name, role="auditor")  # names are never reused
        with pytest.raises(TokenError):
            await revoke_token(conn, "no-such-token-" + uuid.uuid4().hex)


async def test_access_log_records_without_token(
    settings: Settings, pool: asyncpg.Pool, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.DEBUG)
    tokens = await _tokens(pool)
    marker = uuid.uuid4().hex
    async with AsyncTestClient(_app(settings, pool)) as client:
        await client.get(f"/t/auditor?m={marker}", headers=_auth(tokens["auditor"][1]))
        await client.get(f"/t/admin?m={marker}", headers=_auth(tokens["auditor"][1]))
        await client.get(f"/t/auditor?m={marker}", headers=_auth(tokens["auditor"][1] + "x"))
    async with pool.acquire() as conn:
        rows = await conn.fetch(
            "SELECT * FROM audit.access_log WHERE query = $1 ORDER BY id", f"m={marker}"
        )
    assert [(r["token_name"], r["role"], r["path"], r["decision"], r["method"]) for r in rows] == [
        (tokens["auditor"][0], "auditor", "/t/auditor", "allowed", "GET"),
        (tokens["auditor"][0], "auditor", "/t/admin", "forbidden", "GET"),
        (None, None, "/t/auditor", "unauthenticated", "GET"),
    ]
    assert all(r["at"] is not None and r["source_address"] for r in rows)
    async with pool.acquire() as conn:
        dump = await conn.fetchval(
            "SELECT string_agg(row_to_json(a)::text, '') FROM audit.access_log a"
        )
        stored = await conn.fetchval(
            "SELECT string_agg(token_hash::text, '') FROM audit.api_tokens"
        )
    for _, token in tokens.values():
        assert token not in dump
        assert token not in caplog.text
        assert token[3:] not in stored  # only hashes are stored
    # The access log is append-only for the application role.
    async with pool.acquire() as conn:
        with pytest.raises(asyncpg.PostgresError):
            await conn.execute("DELETE FROM audit.access_log WHERE query = $1", f"m={marker}")


async def test_failed_attempts_are_braked_but_valid_tokens_always_pass(
    settings: Settings, pool: asyncpg.Pool
) -> None:
    limited = msgspec.structs.replace(settings, api=ApiSettings(auth_failures_per_minute=3))
    tokens = await _tokens(pool)
    revoked_name = _name()
    async with pool.acquire() as conn:
        revoked = await create_token(conn, name=revoked_name, role="admin")
        await revoke_token(conn, revoked_name)
    async with AsyncTestClient(_app(limited, pool)) as client:
        for _ in range(3):
            r = await client.get("/t/auditor", headers=_auth("lh_" + "B" * 43))
            assert r.status_code == 401
        # Past the budget: unknown, malformed and revoked tokens get 429 with a Retry-After.
        for bad in ("lh_" + "B" * 43, "lh_short", revoked):
            r = await client.get("/t/auditor", headers=_auth(bad))
            assert r.status_code == 429, bad[:5]
            assert 1 <= int(r.headers["retry-after"]) <= 60
            assert "error" in r.json()
        # Valid tokens are served, and the role matrix still holds, for the same address.
        r = await client.get("/t/auditor", headers=_auth(tokens["auditor"][1]))
        assert r.status_code == 200
        assert (
            await client.get("/t/admin", headers=_auth(tokens["auditor"][1]))
        ).status_code == 403
        assert (await client.get("/t/admin", headers=_auth(tokens["admin"][1]))).status_code == 200
        assert (
            await client.get("/t/oncall", headers=_auth(tokens["oncall"][1]))
        ).status_code == 200
        # No credentials at all is not a guess: still 401.
        r = await client.get("/t/auditor")
        assert r.status_code == 401
        assert r.headers["www-authenticate"] == "Bearer"


async def test_hundred_bad_tokens_then_a_valid_one(settings: Settings, pool: asyncpg.Pool) -> None:
    tokens = await _tokens(pool)
    async with AsyncTestClient(_app(settings, pool)) as client:
        codes = [
            (
                await client.get("/t/oncall", headers=_auth(f"lh_{uuid.uuid4().hex}{i:011d}"))
            ).status_code
            for i in range(100)
        ]
        budget = settings.api.auth_failures_per_minute
        assert codes == [401] * budget + [429] * (100 - budget)
        for role in ("oncall", "admin"):
            r = await client.get("/t/oncall", headers=_auth(tokens[role][1]))
            assert r.status_code == 200, role
        r = await client.get("/t/oncall", headers=_auth(tokens["auditor"][1]))
        assert r.status_code == 403


def test_cli_create_prints_only_the_token(settings: Settings) -> None:
    name = _name()
    env = {"LEDGERHOOK_DATABASE_URL": settings.database_url.reveal(), "PATH": "/usr/bin:/bin"}
    out = subprocess.run(
        [
            sys.executable,
            "-m",
            "ledgerhook.cli",
            "token",
            "create",
            "--role",
            "oncall",
            "--name",
            name,
        ],
        env=env,
        capture_output=True,
        text=True,
        check=True,
    )
    token = out.stdout.strip()
    assert out.stdout == token + "\n"
    assert token.startswith("lh_") and len(token) == 46
    listed = subprocess.run(
        [sys.executable, "-m", "ledgerhook.cli", "token", "list"],
        env=env,
        capture_output=True,
        text=True,
        check=True,
    )
    assert name in listed.stdout and "oncall" in listed.stdout and token[3:] not in listed.stdout
    revoked = subprocess.run(
        [sys.executable, "-m", "ledgerhook.cli", "token", "revoke", name],
        env=env,
        capture_output=True,
        text=True,
        check=True,
    )
    assert "revoked" in revoked.stdout
    again = subprocess.run(
        [
            sys.executable,
            "-m",
            "ledgerhook.cli",
            "token",
            "create",
            "--role",
            "oncall",
            "--name",
            name,
        ],
        env=env,
        capture_output=True,
        text=True,
        check=False,
    )
    assert again.returncode == 1 and again.stdout == ""
    assert PG_BASE  # the CLI used the same server as the fixtures
