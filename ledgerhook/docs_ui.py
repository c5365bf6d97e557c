"""The API docs at ``/schema``: Swagger UI served from the installed package, nothing from a CDN.

Litestar's own viewers load their JavaScript, CSS and favicon from public CDNs, so ``/schema`` was
a blank page offline (and every visit told a CDN about it). Here the page references only
``/schema/assets/...``: Swagger UI's files from the ``swagger-ui-py`` package (a pinned dependency,
Apache-2.0), served by the app itself. The schema is embedded in the page; Swagger UI's online
validator badge is off.

Unknown pages under ``/schema`` answer the API's one error shape, not Litestar's HTML 404.
"""

from __future__ import annotations

import importlib.util
from pathlib import Path
from typing import Any

from litestar import Request, Response, Router
from litestar.openapi.plugins import OpenAPIRenderPlugin
from litestar.static_files import create_static_files_router

from ledgerhook.http_errors import error_response

__all__ = ["ASSETS", "LocalSwaggerUI", "swagger_ui_assets"]

ASSETS = "/assets"  # under the schema path: /schema/assets/...
_FILES = ("swagger-ui.css", "swagger-ui-bundle.js", "swagger-ui-standalone-preset.js")


def swagger_ui_assets() -> Path:
    """Swagger UI's files in the installed ``swagger_ui`` package (found without importing it:
    its ``__init__`` pulls in web-framework adapters we do not use)."""
    spec = importlib.util.find_spec("swagger_ui")
    if spec is None or not spec.submodule_search_locations:
        raise RuntimeError("the swagger-ui-py package is not installed (pip install -e .)")
    static = Path(next(iter(spec.submodule_search_locations))) / "static"
    missing = [name for name in _FILES if not (static / name).is_file()]
    if missing:
        raise RuntimeError(f"swagger-ui-py has no {', '.join(missing)} in {static}")
    return static


async def _html_404_as_error(response: Any) -> Any:
    """Litestar answers unknown pages under the schema path with an HTML 404 of its own."""
    if isinstance(response, Response) and response.status_code == 404:
        return error_response(404, "no such documentation page (the docs are at /schema)")
    return response


class LocalSwaggerUI(OpenAPIRenderPlugin):
    """Swagger UI from ``{schema path}/assets``; registers that static route itself."""

    def __init__(self, *, schema_path: str = "/schema", path: str = "/swagger") -> None:
        self.assets = schema_path.rstrip("/") + ASSETS
        super().__init__(
            path=path,
            favicon=f"<link rel='icon' type='image/png' href='{self.assets}/favicon-32x32.png'>",
        )

    def render(self, request: Request[Any, Any, Any], openapi_schema: dict[str, Any]) -> bytes:
        title = str(openapi_schema.get("info", {}).get("title", "API"))
        head = f"""<head>
    <title>{title} API</title>
    {self.favicon}
    <meta charset="utf-8"/>
    <meta name="viewport" content="width=device-width, initial-scale=1">
    <link href="{self.assets}/swagger-ui.css" rel="stylesheet">
    <script src="{self.assets}/swagger-ui-bundle.js"></script>
    <script src="{self.assets}/swagger-ui-standalone-preset.js"></script>
    {self.style}
  </head>"""
        body = b"".join(
            [
                b"""<body>
    <div id="swagger-ui"></div>
    <script>
      window.ui = SwaggerUIBundle({
        spec: """,
                self.render_json(request, openapi_schema),
                b""",
        dom_id: "#swagger-ui",
        deepLinking: true,
        validatorUrl: null,
        presets: [SwaggerUIBundle.presets.apis, SwaggerUIStandalonePreset],
        layout: "BaseLayout"
      });
    </script>
  </body>""",
            ]
        )
        return b"".join(
            [b"<!DOCTYPE html>\n<html>\n  ", head.encode(), b"\n  ", body, b"\n</html>\n"]
        )

    def receive_router(self, router: Router) -> None:
        router.register(
            create_static_files_router(
                path=ASSETS,
                directories=[swagger_ui_assets()],
                include_in_schema=False,
                # Pinned with the package: a browser may keep them for a day.
                cache_control=None,
            )
        )
        router.after_request = _html_404_as_error
