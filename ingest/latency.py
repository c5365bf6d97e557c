"""ASGI middleware timing every routed HTTP request into ``ledgerhook_http_request_duration_seconds``.

The ``route`` label is the route's path template (``/webhooks/{provider:str}/{endpoint:str}``),
never the raw path, so label values stay bounded; ``status`` is the class (``2xx``...).
"""

from __future__ import annotations

import time

from litestar.enums import ScopeType
from litestar.types import ASGIApp, Message, Receive, Scope, Send

from ledgerhook import metrics

__all__ = ["latency_middleware"]

_CLASSES = {1: "1xx", 2: "2xx", 3: "3xx", 4: "4xx", 5: "5xx"}


def latency_middleware(app: ASGIApp) -> ASGIApp:
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
            route = scope.get("path_template") or "unrouted"
            metrics.request_seconds.labels(route, _CLASSES.get(status // 100, "5xx")).observe(
                time.perf_counter() - start
            )

    return middleware
