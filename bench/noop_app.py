"""The HTTP floor: a Litestar app whose POST reads the whole body and answers 200.

Served by the same server, worker count and flags as ``ledgerhook serve``, it measures what this
machine's HTTP stack costs before Ledgerhook does any work, so the ingest benchmark can print
ingest throughput as a ratio of it. ``/health/live`` answers too, for the readiness wait.
"""

from __future__ import annotations

from typing import Any

from litestar import Litestar, Request, get, post


@post("/{path:path}", status_code=200)
async def receive(request: Request[Any, Any, Any]) -> dict[str, int]:
    body = await request.body()
    return {"received": len(body)}


@get("/health/live", sync_to_thread=False)
def live() -> dict[str, str]:
    return {"status": "ok"}


def create_app() -> Litestar:
    return Litestar(route_handlers=[receive, live], openapi_config=None, debug=False)


def main() -> None:
    """Serve the floor exactly as ``ledgerhook.cli.serve.cmd_serve`` serves Ledgerhook."""
    import argparse

    import uvicorn

    parser = argparse.ArgumentParser(prog="python -m bench.noop_app")
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=8001)
    parser.add_argument("--workers", type=int, default=1)
    args = parser.parse_args()
    # Same keywords as ledgerhook.cli.serve.cmd_serve (keep in step; see bench/servers.py).
    uvicorn.run(
        "bench.noop_app:create_app",
        factory=True,
        host=args.host,
        port=args.port,
        workers=args.workers,
        loop="uvloop",
        http="httptools",
        lifespan="on",
        access_log=False,
        log_config=None,
        proxy_headers=False,
        server_header=False,
        timeout_graceful_shutdown=15,
    )


if __name__ == "__main__":
    main()
