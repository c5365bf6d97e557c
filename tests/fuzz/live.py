"""A real ``ledgerhook serve`` process on the shared test database, for tests that need a real
HTTP server (schemathesis over the wire, slow bodies, header limits, captured server logs)."""

from __future__ import annotations

import os
import tempfile
from pathlib import Path

from ledgerhook.settings import Settings
from tests.conftest import CHARGEBEE_AUTH, CHECKPOINT_KEY, REDIS_URL, STRIPE_SECRET
from tests.faults.services import Service, free_port


def server_env(settings: Settings, **extra: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("LEDGERHOOK_")}
    env.update(
        {
            "LEDGERHOOK_ENV_FILE": "",  # never a developer's .env
            "LEDGERHOOK_DATABASE_URL": settings.database_url.reveal(),
            "LEDGERHOOK_REDIS_URL": REDIS_URL,
            "LEDGERHOOK_CHECKPOINT_KEY": CHECKPOINT_KEY,
            "LEDGERHOOK_STRIPE_WEBHOOK_SECRETS": STRIPE_SECRET,
            "LEDGERHOOK_STRIPE_ACCOUNT": "acct_live",
            "LEDGERHOOK_CHARGEBEE_BASIC_AUTH": CHARGEBEE_AUTH,
            "LEDGERHOOK_CHARGEBEE_SITE": "live-site",
            "LEDGERHOOK_PROCESSORS__QUEUE_NAME": settings.processors.queue_name,
            "LEDGERHOOK_LOG_FORMAT": "json",
            "LEDGERHOOK_LOG_LEVEL": "DEBUG",
            "PYTHONUNBUFFERED": "1",
        }
    )
    env.update(extra)
    return env


def start_server(settings: Settings, **extra: str) -> Service:
    port = free_port()
    service = Service(
        "api",
        ["serve", "--host", "127.0.0.1", "--port", str(port)],
        server_env(settings, **extra),
        Path(tempfile.mkdtemp(prefix="lh-live-")),
        port=port,
    )
    service.start()
    return service


def base_url(service: Service) -> str:
    return f"http://127.0.0.1:{service.port}"
