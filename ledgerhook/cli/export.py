"""``export``: stream the audit log to a file for offline verification (filled in below)."""

from __future__ import annotations

from typing import Any


def register(sub: Any) -> None:
    del sub
