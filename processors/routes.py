"""HTTP routes of the `processors` package, collected by `ledgerhook.app.route_handlers`."""

from __future__ import annotations

from typing import Any

routes: list[Any] = []
