"""Reading README.md as GitHub renders it: fenced code blocks, runnable shell blocks, tables.

A shell block is *runnable* when its info string says so: a fence opened with ```` ```sh runnable ````
(or ``bash runnable``/``shell runnable``). tests/integration/test_readme_commands.py runs every
such block, in README order, from a plain shell in a checkout whose ``.env`` points at a fresh
database, with a ``ledgerhook run`` of that checkout serving the API (``127.0.0.1:8000`` and
``localhost:8000`` in a block are that server's address); each must exit 0.

Tables follow GitHub's rules: a header row, a delimiter row (``| --- |``), then rows; cells split
on pipes not escaped with a backslash, even inside backticks (so write ``\\|`` there). A blank line
ends a table: rows after it, without a header of their own, render as raw text.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from pathlib import Path

README = Path(__file__).resolve().parents[1] / "README.md"

_FENCE = re.compile(r"^ {0,3}(`{3,}|~{3,})(.*)$")
_DELIMITER_CELL = re.compile(r"^:?-{3,}:?$")
SHELLS = frozenset({"sh", "bash", "shell"})


@dataclass(frozen=True)
class Block:
    line: int  # 1-based line of the opening fence
    info: tuple[str, ...]
    body: str

    @property
    def runnable(self) -> bool:
        return bool(self.info) and self.info[0] in SHELLS and "runnable" in self.info[1:]


def _scan(text: str) -> tuple[list[Block], list[tuple[int, str]]]:
    """Fenced blocks, and the lines outside them (number, text)."""
    blocks: list[Block] = []
    outside: list[tuple[int, str]] = []
    lines = text.splitlines()
    i = 0
    while i < len(lines):
        match = _FENCE.match(lines[i])
        if match is None:
            outside.append((i + 1, lines[i]))
            i += 1
            continue
        fence, info = match.group(1), match.group(2).strip()
        start, body = i + 1, []
        i += 1
        while i < len(lines):
            close = _FENCE.match(lines[i])
            if (
                close
                and close.group(1)[0] == fence[0]
                and len(close.group(1)) >= len(fence)
                and not close.group(2).strip()
            ):
                break
            body.append(lines[i])
            i += 1
        blocks.append(Block(start, tuple(info.split()), "\n".join(body) + "\n"))
        i += 1  # the closing fence (or the end of the file)
    return blocks, outside


def code_blocks(text: str) -> list[Block]:
    return _scan(text)[0]


def fence_problems(text: str) -> list[str]:
    """Fences that do not do what they look like: one never closed (the rest of the file becomes
    code), or a would-be closing fence with text after it (it closes nothing)."""
    problems: list[str] = []
    lines = text.splitlines()
    for block in code_blocks(text):
        opening = _FENCE.match(lines[block.line - 1])
        assert opening is not None
        fence = opening.group(1)
        end = block.line + len(block.body.splitlines())
        if end >= len(lines):
            problems.append(f"README.md:{block.line}: this fence is never closed")
        for offset, line in enumerate(block.body.splitlines(), start=1):
            inner = _FENCE.match(line)
            if inner and inner.group(1).startswith(fence) and inner.group(2).strip():
                problems.append(
                    f"README.md:{block.line + offset}: text after a closing fence "
                    f"({line.strip()[:30]!r}): it closes nothing; put the text on the next line"
                )
    return problems


def runnable_blocks(text: str) -> list[Block]:
    return [b for b in code_blocks(text) if b.runnable]


def cells(row: str) -> list[str]:
    """A table row's cells, split as GitHub does: on every pipe not escaped by a backslash."""
    inner = row.strip()
    inner = inner.removeprefix("|")
    if inner.endswith("|") and not inner.endswith("\\|"):
        inner = inner[:-1]
    return [c.strip() for c in re.split(r"(?<!\\)\|", inner)]


def table_problems(text: str) -> list[str]:
    """Every table that would not render as one: a missing header or delimiter row, a row whose
    cell count differs from the header's, rows cut off from their table by a blank line."""
    problems: list[str] = []
    groups: list[list[tuple[int, str]]] = []
    previous = -1
    for number, line in _scan(text)[1]:
        if line.lstrip().startswith("|"):
            if number == previous + 1 and groups:
                groups[-1].append((number, line))
            else:
                groups.append([(number, line)])
            previous = number
    for group in groups:
        first = group[0][0]
        if len(group) < 2 or not all(_DELIMITER_CELL.match(c) for c in cells(group[1][1])):
            problems.append(
                f"README.md:{first}: table rows without a header and delimiter row (a blank line "
                "inside a table, or a missing `| --- |` row): they render as raw pipes"
            )
            continue
        width = len(cells(group[0][1]))
        for number, line in group[1:]:
            n = len(cells(line))
            if n != width:
                problems.append(
                    f"README.md:{number}: {n} cells where the header at line {first} has {width} "
                    "(escape a literal | as \\|, even inside backticks)"
                )
    return problems
