"""ASGI middleware timing every routed HTTP request into ``ledgerhook_http_request_duration_seconds``.

The ``route`` label is the route's path template (``/webhooks/{provider:str}/{endpoint:str}``),
never the raw path, so label values stay bounded; ``status`` is the class (``2xx``...).
"""

from __future__ import annotations

import time
from typing import Any

from litestar.enums import ScopeType
from litestar.types import ASGIApp, Message, Receive, Scope, Send

from ledgerhook import metrics

__all__ = ["latency_middleware"]

_CLASSES = {1: "1xx", 2: "2xx", 3: "3xx", 4: "4xx", 5: "5xx"}


def latency_middleware(app: ASGIApp) -> ASGIApp:
    # Labelled children cached per (route, class): ``labels()`` builds a key and takes a lock on
    # every call. Both label values come from bounded sets (route templates, five classes).
    children: dict[tuple[str, int], Any] = {}

    async def middleware(scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != ScopeType.HTTP:
            await app(scope, receive, send)
            return
        start = time.perf_counter()
        status = 500

        async def send_wrapper(message: Message) -> None:
            nonlocal status
            if message["type"] == "http.response.start":
                status = message["status"]
            await send(message)

        try:
            await app(scope, receive, send_wrapper)
        finally:
            elapsed = time.perf_counter() - start
            route = scope.get("path_template") or "unrouted"
            key = (route, status // 100)
            child = children.get(key)
            if child is None:
                child = children[key] = metrics.request_seconds.labels(
                    route, _CLASSES.get(key[1], "5xx")
                )
            child.observe(elapsed)

    return middleware
