"""Showing a delivery's body to a person, without changing what it says.

The pretty view re-indents the body's own characters (a lexical pass over the JSON text): it
never parses and re-serialises, so duplicate keys, number spellings, escapes and key order stay
exactly as the provider sent them, and a body that is not valid JSON still shows, indented as far
as it goes. It is bounded: bodies above :data:`PRETTY_LIMIT` bytes, or a view that would grow
past :data:`VIEW_LIMIT` characters (deeply nested input), are shown as plain text, and indentation
stops deepening at :data:`MAX_DEPTH`. The exact bytes are always one click away (download).
"""

from __future__ import annotations

import msgspec

__all__ = ["MAX_DEPTH", "PRETTY_LIMIT", "VIEW_LIMIT", "BodyView", "body_view", "reindent"]

PRETTY_LIMIT = 256 * 1024
VIEW_LIMIT = 1024 * 1024
MAX_DEPTH = 32
_INDENT = "  "


class BodyView(msgspec.Struct, frozen=True, kw_only=True):
    size: int
    # The body as text (UTF-8, undecodable bytes shown as U+FFFD), cut at VIEW_LIMIT.
    text: str
    # The re-indented JSON view, when the body looks like JSON and stays within the limits.
    pretty: str | None
    truncated: bool
    valid_utf8: bool


def reindent(text: str, limit: int = VIEW_LIMIT) -> str | None:
    """``text`` with JSON structure on separate, indented lines; None past ``limit`` characters."""
    out: list[str] = []
    size = 0
    depth = 0
    in_string = escaped = False

    def emit(piece: str) -> bool:
        nonlocal size
        size += len(piece)
        out.append(piece)
        return size <= limit

    def newline() -> str:
        return "\n" + _INDENT * min(max(depth, 0), MAX_DEPTH)

    closing = {"{": "}", "[": "]"}
    i, n = 0, len(text)
    while i < n:
        ch = text[i]
        i += 1
        if in_string:
            if escaped:
                escaped = False
            elif ch == "\\":
                escaped = True
            elif ch == '"':
                in_string = False
            if not emit(ch):
                return None
            continue
        if ch in " \t\r\n":
            continue
        if ch == '"':
            in_string = True
            piece = ch
        elif ch in closing:
            j = i
            while j < n and text[j] in " \t\r\n":
                j += 1
            if j < n and text[j] == closing[ch]:  # an empty container stays on its line
                piece = ch + closing[ch]
                i = j + 1
            else:
                depth += 1
                piece = ch + newline()
        elif ch in "}]":
            depth -= 1
            piece = newline() + ch
        elif ch == ",":
            piece = "," + newline()
        elif ch == ":":
            piece = ": "
        else:
            piece = ch
        if not emit(piece):
            return None
    return "".join(out)


def body_view(body: bytes) -> BodyView:
    try:
        text = body.decode("utf-8")
        valid = True
    except UnicodeDecodeError:
        text = body.decode("utf-8", errors="replace")
        valid = False
    truncated = len(text) > VIEW_LIMIT
    shown = text[:VIEW_LIMIT]
    pretty = None
    if len(body) <= PRETTY_LIMIT and text.lstrip()[:1] in ("{", "["):
        pretty = reindent(text)
    return BodyView(
        size=len(body), text=shown, pretty=pretty, truncated=truncated, valid_utf8=valid
    )
