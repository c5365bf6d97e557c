"""Every route of the app outside /webhooks, /health, /metrics, /schema and the log's public key
needs a token.

The routes are read from ``app.routes``, so a route another package adds later is covered too:
no token → 401, a bad token → 401, and the roles that pass form an upward-closed set
(admin ⊇ oncall ⊇ auditor): admin always passes, a lower role passing implies the higher ones do.
"""

from __future__ import annotations

import re
import uuid

import asyncpg
from litestar.testing import AsyncTestClient

from audit.tokens import create_token
from ledgerhook.app import create_app
from ledgerhook.db import database_name
from ledgerhook.settings import ApiSettings, Settings
from tests.conftest import PUBLIC_KEY, make_settings

# /console authenticates browsers with its own session cookie, not bearer tokens: the same
# checks for its routes are in test_console_http.py. The log's public key is public.
OPEN = ("/webhooks", "/health", "/metrics", "/schema", "/console", "/audit/public-key")
AUDITOR_ROUTES = {
    "/audit/deliveries",
    "/audit/deliveries/{delivery_id:int}",
    "/audit/deliveries/{delivery_id:int}/raw",
    "/audit/objects/{provider:str}/{object_id:str}/timeline",
    "/audit/rejections",
    "/audit/export",
    "/audit/verify",
    "/audit/checkpoints",
    "/audit/checkpoints/latest",
    "/audit/deliveries/{delivery_id:int}/proof",
    "/audit/tree",
    "/audit/tree/consistency",
    "/audit/access-log",
}


async def test_the_public_key_is_public(settings: Settings) -> None:
    async with AsyncTestClient(create_app(settings)) as client:
        r = await client.get("/audit/public-key")
    assert r.status_code == 200 and r.text == PUBLIC_KEY + "\n"


def _concrete(path: str) -> str:
    def fill(m: re.Match[str]) -> str:
        name, kind = m.group(1), m.group(2)
        if kind == "int":
            return "1"
        if name == "provider":
            return "stripe"
        return "x1"

    return re.sub(r"\{(\w+):(\w+)\}", fill, path)


async def test_every_protected_route_needs_a_token_and_the_right_role(
    settings: Settings, pool: asyncpg.Pool
) -> None:
    tokens = {}
    async with pool.acquire() as conn:
        for role in ("auditor", "oncall", "admin"):
            name = f"routes-{role}-{uuid.uuid4().hex[:8]}"
            tokens[role] = await create_token(conn, name=name, role=role)  # type: ignore[arg-type]
    # Two failed attempts per route by design: lift the brute-force brake for this test only.
    lenient = make_settings(
        database_name(settings.database_url), api=ApiSettings(auth_failures_per_minute=100_000)
    )
    app = create_app(lenient)
    checked: set[str] = set()
    async with AsyncTestClient(app, raise_server_exceptions=False) as client:
        for route in app.routes:
            if route.path.startswith(OPEN):
                continue
            methods = sorted(
                m for m in getattr(route, "methods", ()) if m not in ("HEAD", "OPTIONS")
            )
            url = _concrete(route.path)
            for method in methods:
                r = await client.request(method, url)
                assert r.status_code == 401, (method, route.path, r.status_code)
                assert r.headers.get("www-authenticate") == "Bearer"
                r = await client.request(
                    method, url, headers={"Authorization": "Bearer lh_" + "Z" * 43}
                )
                assert r.status_code == 401, (method, route.path)
                passed = {}
                for role in ("auditor", "oncall", "admin"):
                    r = await client.request(
                        method, url, headers={"Authorization": f"Bearer {tokens[role]}"}
                    )
                    assert r.status_code != 401, (method, route.path, role)
                    passed[role] = r.status_code != 403
                assert passed["admin"], (method, route.path)
                if passed["auditor"]:
                    assert passed["oncall"], (method, route.path)
                if method != "GET":
                    assert not passed["auditor"], ("auditors change nothing", method, route.path)
                checked.add(route.path)
    assert checked >= AUDITOR_ROUTES
    async with pool.acquire() as conn:
        allowed = await conn.fetchval(
            "SELECT count(*) FROM audit.access_log WHERE path = '/audit/deliveries/1' "
            "AND decision = 'allowed'"
        )
    assert allowed >= 3
    async with AsyncTestClient(app) as client:
        r = await client.get(
            "/audit/access-log",
            params={"decision": "unauthenticated", "limit": 2},
            headers={"Authorization": f"Bearer {tokens['auditor']}"},
        )
        page = r.json()
        assert r.status_code == 200 and len(page["items"]) == 2 and page["next_cursor"]
        assert all(item["token_name"] is None for item in page["items"])
