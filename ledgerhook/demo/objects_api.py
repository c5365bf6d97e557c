"""A stand-in for Stripe's and Chargebee's object APIs (lists and retrieves), on a local port.

What ``ledgerhook sync`` and drift checks call, for the tests that must cross processes (a sync
killed mid-way and resumed), the sync benchmark, and trying ``ledgerhook sync`` by hand::

    python -m ledgerhook.demo.objects_api --port 12112 --count 1000
    LEDGERHOOK_STRIPE_API_KEY=sk_test_x LEDGERHOOK_STRIPE_API_BASE=http://127.0.0.1:12112 \\
        ledgerhook sync --provider stripe
    LEDGERHOOK_CHARGEBEE_API_KEY=cb_test LEDGERHOOK_CHARGEBEE_API_BASE=http://127.0.0.1:12112 \\
        ledgerhook sync --provider chargebee

Objects are generated from the real fixture payloads (``fixtures/``), object ``i`` of a list
with ids like ``cus_00000042``, newest first (``created`` = base - i), so a list of 100 000
costs no memory. Stripe: ``GET /v1/<list>`` with ``limit``, ``starting_after``,
``created[gte|lte]``, ``include[]=total_count``; ``GET /v1/<list>/<id>``. Chargebee:
``GET /api/v2/<list>`` with ``limit``, ``offset`` (``next_offset``), ``include_deleted``;
``GET /api/v2/<list>/<id>``. Tests steer it: :attr:`ObjectsApi.faults` answers the next requests
with given statuses (429 with ``Retry-After``, 500, a body that is not JSON), ``delay`` slows
every page, :meth:`ObjectsApi.delete` removes an object (Stripe stops listing it; Chargebee lists
it with ``deleted: true``), :attr:`ObjectsApi.requests` records every request line. Standard
library only.
"""

from __future__ import annotations

import argparse
import copy
import importlib.resources
import json
import sys
import threading
import time
import urllib.parse
from collections.abc import Sequence
from email.utils import formatdate
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

import msgspec

__all__ = ["ObjectsApi", "main"]

BASE_CREATED = 1_700_000_000
_LISTS_STRIPE: dict[str, tuple[str, str, str]] = {
    # list -> (kind, id prefix, fixture)
    "customers": ("customer", "cus_", "customer_updated.json"),
    "subscriptions": ("subscription", "sub_", "subscription_updated.json"),
    "invoices": ("invoice", "in_", "invoice_paid.json"),
    "charges": ("charge", "ch_", "charge_succeeded.json"),
    "payment_intents": ("payment_intent", "pi_", "payment_intent_succeeded.json"),
    "refunds": ("refund", "re_", "refund_created.json"),
    "credit_notes": ("credit_note", "cn_", "credit_note_created.json"),
}
_LISTS_CHARGEBEE: dict[str, tuple[str, str, str]] = {
    "customers": ("customer", "cust_", "event_subscription_created_retrieve.json"),
    "subscriptions": ("subscription", "subs_", "event_subscription_created_retrieve.json"),
    "invoices": ("invoice", "inv_", "event_subscription_created_retrieve.json"),
    "transactions": ("transaction", "txn_", "payment_succeeded.json"),
    "credit_notes": ("credit_note", "CN-", "credit_note_created.json"),
}
_json = msgspec.json.Encoder()


def _fixture(provider: str, name: str) -> dict[str, Any]:
    text = (
        importlib.resources.files("ledgerhook.demo") / "fixtures" / provider / name
    ).read_bytes()
    data: dict[str, Any] = msgspec.json.decode(text)
    inner: dict[str, Any] = data.get("event", data)
    return inner


class Catalog:
    """The objects served (pure): ``count`` per list, generated on demand from fixtures."""

    def __init__(self, count: int, *, pretty: bool = False) -> None:
        self.count = count
        # Indented JSON, as an API may send it: what is stored must be these bytes, not a copy.
        self.pretty = pretty
        self.deleted: set[tuple[str, str, str]] = set()  # (provider, list, id)
        self.changes: dict[tuple[str, str, str], dict[str, Any]] = {}
        self._stripe = {
            name: _fixture("stripe", f)["data"]["object"]
            for name, (_, _, f) in _LISTS_STRIPE.items()
        }
        self._chargebee = {
            name: _fixture("chargebee", f)["content"][kind]
            for name, (kind, _, f) in _LISTS_CHARGEBEE.items()
        }

    def _encode(self, obj: dict[str, Any]) -> bytes:
        return json.dumps(obj, indent=2).encode() if self.pretty else _json.encode(obj)

    @staticmethod
    def index(object_id: str) -> int | None:
        tail = object_id[-8:]
        return int(tail) if tail.isdigit() else None

    def stripe_object(self, list_name: str, i: int) -> dict[str, Any]:
        kind, prefix, _ = _LISTS_STRIPE[list_name]
        o: dict[str, Any] = copy.deepcopy(self._stripe[list_name])
        o.update(id=f"{prefix}{i:08d}", created=BASE_CREATED - i, livemode=False)
        if kind == "customer":
            o["email"] = f"customer{i}@example.com"
        if kind in ("subscription", "invoice", "charge", "payment_intent", "credit_note"):
            o["customer"] = f"cus_{i:08d}"
        if kind == "invoice":
            o["subscription"] = f"sub_{i:08d}"
        if kind == "refund":
            o["charge"] = f"ch_{i:08d}"
        o.update(self.changes.get(("stripe", list_name, o["id"]), {}))
        return o

    def chargebee_object(self, list_name: str, i: int) -> dict[str, Any]:
        kind, prefix, _ = _LISTS_CHARGEBEE[list_name]
        o: dict[str, Any] = copy.deepcopy(self._chargebee[list_name])
        object_id = f"{prefix}{i:08d}"
        o.update(id=object_id, resource_version=(BASE_CREATED - i) * 1000)
        o["created_at" if kind in ("customer", "subscription") else "date"] = BASE_CREATED - i
        if kind != "customer":
            o["customer_id"] = f"cust_{i:08d}"
        if kind == "customer":
            o["email"] = f"customer{i}@example.com"
        o.update(self.changes.get(("chargebee", list_name, object_id), {}))
        if ("chargebee", list_name, object_id) in self.deleted:
            o["deleted"] = True
        return o

    def chargebee_entry(self, list_name: str, i: int) -> dict[str, Any]:
        """A list entry or retrieve answer: the object, and what Chargebee sends along."""
        kind = _LISTS_CHARGEBEE[list_name][0]
        entry = {kind: self.chargebee_object(list_name, i)}
        if kind == "subscription":  # the SDK requires it, as the API always sends it
            entry["customer"] = self.chargebee_object("customers", i)
        return entry

    def answer(self, path: str, authorization: str) -> tuple[int, bytes]:
        """The (status, body) either API gives for a GET of ``path`` (with its query)."""
        url = urllib.parse.urlsplit(path)
        query = urllib.parse.parse_qs(url.query)
        parts = [urllib.parse.unquote(p) for p in url.path.split("/") if p]
        if parts[:1] == ["v1"] and len(parts) in (2, 3) and parts[1] in _LISTS_STRIPE:
            if not authorization.startswith("Bearer sk_"):
                return 401, b'{"error":{"type":"invalid_request_error"}}'
            if len(parts) == 2:
                return self.stripe_list(parts[1], query)
            return self.stripe_retrieve(parts[1], parts[2])
        if parts[:2] == ["api", "v2"] and len(parts) in (3, 4) and parts[2] in _LISTS_CHARGEBEE:
            if not authorization.startswith("Basic "):
                return 401, _cb_error(401, "api_authentication_failed")
            if len(parts) == 3:
                return self.chargebee_list(parts[2], query)
            i = self.index(parts[3])
            if i is None or i >= self.count:
                return 404, _cb_error(404, "resource_not_found")
            return 200, self._encode(self.chargebee_entry(parts[2], i))
        return 404, b'{"error":{"type":"invalid_request_error"}}'

    def stripe_retrieve(self, list_name: str, object_id: str) -> tuple[int, bytes]:
        i = self.index(object_id)
        missing = b'{"error":{"type":"invalid_request_error","code":"resource_missing"}}'
        if i is None or i >= self.count:
            return 404, missing
        if ("stripe", list_name, object_id) in self.deleted:
            if _LISTS_STRIPE[list_name][0] != "customer":
                return 404, missing
            return 200, self._encode({"id": object_id, "object": "customer", "deleted": True})
        return 200, self._encode(self.stripe_object(list_name, i))

    def stripe_list(self, list_name: str, query: dict[str, list[str]]) -> tuple[int, bytes]:
        def one(name: str) -> str | None:
            values = query.get(name)
            return values[-1] if values else None

        limit = max(1, min(int(one("limit") or 10), 100))
        start = 0
        if (after := one("starting_after")) is not None:
            i = self.index(after)
            if i is None or ("stripe", list_name, after) in self.deleted:
                kind = _LISTS_STRIPE[list_name][0]
                return 404, _json.encode(
                    {
                        "error": {
                            "type": "invalid_request_error",
                            "code": "resource_missing",
                            "param": "starting_after",
                            "message": f"No such {kind}: '{after}'",
                        }
                    }
                )
            start = i + 1
        if (lte := one("created[lte]")) is not None:
            start = max(start, BASE_CREATED - int(lte))
        end = self.count
        if (gte := one("created[gte]")) is not None:
            end = min(end, BASE_CREATED - int(gte) + 1)
        objects: list[bytes] = []
        i = start
        while i < end and len(objects) < limit:
            oid = f"{_LISTS_STRIPE[list_name][1]}{i:08d}"
            if ("stripe", list_name, oid) not in self.deleted:
                objects.append(self._encode(self.stripe_object(list_name, i)))
            i += 1
        more = i < end
        total = b""
        if "total_count" in (one("include[0]"), one("include[]")):
            total = b',"total_count":' + str(max(end, 0)).encode()
        return 200, (
            b'{"object":"list","url":"/v1/'
            + list_name.encode()
            + b'","has_more":'
            + (b"true" if more else b"false")
            + total
            + b',"data":['
            + b",".join(objects)
            + b"]}"
        )

    def chargebee_list(self, list_name: str, query: dict[str, list[str]]) -> tuple[int, bytes]:
        limit = max(1, min(int(query.get("limit", ["10"])[-1]), 100))
        start = int(query.get("offset", ["0"])[-1] or 0)
        end = min(start + limit, self.count)
        entries = [self._encode(self.chargebee_entry(list_name, i)) for i in range(start, end)]
        nxt = b',"next_offset":"' + str(end).encode() + b'"' if end < self.count else b""
        return 200, b'{"list":[' + b",".join(entries) + b"]" + nxt + b"}"


class _Server(ThreadingHTTPServer):
    def handle_error(self, request: Any, client_address: Any) -> None:
        if isinstance(sys.exc_info()[1], ConnectionError):
            return  # a client that went away (a killed sync) is not the stand-in's error
        super().handle_error(request, client_address)


class ObjectsApi:
    """The HTTP server in a thread (``with ObjectsApi(count=...) as api``)."""

    def __init__(
        self, *, count: int = 10, host: str = "127.0.0.1", port: int = 0, delay: float = 0.0
    ) -> None:
        stand_in = self
        self.catalog = Catalog(count)
        self.delay = delay
        self.faults: list[tuple[int, bytes, dict[str, str]]] = []
        self.requests: list[str] = []
        self._lock = threading.Lock()

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def do_GET(self) -> None:
                with stand_in._lock:
                    stand_in.requests.append(self.path)
                    fault = stand_in.faults.pop(0) if stand_in.faults else None
                if stand_in.delay:
                    time.sleep(stand_in.delay)
                if fault is not None:
                    self._send(*fault)
                    return
                status, body = stand_in.catalog.answer(
                    self.path, self.headers.get("Authorization", "")
                )
                self._send(status, body)

            def _send(
                self, status: int, body: bytes, headers: dict[str, str] | None = None
            ) -> None:
                self.send_response(status)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(body)))
                self.send_header("Request-Id", f"req_standin_{len(stand_in.requests)}")
                for name, value in (headers or {}).items():
                    self.send_header(name, value)
                self.end_headers()
                self.wfile.write(body)

            def date_time_string(self, timestamp: float | None = None) -> str:
                return formatdate(timestamp, usegmt=True)

            def log_message(self, format: str, *args: object) -> None:
                return

        self.server = _Server((host, port), Handler)
        self.server.daemon_threads = True
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)

    @property
    def url(self) -> str:
        host, port = self.server.server_address[:2]
        return f"http://{host!s}:{port}"

    def delete(self, provider: str, list_name: str, object_id: str) -> None:
        self.catalog.deleted.add((provider, list_name, object_id))

    def change(self, provider: str, list_name: str, object_id: str, **fields: Any) -> None:
        self.catalog.changes.setdefault((provider, list_name, object_id), {}).update(fields)

    def __enter__(self) -> ObjectsApi:
        self.thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.server.shutdown()
        self.server.server_close()
        self.thread.join(timeout=5)


def _cb_error(status: int, code: str) -> bytes:
    return _json.encode(
        {
            "message": code,
            "type": "invalid_request",
            "api_error_code": code,
            "http_status_code": status,
        }
    )


def main(argv: Sequence[str] | None = None) -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n", 1)[0])
    p.add_argument("--host", default="127.0.0.1")
    p.add_argument("--port", type=int, default=12112)
    p.add_argument("--count", type=int, default=1000, help="objects per list")
    p.add_argument("--delay", type=float, default=0.0, help="seconds added to every answer")
    args = p.parse_args(argv)
    api = ObjectsApi(count=args.count, host=args.host, port=args.port, delay=args.delay)
    print(f"serving {args.count} objects per list at {api.url}", flush=True)  # noqa: T201
    try:
        api.server.serve_forever()
    except KeyboardInterrupt:
        pass
    finally:
        api.server.server_close()


if __name__ == "__main__":
    main()
