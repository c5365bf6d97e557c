"""The API docs: a viewer served by the app itself (nothing from the internet), operations described
for people, and every documented error in the one error shape."""

from __future__ import annotations

import re
from html.parser import HTMLParser

from litestar.testing import AsyncTestClient

from ledgerhook.app import create_app
from ledgerhook.settings import Settings


class _Links(HTMLParser):
    def __init__(self) -> None:
        super().__init__()
        self.urls: list[str] = []

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        self.urls += [v for k, v in attrs if k in {"src", "href"} and v]


async def test_the_docs_viewer_is_served_from_the_package(settings: Settings) -> None:
    async with AsyncTestClient(create_app(settings)) as client:
        page = await client.get("/schema")
        assert page.status_code == 200 and page.headers["content-type"].startswith("text/html")
        html = page.text
        assert not re.search(r"(?i)(https?:)?//[a-z0-9.-]+\.[a-z]{2,}", html), (
            "the docs page references another host"
        )
        links = _Links()
        links.feed(html)
        assert len(links.urls) >= 3  # stylesheet, scripts, icon
        for url in links.urls:
            assert url.startswith("/schema/assets/"), url
            asset = await client.get(url)
            assert asset.status_code == 200, url
            assert len(asset.content) > 500
        assert "validatorUrl: null" in html  # no badge fetched from the online validator
        assert (await client.get("/schema/swagger")).text == html

        missing = await client.get("/schema/redoc")
        assert missing.status_code == 404 and missing.json()["error"] == "not_found"


async def test_operations_are_described_for_people(settings: Settings) -> None:
    async with AsyncTestClient(create_app(settings)) as client:
        schema = (await client.get("/schema/openapi.json")).json()
    assert schema["info"].get("description")
    assert "ErrorBody" in schema["components"]["schemas"]
    operations = [
        (f"{method.upper()} {path}", op)
        for path, item in schema["paths"].items()
        for method, op in item.items()
    ]
    assert len(operations) >= 20
    for name, op in operations:
        summary = op.get("summary") or ""
        # Litestar's fallback is the handler's name in PascalCase ("AlertsList").
        assert " " in summary or summary in {"Liveness", "Readiness"}, f"{name}: {summary!r}"
        assert not re.fullmatch(r"(?:[A-Z][a-z]+){2,}", summary), f"{name}: {summary!r}"
        assert len(op.get("description") or "") >= 20, f"{name}: no description"
        for status, response in op["responses"].items():
            if status.startswith(("4", "5")):
                ref = response["content"]["application/json"]["schema"].get("$ref", "")
                assert ref.endswith("/ErrorBody") or name.startswith("GET /health"), (
                    f"{name} {status}: {response}"
                )
