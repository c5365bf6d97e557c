"""The web console in a real headless Chromium (Debian's ``chromium``, driven by Playwright).

The server is the real app under uvicorn (``ledgerhook serve``) on a free port, against a
database of this module's own with real fixture deliveries applied by the real processors.
Screenshots of the main pages are written to ``tests/browser/screenshots/`` on every run (the
README shows them).
"""

from __future__ import annotations

import os
import urllib.parse
import uuid
from collections.abc import AsyncIterator, Awaitable, Callable, Iterator
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import asyncpg
import pytest
import pytest_asyncio
from playwright.async_api import Browser, BrowserContext, Page, async_playwright

from ledgerhook.db import create_pool
from ledgerhook.settings import Settings
from processors.service import process_delivery
from tests.conftest import make_settings
from tests.integration.console_helpers import Seeded, console_server, seed
from tests.integration.processors_helpers import append, new_delivery, stripe_event

CHROMIUM = "/usr/bin/chromium"
CHROMIUM_ARGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--no-first-run",
]
SCREENSHOTS = Path(__file__).resolve().parent / "screenshots"
PHONE = {"width": 390, "height": 844}
DESKTOP = {"width": 1280, "height": 900}

if not Path(CHROMIUM).exists():
    if os.environ.get("CI"):
        pytest.fail("chromium is not installed: `make browser-tools` installs it", pytrace=False)
    pytest.skip(
        "chromium not installed (`make browser-tools` installs it; `make test` does)",
        allow_module_level=True,
    )


@pytest_asyncio.fixture(scope="module")
async def console_db(db_factory: Callable[[], Awaitable[str]]) -> AsyncIterator[Settings]:
    settings = make_settings(await db_factory())
    pool = await create_pool(settings, min_size=1, max_size=4)
    try:
        # An hour of traffic before the story, so the health page has something to draw.
        now = datetime.now(UTC)
        spread = [
            new_delivery(
                "stripe",
                stripe_event("customer_updated.json", object_id=f"cus_bg{i % 7}"),
                age_seconds=3600 - i * 45,
            )
            for i in range(80)
        ]
        for d in await append(pool, spread):
            async with pool.acquire() as conn:
                await process_delivery(conn, d.id)
        assert now  # the spread is relative to now
        yield settings
    finally:
        await pool.close()


@pytest_asyncio.fixture(scope="module")
async def seeded(console_db: Settings) -> Seeded:
    pool = await create_pool(console_db, min_size=1, max_size=4)
    try:
        return await seed(pool, "demo" + uuid.uuid4().hex[:4])
    finally:
        await pool.close()


@pytest.fixture(scope="module")
def server(console_db: Settings, seeded: Seeded) -> Iterator[str]:
    del seeded  # the data is in before the server starts
    with console_server(console_db, LEDGERHOOK_API__AUTH_FAILURES_PER_MINUTE="1000") as url:
        yield url


@pytest_asyncio.fixture(scope="module")
async def chromium() -> AsyncIterator[Browser]:
    async with async_playwright() as p:
        browser = await p.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS)
        try:
            yield browser
        finally:
            await browser.close()


class Watch:
    """What a page did that it must not: dialogs opened, CSP violations, script errors."""

    def __init__(self, page: Page) -> None:
        self.dialogs: list[str] = []
        self.console: list[str] = []
        self.errors: list[str] = []

        async def on_dialog(dialog: Any) -> None:
            self.dialogs.append(dialog.message)
            await dialog.dismiss()

        page.on("dialog", on_dialog)
        page.on("console", lambda m: self.console.append(f"{m.type}: {m.text}"))
        page.on("pageerror", lambda e: self.errors.append(str(e)))

    def assert_clean(self) -> None:
        assert self.dialogs == []
        assert self.errors == []
        # 4xx pages are expected in these stories; anything else said on the console is not.
        said = [m for m in self.console if "Failed to load resource" not in m]
        assert said == []


@pytest_asyncio.fixture
async def context(chromium: Browser, server: str) -> AsyncIterator[BrowserContext]:
    ctx = await chromium.new_context(base_url=server, viewport=DESKTOP)  # type: ignore[arg-type]
    try:
        yield ctx
    finally:
        await ctx.close()


async def navigate(page: Page, act: Awaitable[None]) -> None:
    """Do what navigates (a click, a tap) and wait for the new page."""
    async with page.expect_navigation():
        await act


async def sign_in(page: Page, token: str) -> None:
    await page.fill("#token", token)
    await navigate(page, page.click("button[type=submit]"))


async def shot(page: Page, name: str) -> None:
    """A screenshot for the README, rewritten on every run."""
    SCREENSHOTS.mkdir(exist_ok=True)
    path = SCREENSHOTS / f"{name}.png"
    await page.screenshot(path=str(path), full_page=True)
    assert path.stat().st_size > 1000


async def test_sign_in_search_open_follow_and_sign_out(
    context: BrowserContext, seeded: Seeded, server: str, chromium: Browser
) -> None:
    page = await context.new_page()
    watch = Watch(page)
    r = await page.goto("/console/deliveries")
    assert r is not None and r.status == 401
    assert await page.locator("h1").inner_text() == "Sign in"
    await shot(page, "sign-in")
    await sign_in(page, seeded.tokens["admin"])
    assert page.url.endswith("/console/deliveries")
    assert await page.evaluate("typeof window.htmx") == "object"  # vendored, allowed by the CSP

    # Search.
    await page.select_option("select[name=provider]", "stripe")
    await page.fill("input[name=object_id]", seeded.subscription_id)
    await navigate(page, page.click("form[role=search] button[type=submit]"))
    rows = page.locator("#deliveries tbody tr")
    assert await rows.count() >= 5
    assert "object_id=" + seeded.subscription_id in page.url
    await page.fill("input[name=object_id]", "")
    await page.fill("input[name=event_type]", "")
    await navigate(page, page.click("form[role=search] button[type=submit]"))
    await shot(page, "deliveries")

    # Open a delivery of the subscription.
    await page.goto(f"/console/deliveries?object_id={seeded.subscription_id}")
    await navigate(page, page.locator("#deliveries tbody tr a").first.click())
    assert (await page.locator("h1").inner_text()).startswith("Delivery ")
    assert await page.get_by_text("Verified by").count() == 1
    assert await page.locator("#body-pretty").count() == 1
    await page.goto(f"/console/deliveries/{seeded.delivery_ids[3]}")
    await shot(page, "delivery")

    # Follow the object's timeline, and from it another delivery.
    await navigate(page, page.locator("dd a[href^='/console/objects']").click())
    entries = page.locator("#timeline ol.timeline > li")
    assert await entries.count() >= 5
    assert await page.locator("#state").get_by_text("canceled").count() >= 1
    await shot(page, "object-timeline")
    await navigate(page, entries.nth(1).locator("a").first.click())
    assert "/console/deliveries/" in page.url

    await page.goto("/console/health")
    assert await page.locator("#ingest svg polyline").count() >= 1
    await shot(page, "health")

    # Sign out: the session is revoked on the server; the old cookie is refused.
    (old,) = [c for c in await context.cookies() if c["name"] == "lh_console"]
    await navigate(page, page.click("form.who button"))
    assert page.url.endswith("/console/sign-in")
    thief = await chromium.new_context(base_url=server)
    try:
        await thief.add_cookies([old])  # type: ignore[list-item]
        stolen = await thief.new_page()
        r = await stolen.goto("/console/alerts")
        assert r is not None and r.status == 401
        assert await stolen.locator("h1").inner_text() == "Sign in"
    finally:
        await thief.close()
    watch.assert_clean()


async def test_a_hostile_payload_renders_inert(context: BrowserContext, seeded: Seeded) -> None:
    page = await context.new_page()
    watch = Watch(page)
    await page.goto("/console/sign-in")
    await sign_in(page, seeded.tokens["auditor"])
    q = urllib.parse.urlencode
    pages = [
        f"/console/deliveries/{seeded.hostile_delivery_id}",
        "/console/deliveries?" + q({"object_id": seeded.hostile_object_id}),
        f"/console/alerts/{seeded.hostile_alert_id}",
        "/console/alerts?status=open",
        "/console/objects?"
        + q({"kind": "customers", "provider": "stripe", "id": seeded.hostile_object_id}),
        "/console/deliveries?" + q({"event_id": "<script>window.__lh_pwned=1</script>"}),
    ]
    for url in pages:
        r = await page.goto(url)
        assert r is not None and r.status == 200, url
        await page.wait_for_timeout(100)
        assert await page.evaluate("window.__lh_pwned") is None, url
        # The payload is on the page as text, and nowhere as markup or a link.
        assert await page.locator("a[href^='javascript']").count() == 0
        assert await page.locator("script:not([src])").count() == 0
        assert await page.locator("img").count() == 0
    await page.goto(f"/console/deliveries/{seeded.hostile_delivery_id}")
    assert (
        "window.__lh_pwned = 1; alert('pwned')" in await page.locator("#body-pretty").inner_text()
    )
    assert "javascript:window.__lh_pwned=1" in await page.locator("table.headers").inner_text()
    watch.assert_clean()


async def test_acknowledge_and_resolve_on_a_phone(
    chromium: Browser, server: str, seeded: Seeded
) -> None:
    ctx = await chromium.new_context(
        base_url=server, viewport=PHONE, is_mobile=True, has_touch=True, device_scale_factor=2
    )  # type: ignore[arg-type]
    try:
        page = await ctx.new_page()
        watch = Watch(page)
        await page.goto("/console/alerts?status=open")
        await sign_in(page, seeded.tokens["oncall"])
        assert page.url.endswith("/console/alerts?status=open")
        assert await page.locator("#alerts li.card").count() >= 2
        assert await page.evaluate("document.documentElement.scrollWidth") <= PHONE["width"]
        await shot(page, "alerts-phone")
        await navigate(page, page.locator(f"a[href='/console/alerts/{seeded.alert_id}']").click())
        assert await page.evaluate("document.documentElement.scrollWidth") <= PHONE["width"]
        await page.fill("#ack-note", "on it (phone)")
        await navigate(page, page.get_by_role("button", name="Acknowledge").tap())
        assert await page.locator("#status").inner_text() == "acknowledged"
        assert "on it (phone)" in await page.locator("#history").inner_text()
        await shot(page, "alert-phone")
        await page.fill("#resolve-note", "fixed the endpoint secret")
        await navigate(page, page.get_by_role("button", name="Resolve").tap())
        assert await page.locator("#status").inner_text() == "resolved"
        history = await page.locator("#history").inner_text()
        assert "fixed the endpoint secret" in history and seeded.names["oncall"] in history
        assert await page.get_by_role("button", name="Resolve").count() == 0
        watch.assert_clean()
    finally:
        await ctx.close()


async def _submit_form(page: Page, action: str, fields: dict[str, str]) -> int:
    """Submit a form the page does not offer, from within the page, and return the status."""
    async with page.expect_navigation() as nav:
        await page.evaluate(
            """([action, fields]) => {
                const f = document.createElement('form');
                f.method = 'post';
                f.action = action;
                for (const [k, v] of Object.entries(fields)) {
                    const i = document.createElement('input');
                    i.type = 'hidden'; i.name = k; i.value = v; f.appendChild(i);
                }
                document.body.appendChild(f);
                f.submit();
            }""",
            [action, fields],
        )
    response = await nav.value
    assert response is not None
    return response.status


async def test_a_token_of_the_wrong_role_sees_403_pages(
    context: BrowserContext, seeded: Seeded
) -> None:
    page = await context.new_page()
    await page.goto("/console/sign-in")
    await sign_in(page, seeded.tokens["auditor"])
    await page.goto(f"/console/alerts/{seeded.hostile_alert_id}")
    assert await page.get_by_role("button", name="Acknowledge").count() == 0
    csrf = await page.locator("form.who input[name=csrf]").get_attribute("value")
    assert csrf
    status = await _submit_form(
        page, f"/console/alerts/{seeded.hostile_alert_id}/acknowledge", {"csrf": csrf}
    )
    assert status == 403
    assert await page.locator("h1").inner_text() == "403 Forbidden"
    assert "This needs role oncall" in await page.locator("main").inner_text()
    await page.goto(f"/console/deliveries/{seeded.unprocessed_delivery_id}")
    status = await _submit_form(
        page, f"/console/deliveries/{seeded.unprocessed_delivery_id}/replay", {"csrf": csrf}
    )
    assert status == 403
    assert "This needs role admin" in await page.locator("main").inner_text()


async def test_forms_without_the_csrf_token_are_refused(
    context: BrowserContext, seeded: Seeded, console_db: Settings, server: str
) -> None:
    page = await context.new_page()
    await page.goto("/console/sign-in")
    await sign_in(page, seeded.tokens["admin"])
    await page.goto(f"/console/alerts/{seeded.hostile_alert_id}")
    status = await _submit_form(
        page, f"/console/alerts/{seeded.hostile_alert_id}/resolve", {"note": "forged"}
    )
    assert status == 403
    assert "security token" in await page.locator("main").inner_text()

    # A real cross-site attack: another origin's page auto-submits a form at the console. The
    # SameSite=Strict cookie is not sent, and the token is missing anyway: nothing happens.
    attacker = "http://attacker.test/"
    target = f"{server}/console/alerts/{seeded.hostile_alert_id}/resolve"
    await page.route(
        attacker,
        lambda route: route.fulfill(
            content_type="text/html",
            body=f'<form method="post" action="{target}"><input name="note" value="pwned">'
            "</form><script>document.forms[0].submit()</script>",
        ),
    )
    async with page.expect_navigation(url=target) as nav:
        await page.goto(attacker)
    response = await nav.value
    assert response is not None and response.status in (401, 403)
    conn = await asyncpg.connect(console_db.database_url.reveal())
    try:
        status_now = await conn.fetchval(
            "SELECT status FROM alerts.alerts WHERE id = $1", seeded.hostile_alert_id
        )
    finally:
        await conn.close()
    assert status_now == "open"
