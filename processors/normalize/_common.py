"""Small pure helpers both normalisers share."""

from __future__ import annotations

from decimal import Decimal, InvalidOperation
from typing import Any

import msgspec

__all__ = ["metadata_text", "percent_hundredths"]

_json = msgspec.json.Encoder()


def metadata_text(raw: dict[str, Any] | None) -> dict[str, str]:
    """Provider metadata with every value as text (Stripe's are already strings; Chargebee's
    ``meta_data`` is arbitrary JSON, so numbers become their digits and objects their JSON)."""
    if not raw:
        return {}
    out: dict[str, str] = {}
    for key, value in raw.items():
        if value is None:
            continue
        if isinstance(value, str):
            out[key] = value
        elif isinstance(value, bool):
            out[key] = "true" if value else "false"
        elif isinstance(value, int | float):
            out[key] = str(value)
        else:
            out[key] = _json.encode(value).decode()
    return out


def percent_hundredths(value: float | int | str | None) -> int | None:
    """A percentage as exact hundredths (12.5 -> 1250). Through ``str`` so a JSON float such as
    33.33 becomes 3333, not the nearest binary fraction times 100."""
    if value is None:
        return None
    try:
        return int((Decimal(str(value)) * 100).to_integral_value())
    except (InvalidOperation, ValueError):
        return None
