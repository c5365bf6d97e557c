"""The web console over HTTP, against the real app and PostgreSQL: sessions, CSRF, roles,
headers, escaping, and each page reading what the API reads."""

from __future__ import annotations

import hashlib
import re
import uuid
from collections.abc import AsyncIterator, Iterator
from contextlib import asynccontextmanager
from datetime import UTC, datetime, timedelta
from html.parser import HTMLParser
from typing import Any

import asyncpg
import httpx
import pytest
import pytest_asyncio
from litestar import Litestar
from litestar.testing import AsyncTestClient

from audit import permissions
from audit.append import NewDelivery
from audit.note import parse_verifier_key
from audit.proofs import verify_bundle
from audit.reconciliations import ReconciliationRun, latest_runs, record_run
from audit.sessions import find_session, hash_session_id
from audit.stats import arrivals_per_minute
from audit.tokens import revoke_token
from ledgerhook.app import create_app
from ledgerhook.console import security
from ledgerhook.console.auth import PUBLIC, ROLE
from ledgerhook.db import database_name
from ledgerhook.settings import ApiSettings, ConsoleSettings, Settings
from processors.queries import apply_lag_per_minute, pending
from tests.conftest import CHARGEBEE_AUTH, PUBLIC_KEY, STRIPE_SECRET, make_settings, superuser
from tests.integration.audit_helpers import delivery as audit_delivery
from tests.integration.coexist_helpers import links_csv, pair_rows
from tests.integration.console_helpers import (
    HOSTILE_SCRIPT,
    HOSTILE_URL,
    Seeded,
    console_server,
    csrf_of,
    seed,
)
from tests.integration.processors_helpers import append


@pytest_asyncio.fixture(scope="module")
async def seeded(pool: asyncpg.Pool) -> Seeded:
    return await seed(pool)


@pytest.fixture(scope="module")
def app(settings: Settings) -> Litestar:
    """The app, to enumerate its routes (requests go to the real server below)."""
    return create_app(settings)


@pytest.fixture(scope="module")
def server(settings: Settings) -> Iterator[str]:
    # Many sign-ins from one address by design: the brake is tested on its own below.
    with console_server(
        settings,
        LEDGERHOOK_API__AUTH_FAILURES_PER_MINUTE="100000",
        # Default endpoints on both providers, so provider-migration links name their accounts.
        LEDGERHOOK_STRIPE_WEBHOOK_SECRETS=STRIPE_SECRET,
        LEDGERHOOK_STRIPE_ACCOUNT="acct_test",
        LEDGERHOOK_CHARGEBEE_BASIC_AUTH=CHARGEBEE_AUTH,
        LEDGERHOOK_CHARGEBEE_SITE="acme-test",
    ) as url:
        yield url


@pytest_asyncio.fixture
async def client(server: str) -> AsyncIterator[httpx.AsyncClient]:
    async with httpx.AsyncClient(base_url=server, timeout=30) as c:
        yield c


@asynccontextmanager
async def browser(server: str, token: str) -> AsyncIterator[httpx.AsyncClient]:
    """A client of its own (its own cookies), signed in with ``token``."""
    async with httpx.AsyncClient(base_url=server, timeout=30) as c:
        r = await sign_in(c, token)
        assert r.status_code == 303, r.text
        yield c


async def sign_in(client: httpx.AsyncClient, token: str, next_path: str = "") -> httpx.Response:
    r = await client.get("/console/sign-in")
    assert r.status_code == 200
    return await client.post(
        "/console/sign-in",
        data={"csrf": csrf_of(r.text), "token": token, "next": next_path},
        follow_redirects=False,
    )


def _set_cookies(r: httpx.Response) -> dict[str, str]:
    out = {}
    for header in r.headers.get_list("set-cookie"):
        name = header.split("=", 1)[0]
        out[name] = header
    return out


# ---------------------------------------------------------------- sessions


async def test_sign_in_keeps_the_token_server_side(
    client: httpx.AsyncClient, seeded: Seeded, pool: asyncpg.Pool
) -> None:
    token = seeded.tokens["auditor"]
    r = await sign_in(client, token, "/console/alerts?status=open")
    assert r.status_code == 303
    assert r.headers["location"] == "/console/alerts?status=open"
    cookie = _set_cookies(r)[security.SESSION_COOKIE]
    attrs = {a.strip().lower() for a in cookie.split(";")[1:]}
    assert {"httponly", "samesite=strict", "path=/console"} <= attrs
    assert "secure" not in attrs  # plain HTTP here; see the TLS test
    session_id = client.cookies[security.SESSION_COOKIE]
    assert token not in cookie and token[3:] not in cookie
    page = await client.get("/console/deliveries")
    assert page.status_code == 200
    assert seeded.names["auditor"] in page.text and token not in page.text
    async with pool.acquire() as conn:
        row = await conn.fetchrow(
            "SELECT s.session_hash, t.name FROM audit.console_sessions s "
            "JOIN audit.api_tokens t ON t.id = s.token_id WHERE s.session_hash = $1",
            hash_session_id(session_id),
        )
        dump = await conn.fetchval(
            "SELECT string_agg(row_to_json(s)::text, '') FROM audit.console_sessions s"
        )
        access = await conn.fetch(
            "SELECT path, decision FROM audit.access_log WHERE token_name = $1 ORDER BY id",
            seeded.names["auditor"],
        )
    assert row is not None and row["name"] == seeded.names["auditor"]
    assert bytes(row["session_hash"]) == hashlib.sha256(session_id.encode()).digest()
    assert session_id not in dump and token not in dump
    assert ("/console/sign-in", "allowed") in [(a["path"], a["decision"]) for a in access]
    assert ("/console/deliveries", "allowed") in [(a["path"], a["decision"]) for a in access]


async def test_cookies_are_secure_over_tls(
    app: Litestar, seeded: Seeded, settings: Settings
) -> None:
    async with AsyncTestClient(app, base_url="https://testserver.local") as c:
        r = await sign_in(c, seeded.tokens["auditor"])
        assert r.status_code == 303
        assert "secure" in _set_cookies(r)[security.SESSION_COOKIE].lower()
    always = create_app(
        make_settings(
            database_name(settings.database_url),
            console=ConsoleSettings(secure_cookie="always"),
        )
    )
    async with AsyncTestClient(always) as c:
        r = await c.get("/console/sign-in")
        assert "secure" in _set_cookies(r)[security.PRE_COOKIE].lower()


async def test_bad_tokens_are_refused_and_braked(
    settings: Settings, seeded: Seeded, pool: asyncpg.Pool
) -> None:
    braked = create_app(
        make_settings(
            database_name(settings.database_url), api=ApiSettings(auth_failures_per_minute=3)
        )
    )
    async with AsyncTestClient(braked) as c:
        for bad in ("lh_" + "Q" * 43, "not a token", seeded.tokens["auditor"] + "x"):
            r = await sign_in(c, bad)
            assert r.status_code == 401
            assert "That token is not valid." in r.text
            assert security.SESSION_COOKIE not in c.cookies
        r = await sign_in(c, "lh_" + "Q" * 43)
        assert r.status_code == 429
        assert int(r.headers["retry-after"]) >= 1
    async with pool.acquire() as conn:
        n = await conn.fetchval(
            "SELECT count(*) FROM audit.access_log WHERE path = '/console/sign-in' "
            "AND decision = 'unauthenticated'"
        )
    assert n >= 3


async def test_sign_out_revokes_the_session(
    server: str, seeded: Seeded, pool: asyncpg.Pool
) -> None:
    async with browser(server, seeded.tokens["oncall"]) as c:
        page = await c.get("/console/deliveries")
        csrf = csrf_of(page.text)
        old = c.cookies[security.SESSION_COOKIE]
        r = await c.post("/console/sign-out", data={"csrf": csrf}, follow_redirects=False)
        assert r.status_code == 303 and r.headers["location"] == "/console/sign-in"
        async with pool.acquire() as conn:
            assert await find_session(conn, old) is None
            reason = await conn.fetchval(
                "SELECT r.reason FROM audit.console_session_revocations r "
                "JOIN audit.console_sessions s ON s.id = r.session_id WHERE s.session_hash = $1",
                hash_session_id(old),
            )
        assert reason == "signed_out"
        # Whoever still holds the old cookie is refused, for reads and for forms.
        async with httpx.AsyncClient(
            base_url=server, cookies={security.SESSION_COOKIE: old}
        ) as replay:
            r = await replay.get("/console/alerts")
            assert r.status_code == 401
            assert 'action="/console/sign-in"' in r.text and seeded.suffix not in r.text
            assert "max-age=0" in _set_cookies(r)[security.SESSION_COOKIE].lower()
            r = await replay.post(
                f"/console/alerts/{seeded.alert_id}/acknowledge",
                data={"csrf": csrf},
                follow_redirects=False,
            )
            assert r.status_code == 401


async def test_revoking_the_token_ends_its_sessions(server: str, pool: asyncpg.Pool) -> None:
    from audit.tokens import create_token

    name = f"console-revoked-{uuid.uuid4().hex[:8]}"
    async with pool.acquire() as conn:
        token = await create_token(conn, name=name, role="admin")
    async with browser(server, token) as c:
        assert (await c.get("/console/health")).status_code == 200
        async with pool.acquire() as conn:
            await revoke_token(conn, name)
        assert (await c.get("/console/health")).status_code == 401
        r = await sign_in(c, token)
        assert r.status_code == 401  # a revoked token cannot open a new session either


async def test_expired_sessions_are_refused(settings: Settings, seeded: Seeded) -> None:
    conn = await superuser(settings)
    try:
        session_id = "E" * 43
        await conn.execute(
            "INSERT INTO audit.console_sessions (session_hash, token_id, created_at, expires_at) "
            "SELECT $1, id, now() - interval '2 hours', now() - interval '1 second' "
            "FROM audit.api_tokens WHERE name = $2",
            hash_session_id(session_id),
            seeded.names["admin"],
        )
        assert await find_session(conn, session_id) is None
        assert await find_session(conn, "short") is None
    finally:
        await conn.close()


async def test_a_cross_site_link_reloads_once_to_get_the_strict_cookie(
    client: httpx.AsyncClient, seeded: Seeded
) -> None:
    r = await client.get(
        f"/console/alerts/{seeded.alert_id}", headers={"Sec-Fetch-Site": "cross-site"}
    )
    assert r.status_code == 200
    assert '<meta http-equiv="refresh" content="0">' in r.text
    assert seeded.suffix not in r.text  # no data before the session is known
    r = await client.get(
        f"/console/alerts/{seeded.alert_id}", headers={"Sec-Fetch-Site": "same-origin"}
    )
    assert r.status_code == 401 and "Sign in" in r.text


async def test_sign_in_never_redirects_off_the_console(
    client: httpx.AsyncClient, seeded: Seeded
) -> None:
    for evil in ("https://evil.example/", "//evil.example/x", "/audit/export"):
        client.cookies.clear()
        r = await sign_in(client, seeded.tokens["auditor"], evil)
        assert r.status_code == 303 and r.headers["location"] == security.HOME


# ---------------------------------------------------------------- CSRF and roles on every route


def _console_routes(app: Litestar) -> list[tuple[str, str, Any]]:
    out = []
    for route in app.routes:
        if not route.path.startswith("/console"):
            continue
        for handler in getattr(route, "route_handlers", []):
            for method in sorted(getattr(handler, "http_methods", ())):
                if method in ("HEAD", "OPTIONS"):
                    continue
                out.append((method, route.path, handler))
    return out


def _concrete(path: str, seeded: Seeded) -> str:
    path = path.replace("{delivery_id:int}", str(seeded.unprocessed_delivery_id))
    path = path.replace("{alert_id:int}", str(seeded.alert_id))
    return re.sub(r"\{file_path:path\}", "console.css", path)


async def test_every_console_route_needs_a_session_and_the_api_role(
    server: str, app: Litestar, seeded: Seeded
) -> None:
    routes = _console_routes(app)
    posts = [(p, h) for m, p, h in routes if m == "POST" and not h.opt.get(PUBLIC)]
    gets = [(p, h) for m, p, h in routes if m == "GET" and not h.opt.get(PUBLIC)]
    assert {p for p, _ in posts} >= {
        "/console/sign-out",
        "/console/alerts/{alert_id:int}/acknowledge",
        "/console/alerts/{alert_id:int}/resolve",
        "/console/deliveries/{delivery_id:int}/replay",
    }
    # The roles are the API's, from the one table.
    need = {p: h.opt.get(ROLE, permissions.READ) for p, h in posts}
    assert need["/console/alerts/{alert_id:int}/acknowledge"] == permissions.ACKNOWLEDGE
    assert need["/console/alerts/{alert_id:int}/resolve"] == permissions.RESOLVE
    assert need["/console/deliveries/{delivery_id:int}/replay"] == permissions.REPLAY
    async with httpx.AsyncClient(base_url=server) as anonymous:
        for method, paths in (("GET", gets), ("POST", posts)):
            for path, _ in paths:
                r = await anonymous.request(method, _concrete(path, seeded), follow_redirects=False)
                assert r.status_code == 401, (method, path, r.status_code)
                assert 'action="/console/sign-in"' in r.text
    async with (
        browser(server, seeded.tokens["auditor"]) as auditor,
        browser(server, seeded.tokens["oncall"]) as oncall,
    ):
        for role, c in (("auditor", auditor), ("oncall", oncall)):
            for path, _ in gets:
                r = await c.get(_concrete(path, seeded))
                assert r.status_code == 200, (role, path, r.status_code)
            csrf = csrf_of((await c.get("/console/health")).text)
            for path, handler in posts:
                if path == "/console/sign-out":
                    continue
                required = handler.opt.get(ROLE, permissions.READ)
                if required == role or (role == "oncall" and required == "auditor"):
                    continue  # allowed: exercised by the action tests
                r = await c.post(
                    _concrete(path, seeded), data={"csrf": csrf}, follow_redirects=False
                )
                assert r.status_code == 403, (role, path, r.status_code)
                assert f"This needs role {required}" in r.text


async def test_posts_without_this_sessions_csrf_token_are_refused(
    server: str, app: Litestar, seeded: Seeded, pool: asyncpg.Pool
) -> None:
    async with pool.acquire() as conn:
        before = await conn.fetchrow(
            "SELECT a.status, (SELECT outcome FROM processors.processed "
            "WHERE delivery_id = $2) AS outcome FROM alerts.alerts a WHERE a.id = $1",
            seeded.alert_id,
            seeded.unprocessed_delivery_id,
        )
    async with (
        browser(server, seeded.tokens["admin"]) as admin,
        browser(server, seeded.tokens["admin"]) as other,
    ):
        other_csrf = csrf_of((await other.get("/console/health")).text)
        posts = [p for m, p, h in _console_routes(app) if m == "POST" and not h.opt.get(PUBLIC)]
        for path in posts:
            for data in ({}, {"csrf": ""}, {"csrf": "x" * 43}, {"csrf": other_csrf}):
                r = await admin.post(
                    _concrete(path, seeded), data={**data, "note": "forged"}, follow_redirects=False
                )
                assert r.status_code == 403, (path, data, r.status_code)
                assert "security token" in r.text
        # Nothing happened: the session is live, the alert untouched, the delivery unprocessed.
        assert (await admin.get("/console/health")).status_code == 200
        async with pool.acquire() as conn:
            after = await conn.fetchrow(
                "SELECT a.status, (SELECT outcome FROM processors.processed "
                "WHERE delivery_id = $2) AS outcome FROM alerts.alerts a WHERE a.id = $1",
                seeded.alert_id,
                seeded.unprocessed_delivery_id,
            )
        assert dict(after) == dict(before) == {"status": "open", "outcome": None}
    # The sign-in form too: without the token tied to its pre-session cookie, refused.
    async with AsyncTestClient(app) as c:
        r = await c.post(
            "/console/sign-in", data={"token": seeded.tokens["admin"]}, follow_redirects=False
        )
        assert r.status_code == 403
        assert security.SESSION_COOKIE not in c.cookies
        page = await c.get("/console/sign-in")
        stale = csrf_of(page.text)
        c.cookies.set(security.PRE_COOKIE, "P" * 43, path="/console")
        r = await c.post(
            "/console/sign-in",
            data={"csrf": stale, "token": seeded.tokens["admin"]},
            follow_redirects=False,
        )
        assert r.status_code == 403


# ---------------------------------------------------------------- headers and escaping


class _Links(HTMLParser):
    def __init__(self) -> None:
        super().__init__()
        self.urls: list[tuple[str, str, str]] = []
        self.scripts: list[dict[str, str | None]] = []

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        for name, value in attrs:
            if name in ("href", "src", "action", "hx-get", "hx-post") and value is not None:
                self.urls.append((tag, name, value))
            assert not name.startswith("on"), (tag, name, value)
            assert name != "style", (tag, value)
        if tag == "script":
            self.scripts.append(dict(attrs))


def _check_page(text: str) -> None:
    parser = _Links()
    parser.feed(text)
    for tag, name, url in parser.urls:
        assert url.startswith("/console/"), (tag, name, url)
    for attrs in parser.scripts:
        assert attrs.get("src", "").startswith("/console/static/"), attrs  # type: ignore[union-attr]
    assert HOSTILE_SCRIPT not in text
    assert "<script>window" not in text and "<img src=x" not in text
    assert 'href="javascript' not in text.lower()


async def test_pages_escape_attacker_content_and_link_only_to_the_console(
    server: str, seeded: Seeded
) -> None:
    async with browser(server, seeded.tokens["admin"]) as c:
        hostile_customer = {
            "kind": "customers",
            "provider": "stripe",
            "account": "acct_test",
            "id": seeded.hostile_object_id,
        }
        pages: list[tuple[str, dict[str, str]]] = [
            ("/console/deliveries", {}),
            ("/console/deliveries", {"object_id": seeded.hostile_object_id}),
            (f"/console/deliveries/{seeded.hostile_delivery_id}", {}),
            (f"/console/deliveries/{seeded.dead_letter_delivery_id}", {}),
            ("/console/objects", hostile_customer),
            ("/console/objects", {"kind": "customers", "provider": "stripe"}),
            ("/console/alerts", {}),
            (f"/console/alerts/{seeded.hostile_alert_id}", {}),
            ("/console/health", {}),
            ("/console/deliveries", {"event_id": "<script>window.__lh_pwned=1</script>"}),
        ]
        for url, params in pages:
            r = await c.get(url, params=params)
            assert r.status_code == 200, (url, params, r.status_code)
            _check_page(r.text)
        delivery = await c.get(f"/console/deliveries/{seeded.hostile_delivery_id}")
        assert "&lt;script&gt;window.__lh_pwned = 1; alert(&#39;pwned&#39;)&lt;/script&gt;" in (
            delivery.text
        )
        assert HOSTILE_URL in delivery.text  # shown, as text, never as a link
        assert "%3Cscript%3Ex%3C%2Fscript%3E" in delivery.text  # the object link's id, encoded
        alert = await c.get(f"/console/alerts/{seeded.hostile_alert_id}")
        assert "event &lt;script&gt;" in alert.text


async def test_security_headers_on_every_console_response(
    client: httpx.AsyncClient, server: str, seeded: Seeded
) -> None:
    async with browser(server, seeded.tokens["auditor"]) as c:
        responses = [
            await client.get("/console/sign-in"),
            await client.get("/console/deliveries"),  # 401
            await c.get("/console/deliveries"),
            await c.get("/console/deliveries/999999999"),  # 404 page
            await c.get("/console/deliveries/99999999999999999999"),  # 400 page
            await c.get("/console/alerts?rule=made_up"),  # 400 with the form
            await c.post(f"/console/alerts/{seeded.alert_id}/resolve", data={}),  # 403
            await c.get("/console/static/console.css"),
        ]
    statuses = [r.status_code for r in responses]
    assert statuses == [200, 401, 200, 404, 400, 400, 403, 200]
    for r in responses:
        assert r.headers["content-security-policy"] == security.CSP, r.url
        assert r.headers["x-content-type-options"] == "nosniff"
        assert r.headers["referrer-policy"] == "no-referrer"
        assert r.headers["x-frame-options"] == "DENY"
    for r in responses[:-1]:
        assert r.headers["content-type"].startswith("text/html")
        assert r.headers["cache-control"] == "no-store"
    assert "max-age=3600" in responses[-1].headers["cache-control"]
    js = await client.get("/console/static/htmx.min.js")
    assert js.status_code == 200 and js.headers["content-type"].startswith(
        ("application/javascript", "text/javascript")
    )


# ---------------------------------------------------------------- deliveries


async def test_delivery_search_filters_and_pages(
    server: str, seeded: Seeded, pool: asyncpg.Pool
) -> None:
    marker = f"console.page.{uuid.uuid4().hex[:8]}"
    news = [
        NewDelivery(**{**_fields(audit_delivery(f"evt_{marker}_{i}")), "event_type": marker})
        for i in range(57)
    ]
    ids = sorted(a.id for a in await append(pool, news))
    async with browser(server, seeded.tokens["auditor"]) as c:
        r = await c.get("/console/deliveries", params={"event_type": marker})
        shown = [int(x) for x in re.findall(r'href="/console/deliveries/(\d+)"', r.text)]
        assert shown == ids[::-1][:50]  # newest first, one page of 50
        nxt = re.search(r'rel="next" href="([^"]+)"', r.text)
        assert nxt
        r = await c.get(nxt.group(1).replace("&amp;", "&"))
        shown = [int(x) for x in re.findall(r'href="/console/deliveries/(\d+)"', r.text)]
        assert shown == ids[::-1][50:]
        assert 'rel="next"' not in r.text
        checks = {
            f"provider=chargebee&event_type={marker}": [],
            f"provider=stripe&event_type={marker}&event_id=evt_{marker}_3": [ids[3]],
            f"outcome=dead_letter&object_id=sub_dead{seeded.suffix}": [
                seeded.dead_letter_delivery_id
            ],
            f"outcome=unprocessed&object_id=cus_w{seeded.suffix}": [seeded.unprocessed_delivery_id],
            f"outcome=applied&object_id=cus_w{seeded.suffix}": [],
        }
        for query, expected in checks.items():
            r = await c.get(f"/console/deliveries?{query}")
            assert r.status_code == 200, query
            shown = [int(x) for x in re.findall(r'href="/console/deliveries/(\d+)"', r.text)]
            assert shown == expected, query
        r = await c.get(f"/console/deliveries?object_id={seeded.subscription_id}&outcome=stale")
        rows = r.text.split("<tbody>")[1].split("</tbody>")[0].count("<tr>")
        assert rows >= 1 and rows == r.text.count('class="badge outcome-stale"')
        future = (datetime.now(UTC) + timedelta(days=1)).strftime("%Y-%m-%dT%H:%M")
        r = await c.get(f"/console/deliveries?event_type={marker}&received_from={future}")
        assert "No deliveries match." in r.text
        r = await c.get(
            "/console/deliveries?received_from=2026-02-01T00:00&received_to=2026-01-01T00:00"
        )
        assert r.status_code == 400 and "received_from must be before received_to" in r.text
        r = await c.get("/console/deliveries?cursor=!!")
        assert r.status_code == 400 and "cursor: malformed" in r.text


def _fields(d: NewDelivery) -> dict[str, Any]:
    return {f: getattr(d, f) for f in d.__struct_fields__}


async def test_delivery_page_download_and_replay(
    server: str, seeded: Seeded, pool: asyncpg.Pool
) -> None:
    async with (
        browser(server, seeded.tokens["auditor"]) as auditor,
        browser(server, seeded.tokens["admin"]) as admin,
    ):
        r = await auditor.get(f"/console/deliveries/{seeded.hostile_delivery_id}")
        assert "Verified by" in r.text and "applied" in r.text
        assert "user-agent" in r.text and "Download the exact bytes" in r.text
        assert "prev_hash" not in r.text and "row_hash" not in r.text
        assert 'id="proof"' in r.text and "Leaf index" in r.text  # its place in the tree
        assert "Download the proof bundle" in r.text
        bundle = await auditor.get(f"/console/deliveries/{seeded.hostile_delivery_id}/proof.json")
        assert bundle.headers["content-disposition"].startswith("attachment;")
        proved = verify_bundle(bundle.json(), parse_verifier_key(PUBLIC_KEY))
        assert proved.delivery_id == seeded.hostile_delivery_id
        assert "Replay this delivery" not in r.text  # auditors cannot replay
        raw = await auditor.get(f"/console/deliveries/{seeded.hostile_delivery_id}/raw")
        async with pool.acquire() as conn:
            body = await conn.fetchval(
                "SELECT body FROM audit.deliveries WHERE id = $1", seeded.hostile_delivery_id
            )
        assert raw.content == bytes(body)
        assert raw.headers["content-type"] == "application/octet-stream"
        assert raw.headers["content-disposition"].startswith("attachment;")
        assert raw.headers["content-security-policy"].startswith("sandbox")
        dead = await auditor.get(f"/console/deliveries/{seeded.dead_letter_delivery_id}")
        assert "Dead-lettered:" in dead.text
        dup_id = seeded.delivery_ids[0]
        page = await admin.get(f"/console/deliveries/{seeded.replay_delivery_id}")
        assert "not processed yet" in page.text and "Replay this delivery" in page.text
        r = await admin.post(
            f"/console/deliveries/{seeded.replay_delivery_id}/replay",
            data={"csrf": csrf_of(page.text)},
            follow_redirects=False,
        )
        assert r.status_code == 303
        page = await admin.get(r.headers["location"])
        assert "Replayed." in page.text and "outcome-applied" in page.text
        async with pool.acquire() as conn:
            assert (
                await conn.fetchval(
                    "SELECT outcome FROM processors.processed WHERE delivery_id = $1",
                    seeded.replay_delivery_id,
                )
                == "applied"
            )
        assert (await admin.get(f"/console/deliveries/{dup_id}")).status_code == 200
        missing = await admin.post(
            "/console/deliveries/999999999/replay", data={"csrf": csrf_of(page.text)}
        )
        assert missing.status_code == 404


async def test_api_filters_by_outcome_too(client: httpx.AsyncClient, seeded: Seeded) -> None:
    r = await client.get(
        "/audit/deliveries",
        params={"outcome": "dead_letter", "limit": 1000},
        headers={"Authorization": f"Bearer {seeded.tokens['auditor']}"},
    )
    assert r.status_code == 200
    items = r.json()["items"]
    assert seeded.dead_letter_delivery_id in [i["id"] for i in items]
    assert {i["processing"]["outcome"] for i in items} == {"dead_letter"}


# ---------------------------------------------------------------- objects


async def test_object_page_shows_state_changes_and_timeline(server: str, seeded: Seeded) -> None:
    async with browser(server, seeded.tokens["auditor"]) as c:
        r = await c.get(
            "/console/objects",
            params={"kind": "subscriptions", "provider": "stripe", "id": seeded.subscription_id},
        )
        assert r.status_code == 200
        text = r.text
        assert "Current state" in text and "canceled" in text
        assert "Subscription changes" in text and "upgraded" in text
        timeline = text.split('id="timeline"')[1].split("</section>")[0]
        times = re.findall(r'<div class="when nowrap">([^<]+)</div>', timeline)
        assert len(times) >= 5 and times == sorted(times)  # provider-event order
        assert "outcome-stale" in timeline or "outcome-applied" in timeline
        assert "State history" in text and "→" in text
        assert 'id="links"' not in text  # not linked to another provider
        customer = await c.get(
            "/console/objects",
            params={"kind": "customers", "provider": "stripe", "id": seeded.customer_id},
        )
        assert customer.status_code == 200 and f"{seeded.suffix}@example.com" in customer.text
        # Linked (a provider migration): the other side, and who bills now.
        linked = await c.post(
            "/migration/links",
            content=links_csv(
                pair_rows(
                    f"c{seeded.suffix}", f"AzZ{seeded.suffix}", seeded.customer_id, None, None
                )
            ),
            headers={
                "Authorization": f"Bearer {seeded.tokens['admin']}",
                "Content-Type": "text/csv",
            },
        )
        assert linked.status_code == 200, linked.text
        customer = await c.get(
            "/console/objects",
            params={"kind": "customers", "provider": "stripe", "id": seeded.customer_id},
        )
        links = customer.text.split('id="links"')[1].split("</section>")[0]
        assert f"chargebee AzZ{seeded.suffix}" in links and "authoritative now" in links
        listing = await c.get("/console/objects", params={"kind": "subscriptions"})
        assert listing.status_code == 200 and "<table" in listing.text
        missing = await c.get(
            "/console/objects", params={"kind": "invoices", "provider": "stripe", "id": "in_nope"}
        )
        assert missing.status_code == 404
        no_provider = await c.get("/console/objects", params={"id": seeded.customer_id})
        assert no_provider.status_code == 400


# ---------------------------------------------------------------- alerts


async def test_acknowledge_and_resolve_like_the_api(
    server: str, seeded: Seeded, pool: asyncpg.Pool
) -> None:
    from alerts.lifecycle import apply_findings
    from alerts.model import Finding

    async with pool.acquire() as conn:
        (fired,) = await apply_findings(
            conn,
            [
                Finding(
                    rule="silence",
                    severity="warning",
                    provider="stripe",
                    subject=f"silence:{uuid.uuid4().hex}",
                    summary="no deliveries for 2 h",
                )
            ],
            datetime.now(UTC),
        )
    alert_id = fired.alert_id
    async with browser(server, seeded.tokens["oncall"]) as c:
        listing = await c.get("/console/alerts", params={"status": "open", "rule": "silence"})
        assert f'href="/console/alerts/{alert_id}"' in listing.text
        page = await c.get(f"/console/alerts/{alert_id}")
        csrf = csrf_of(page.text)
        r = await c.post(
            f"/console/alerts/{alert_id}/acknowledge",
            data={"csrf": csrf, "note": "looking <b>now</b>"},
            follow_redirects=False,
        )
        assert r.status_code == 303 and r.headers["location"] == f"/console/alerts/{alert_id}"
        page = await c.get(f"/console/alerts/{alert_id}")
        assert 'id="status">acknowledged' in page.text
        assert "looking &lt;b&gt;now&lt;/b&gt;" in page.text
        assert seeded.names["oncall"] in page.text
        again = await c.post(f"/console/alerts/{alert_id}/acknowledge", data={"csrf": csrf})
        assert again.status_code == 409 and "only an open alert can be acknowledged" in again.text
        r = await c.post(
            f"/console/alerts/{alert_id}/resolve",
            data={"csrf": csrf, "note": ""},
            follow_redirects=True,
        )
        assert r.status_code == 200 and 'id="status">resolved' in r.text
        again = await c.post(f"/console/alerts/{alert_id}/resolve", data={"csrf": csrf})
        assert again.status_code == 409 and "already resolved" in again.text
        # The API refuses the same transition with the same words.
        api = await c.post(
            f"/alerts/{alert_id}/resolve",
            headers={"Authorization": f"Bearer {seeded.tokens['oncall']}"},
        )
        assert api.status_code == 409 and "already resolved" in api.json()["detail"]
        long_note = await c.post(
            f"/console/alerts/{seeded.alert_id}/resolve", data={"csrf": csrf, "note": "x" * 2001}
        )
        assert long_note.status_code == 400
    async with pool.acquire() as conn:
        events = await conn.fetch(
            "SELECT actor, to_status, note FROM alerts.alert_events WHERE alert_id = $1 ORDER BY id",
            alert_id,
        )
    assert [(e["actor"], e["to_status"], e["note"]) for e in events] == [
        ("system", "open", "no deliveries for 2 h"),
        (seeded.names["oncall"], "acknowledged", "looking <b>now</b>"),
        (seeded.names["oncall"], "resolved", None),
    ]


# ---------------------------------------------------------------- health


async def test_health_page_and_its_cheap_figures(
    server: str, seeded: Seeded, pool: asyncpg.Pool, fresh_pool: asyncpg.Pool
) -> None:
    async with pool.acquire() as conn:
        await record_run(
            conn,
            ReconciliationRun(
                finished_at=datetime.now(UTC),
                provider="stripe",
                endpoint="default",
                account="acct_test",
                window_start=datetime.now(UTC) - timedelta(hours=2),
                window_end=datetime.now(UTC),
                clamped=False,
                listed=7,
                missing=1,
                backfilled=1,
            ),
        )
        runs = await latest_runs(conn, [("stripe", "default"), ("chargebee", "nope")])
    assert [(r.provider, r.listed) for r in runs] == [("stripe", 7)]
    async with browser(server, seeded.tokens["auditor"]) as c:
        r = await c.get("/console/health")
        assert r.status_code == 200
        for section in ("ingest", "backlog", "lag", "checkpoint", "reconciliation", "open-alerts"):
            assert f'id="{section}"' in r.text
        assert "listed 7, missing 1, backfilled 1" in r.text
        assert "<svg" in r.text and "<polyline" in r.text
        assert 'hx-get="/console/health"' in r.text

    # The figures, exactly, on a log of known shape (a database of this test's own).
    now = datetime.now(UTC).replace(second=30, microsecond=0)
    per_minute = {3: 2, 1: 5, 0: 1}  # minutes ago -> deliveries received then
    news = []
    for ago in sorted(per_minute, reverse=True):
        for i in range(per_minute[ago]):
            d = audit_delivery(f"evt_h_{ago}_{i}")
            news.append(NewDelivery(**{**_fields(d), "received_at": now - timedelta(minutes=ago)}))
    await append(fresh_pool, news)
    async with fresh_pool.acquire() as conn:
        counts = await arrivals_per_minute(conn, now + timedelta(seconds=1), 5)
        assert counts == [0, 2, 0, 5, 1]
        backlog = await pending(conn)
        assert backlog.count == 8 and not backlog.capped
        assert backlog.oldest_received_at == now - timedelta(minutes=3)
        assert (await pending(conn, cap=3)).capped
        lag = await apply_lag_per_minute(conn, now + timedelta(seconds=1), 3)
        assert lag == [None, None, None]
