"""A stand-in for Stripe's Events API (``GET /v1/events``), served by the demo on a local port.

It lists the story's events in Stripe's list format, newest first, with the filters Ledgerhook's
reconciliation uses (``created[gte]``/``created[gt]``, ``limit``, ``starting_after``,
``delivery_success``). Each event is embedded byte for byte as the demo built it. A request
without a ``Bearer sk_...`` key gets Stripe's 401 error shape. Standard library only: it runs in
a thread for the duration of the demo.
"""

from __future__ import annotations

import threading
import urllib.parse
from collections.abc import Sequence
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

from ledgerhook.demo.story import Event

__all__ = ["EventsApi", "list_page"]


def list_page(
    events: Sequence[Event], undelivered: frozenset[str], query: dict[str, list[str]]
) -> bytes:
    """The ``/v1/events`` response body for ``query`` (pure)."""

    def one(name: str) -> str | None:
        values = query.get(name)
        return values[-1] if values else None

    selected = sorted(events, key=lambda e: (e.created, e.event_id), reverse=True)
    if (gte := one("created[gte]")) is not None:
        selected = [e for e in selected if e.created >= int(gte)]
    if (gt := one("created[gt]")) is not None:
        selected = [e for e in selected if e.created > int(gt)]
    if (success := one("delivery_success")) is not None:
        want_failed = success.lower() == "false"
        selected = [e for e in selected if (e.event_id in undelivered) == want_failed]
    if (after := one("starting_after")) is not None:
        ids = [e.event_id for e in selected]
        selected = selected[ids.index(after) + 1 :] if after in ids else []
    limit = max(1, min(int(one("limit") or 10), 100))
    page, more = selected[:limit], len(selected) > limit
    data = b",".join(e.body for e in page)
    return (
        b'{"object":"list","url":"/v1/events","has_more":'
        + (b"true" if more else b"false")
        + b',"data":['
        + data
        + b"]}"
    )


class EventsApi:
    """The HTTP server, started and stopped around the demo (``with EventsApi(...) as api``)."""

    def __init__(
        self, events: Sequence[Event], undelivered: frozenset[str], host: str, port: int
    ) -> None:
        stand_in = self
        self.events = list(events)
        self.undelivered = undelivered
        self.requests = 0

        class Handler(BaseHTTPRequestHandler):
            def do_GET(self) -> None:
                stand_in.requests += 1
                url = urllib.parse.urlsplit(self.path)
                if url.path != "/v1/events":
                    self._send(
                        404,
                        b'{"error":{"type":"invalid_request_error","message":"Unrecognized request URL"}}',
                    )
                    return
                auth = self.headers.get("Authorization", "")
                if not auth.startswith("Bearer sk_"):
                    self._send(
                        401,
                        b'{"error":{"type":"invalid_request_error","message":"Invalid API Key provided"}}',
                    )
                    return
                query = urllib.parse.parse_qs(url.query)
                try:
                    body = list_page(stand_in.events, stand_in.undelivered, query)
                except ValueError:
                    self._send(
                        400,
                        b'{"error":{"type":"invalid_request_error","message":"Invalid parameters"}}',
                    )
                    return
                self._send(200, body)

            def _send(self, status: int, body: bytes) -> None:
                self.send_response(status)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(body)))
                self.send_header("Request-Id", "req_demo")
                self.end_headers()
                self.wfile.write(body)

            def log_message(self, format: str, *args: object) -> None:
                return  # quiet: the demo prints its own story

        self.server = ThreadingHTTPServer((host, port), Handler)
        self.server.daemon_threads = True
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)

    @property
    def url(self) -> str:
        host, port = self.server.server_address[:2]
        return f"http://{host!s}:{port}"

    def __enter__(self) -> EventsApi:
        self.thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.server.shutdown()
        self.server.server_close()
        self.thread.join(timeout=5)
