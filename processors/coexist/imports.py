"""Parsing link and price-map imports (CSV or JSON). Pure: bytes in, lines out, or an error
naming the first bad line; nothing is applied unless every line is good.

CSV has a header row (line 1); columns may come in any order; blank lines are skipped but
counted, so a reported line number is the line an editor shows. JSON is a list of objects (or
``{"links": [...]}`` / ``{"prices": [...]}``) whose items are numbered from 1.

Link columns: ``source_provider``, ``source_id``, ``target_provider``, ``target_id`` (required);
``cohort`` (required for customers; a subscription defaults to its billing account's cohort),
``kind`` (``customer``, the default, or ``subscription``), ``source_account``,
``target_account`` (default: the provider's default endpoint account), ``billing_account``.
Price columns: ``source_provider``, ``source_price``, ``target_provider``, ``target_price``.
"""

from __future__ import annotations

import csv
import io
import re
from collections.abc import Iterator, Mapping
from typing import Any, Literal

import msgspec

from processors.coexist.errors import InvalidImport
from processors.coexist.model import LINK_KINDS, PROVIDERS, LinkLine, PriceLine, Ref

__all__ = ["MAX_LINES", "Format", "parse_links", "parse_prices", "valid_name"]

Format = Literal["csv", "json"]
MAX_LINES = 1_000_000
_NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9._:@-]{0,99}")
_MAX_ID = 255
LINK_REQUIRED = ("source_provider", "source_id", "target_provider", "target_id")
LINK_OPTIONAL = ("cohort", "kind", "source_account", "target_account", "billing_account")
PRICE_REQUIRED = ("source_provider", "source_price", "target_provider", "target_price")
_json_any = msgspec.json.Decoder(Any)


def valid_name(value: str) -> bool:
    """Cohort and billing account names: short, printable, no spaces."""
    return _NAME.fullmatch(value) is not None


def _decode_text(data: bytes) -> str:
    try:
        return data.decode("utf-8-sig")
    except UnicodeDecodeError:
        for n, raw in enumerate(data.split(b"\n"), start=1):
            try:
                raw.decode("utf-8")
            except UnicodeDecodeError:
                raise InvalidImport("not valid UTF-8", line=n) from None
        raise InvalidImport("not valid UTF-8") from None


def _csv_rows(
    data: bytes, required: tuple[str, ...], optional: tuple[str, ...]
) -> Iterator[tuple[int, dict[str, str]]]:
    reader = csv.reader(io.StringIO(_decode_text(data), newline=""), strict=True)
    try:
        header = next(reader, None)
        if header is None:
            raise InvalidImport("empty file: expected a header row", line=1)
        names = [h.strip().lower() for h in header]
        missing = [c for c in required if c not in names]
        unknown = [c for c in names if c not in required and c not in optional]
        if missing or unknown or len(set(names)) != len(names):
            raise InvalidImport(
                "header must name each of "
                + ", ".join(required)
                + (f" (optional: {', '.join(optional)})" if optional else "")
                + (f"; missing {', '.join(missing)}" if missing else "")
                + (f"; unknown {', '.join(unknown)}" if unknown else ""),
                line=1,
            )
        count = 0
        for row in reader:
            line = reader.line_num
            if not row or all(not f.strip() for f in row):
                continue
            if len(row) != len(names):
                raise InvalidImport(f"expected {len(names)} fields, got {len(row)}", line=line)
            count += 1
            if count > MAX_LINES:
                raise InvalidImport(f"more than {MAX_LINES} lines; split the file", line=line)
            yield line, {n: f.strip() for n, f in zip(names, row, strict=True)}
    except csv.Error as exc:
        raise InvalidImport(f"malformed CSV: {exc}", line=reader.line_num) from None


def _json_items(data: bytes, key: str) -> Iterator[tuple[int, dict[str, str]]]:
    try:
        doc = _json_any.decode(data)
    except (msgspec.DecodeError, UnicodeDecodeError) as exc:
        raise InvalidImport(f"not JSON: {exc}") from None
    if isinstance(doc, dict) and set(doc) == {key}:
        doc = doc[key]
    if not isinstance(doc, list):
        raise InvalidImport(f'expected a list of objects (or {{"{key}": [...]}})')
    if len(doc) > MAX_LINES:
        raise InvalidImport(f"more than {MAX_LINES} items; split the import")
    for n, item in enumerate(doc, start=1):
        if not isinstance(item, dict) or not all(
            isinstance(v, str) or v is None for v in item.values()
        ):
            raise InvalidImport("expected an object of strings", line=n, unit="item")
        yield n, {str(k).strip().lower(): (v or "").strip() for k, v in item.items()}


def _rows(
    data: bytes, fmt: Format, key: str, required: tuple[str, ...], optional: tuple[str, ...]
) -> Iterator[tuple[int, dict[str, str], str]]:
    if fmt == "csv":
        for n, row in _csv_rows(data, required, optional):
            yield n, row, "line"
        return
    for n, row in _json_items(data, key):
        missing = [c for c in required if not row.get(c)]
        unknown = sorted(c for c in row if c not in required and c not in optional)
        if missing or unknown:
            raise InvalidImport(
                (f"missing {', '.join(missing)}" if missing else "")
                + ("; " if missing and unknown else "")
                + (f"unknown field(s) {', '.join(unknown)}" if unknown else ""),
                line=n,
                unit="item",
            )
        yield n, row, "item"


def _provider(row: dict[str, str], column: str, n: int, unit: str) -> str:
    value = row.get(column, "").lower()
    if value not in PROVIDERS:
        raise InvalidImport(
            f"{column}: unknown provider {row.get(column, '')!r} (use {' or '.join(PROVIDERS)})",
            line=n,
            unit=unit,
        )
    return value


def _ident(row: dict[str, str], column: str, n: int, unit: str) -> str:
    value = row.get(column, "")
    if not value:
        raise InvalidImport(f"{column} is empty", line=n, unit=unit)
    if len(value) > _MAX_ID or any(ord(ch) < 32 for ch in value):
        raise InvalidImport(f"{column}: not a provider id", line=n, unit=unit)
    return value


def _account(
    row: dict[str, str],
    column: str,
    provider: str,
    defaults: Mapping[str, str],
    *,
    n: int,
    unit: str,
) -> str:
    value = row.get(column, "")
    if value:
        return _ident(row, column, n, unit)
    default = defaults.get(provider)
    if not default:
        raise InvalidImport(
            f"{column} is required: no default {provider} endpoint account is configured",
            line=n,
            unit=unit,
        )
    return default


def _name(row: dict[str, str], column: str, n: int, unit: str) -> str | None:
    value = row.get(column, "")
    if not value:
        return None
    if not valid_name(value):
        raise InvalidImport(
            f"{column} {value!r}: use letters, digits and . _ : @ - (at most 100)",
            line=n,
            unit=unit,
        )
    return value


def parse_links(
    data: bytes,
    fmt: Format,
    *,
    default_accounts: Mapping[str, str],
    default_cohort: str | None = None,
) -> list[LinkLine]:
    """Every line of a link import, or :class:`InvalidImport` naming the first bad one."""
    out: list[LinkLine] = []
    for n, row, unit in _rows(data, fmt, "links", LINK_REQUIRED, LINK_OPTIONAL):
        kind = (row.get("kind") or "customer").lower()
        if kind not in LINK_KINDS:
            raise InvalidImport(f"kind {kind!r}: use customer or subscription", line=n, unit=unit)
        sp = _provider(row, "source_provider", n, unit)
        tp = _provider(row, "target_provider", n, unit)
        if sp == tp:
            raise InvalidImport(
                "source and target are the same provider: a link joins two providers",
                line=n,
                unit=unit,
            )
        cohort = _name(row, "cohort", n, unit) or default_cohort
        if cohort is None and kind == "customer":
            raise InvalidImport("cohort is required for a customer link", line=n, unit=unit)
        out.append(
            LinkLine(
                line=n,
                kind="customer" if kind == "customer" else "subscription",
                cohort=cohort,
                source=Ref(
                    provider=sp,
                    account=_account(row, "source_account", sp, default_accounts, n=n, unit=unit),
                    id=_ident(row, "source_id", n, unit),
                ),
                target=Ref(
                    provider=tp,
                    account=_account(row, "target_account", tp, default_accounts, n=n, unit=unit),
                    id=_ident(row, "target_id", n, unit),
                ),
                billing_account=_name(row, "billing_account", n, unit),
            )
        )
    if not out:
        raise InvalidImport("nothing to import: no lines after the header")
    return out


def parse_prices(data: bytes, fmt: Format) -> list[PriceLine]:
    out = []
    for n, row, unit in _rows(data, fmt, "prices", PRICE_REQUIRED, ()):
        sp = _provider(row, "source_provider", n, unit)
        tp = _provider(row, "target_provider", n, unit)
        if sp == tp:
            raise InvalidImport("source and target are the same provider", line=n, unit=unit)
        out.append(
            PriceLine(
                line=n,
                source_provider=sp,
                source_price=_ident(row, "source_price", n, unit),
                target_provider=tp,
                target_price=_ident(row, "target_price", n, unit),
            )
        )
    if not out:
        raise InvalidImport("nothing to import: no lines after the header")
    return out
