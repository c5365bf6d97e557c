"""``serve``: the HTTP API (webhooks, health, metrics, audit/state/alerts routes) under uvicorn.

uvicorn with uvloop and httptools where available. ``--workers N`` runs N processes sharing the
port; each builds its app through :func:`app_factory`, which reads the settings once per process
(nothing is built at import time). With several processes Prometheus metrics need a shared
directory: ``PROMETHEUS_MULTIPROC_DIR`` is set to a fresh temporary directory when unset, before
any process imports the metrics module, and ``/metrics`` aggregates across processes.
"""

from __future__ import annotations

import argparse
import importlib.util
import os
import shutil
import tempfile
from typing import Any

from ledgerhook.logs import configure_logging
from ledgerhook.settings import load_settings

__all__ = ["app_factory", "register"]


def register(sub: Any) -> None:
    p = sub.add_parser("serve", help="run the HTTP API (webhooks, health, metrics, read API)")
    p.add_argument("--host", default="127.0.0.1", help="address to bind (default 127.0.0.1)")
    p.add_argument("--port", type=int, default=8000, help="port (default 8000)")
    p.add_argument(
        "--workers", type=int, default=1, help="server processes sharing the port (default 1)"
    )
    p.set_defaults(handler=cmd_serve)


def app_factory() -> Any:
    """Build the app in a server process: settings read once, here, from the environment."""
    from ledgerhook.app import create_app  # Sentry starts in the app's startup hook

    settings = load_settings()
    configure_logging(settings)
    return create_app(settings)


def _have(module: str) -> bool:
    return importlib.util.find_spec(module) is not None


def cmd_serve(args: argparse.Namespace) -> int:
    import uvicorn

    settings = load_settings()  # fail fast, naming a bad setting, before any process starts
    configure_logging(settings)
    made_dir: str | None = None
    if args.workers > 1 and not os.environ.get("PROMETHEUS_MULTIPROC_DIR"):
        made_dir = tempfile.mkdtemp(prefix="ledgerhook-metrics-")
        os.environ["PROMETHEUS_MULTIPROC_DIR"] = made_dir
    try:
        uvicorn.run(
            "ledgerhook.cli.serve:app_factory",
            factory=True,
            host=args.host,
            port=args.port,
            workers=args.workers,
            loop="uvloop" if _have("uvloop") else "asyncio",
            http="httptools" if _have("httptools") else "h11",
            lifespan="on",
            access_log=False,
            log_config=None,  # keep our JSON logging
            proxy_headers=False,
            server_header=False,
            timeout_graceful_shutdown=15,
        )
    finally:
        if made_dir is not None:
            shutil.rmtree(made_dir, ignore_errors=True)
    return 0
