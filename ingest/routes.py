"""HTTP routes of the `ingest` package, collected by `ledgerhook.app.route_handlers`."""

from __future__ import annotations

from typing import Any

from ingest.health import health_routes
from ingest.webhooks import webhook_routes

routes: list[Any] = [*webhook_routes, *health_routes]
