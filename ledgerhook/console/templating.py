"""The console's Jinja environment: autoescaping everywhere, strict undefined, a few filters.

Everything a template prints goes through autoescaping (bodies, headers, ids, alert text are
attacker-controlled: a provider payload can contain anything). No template uses ``|safe`` and no
filter here returns markup: the filters return plain strings that are escaped like any other.
Links are built from our own route paths with their values percent-encoded (:func:`qs`), so a
value can never become a ``javascript:`` URL or leave the console.
"""

from __future__ import annotations

import json
import urllib.parse
from collections.abc import Mapping
from datetime import UTC, datetime
from typing import Any

from jinja2 import Environment, PackageLoader, StrictUndefined
from litestar.plugins.jinja import JinjaTemplateEngine
from litestar.template.config import TemplateConfig

__all__ = ["environment", "template_config"]


def ts(value: datetime | None) -> str:
    if value is None:
        return "—"
    return value.astimezone(UTC).strftime("%Y-%m-%d %H:%M:%S UTC")


def unix(value: int | None) -> str:
    if value is None:
        return "—"
    try:
        return ts(datetime.fromtimestamp(value, UTC))
    except (OverflowError, OSError, ValueError):
        return str(value)


def seconds(value: float | None) -> str:
    """A duration for people: 0.042 s, 12 s, 4 min, 3 h 5 min."""
    if value is None:
        return "—"
    if value < 1:
        return f"{value:.3f} s"
    if value < 120:
        return f"{value:.0f} s"
    if value < 7200:
        return f"{value / 60:.0f} min"
    return f"{int(value // 3600)} h {int(value % 3600 // 60)} min"


def age(value: datetime | None) -> str:
    if value is None:
        return "—"
    return seconds(max((datetime.now(UTC) - value).total_seconds(), 0.0)) + " ago"


def to_json(value: Any) -> str:
    """Pretty JSON text of decoded data (evidence, snapshots, changes); escaped when printed."""
    return json.dumps(value, indent=2, ensure_ascii=False, sort_keys=True, default=str)


def compact_json(value: Any) -> str:
    return json.dumps(value, ensure_ascii=False, sort_keys=True, default=str)


def changes(change: Any) -> list[tuple[str, str, str]]:
    """``{"field": [before, after]}`` as (field, before, after) lines; other shapes as one line."""
    if not isinstance(change, Mapping):
        return [] if change is None else [("", "", compact_json(change))]
    out: list[tuple[str, str, str]] = []
    for field, value in sorted(change.items()):
        if isinstance(value, list | tuple) and len(value) == 2:
            out.append((str(field), compact_json(value[0]), compact_json(value[1])))
        else:
            out.append((str(field), "", compact_json(value)))
    return out


def qs(params: Mapping[str, Any]) -> str:
    """A query string of the non-empty values, percent-encoded."""
    return urllib.parse.urlencode({k: v for k, v in params.items() if v not in (None, "")})


def environment() -> Environment:
    env = Environment(
        loader=PackageLoader("ledgerhook.console", "templates"),
        autoescape=True,
        undefined=StrictUndefined,
        trim_blocks=True,
        lstrip_blocks=True,
    )
    env.filters.update(
        ts=ts,
        unix=unix,
        seconds=seconds,
        age=age,
        to_json=to_json,
        compact_json=compact_json,
        changes=changes,
    )
    env.globals["qs"] = qs
    return env


def template_config() -> TemplateConfig[JinjaTemplateEngine]:
    return TemplateConfig(instance=JinjaTemplateEngine.from_environment(environment()))
