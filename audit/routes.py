"""HTTP routes of the `audit` package, collected by `ledgerhook.app.route_handlers`."""

from __future__ import annotations

from typing import Any

routes: list[Any] = []
