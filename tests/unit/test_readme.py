"""README.md renders as written: whole tables, closed fences, and event-type lists that match code.

Generic on purpose: every table and block in the README is checked, whoever wrote it.
"""

from __future__ import annotations

import re

import pytest

from processors.normalize.chargebee import EVENTS as CHARGEBEE_EVENTS
from processors.normalize.stripe import EVENTS as STRIPE_EVENTS
from tests.readme_blocks import (
    README,
    cells,
    code_blocks,
    fence_problems,
    runnable_blocks,
    table_problems,
)

TEXT = README.read_text(encoding="utf-8")


def test_every_table_renders_as_one_table() -> None:
    problems = table_problems(TEXT)
    assert not problems, "\n".join(problems)


def test_every_fence_closes_where_it_seems_to() -> None:
    assert code_blocks(TEXT)
    problems = fence_problems(TEXT)
    assert not problems, "\n".join(problems)


@pytest.mark.parametrize(
    ("text", "problem"),
    [
        ("```sh\necho hi\n``` and then prose\nmore prose\n", "text after a closing fence"),
        ("para\n\n```sh\necho hi\n", "never closed"),
    ],
)
def test_the_checker_finds_broken_fences(text: str, problem: str) -> None:
    assert any(problem in found for found in fence_problems(text))


def test_there_are_runnable_blocks_and_they_are_shell() -> None:
    blocks = runnable_blocks(TEXT)
    assert len(blocks) >= 3
    assert all(b.info[0] in {"sh", "bash", "shell"} for b in blocks)


@pytest.mark.parametrize(
    ("text", "problem"),
    [
        ("| a | b |\n| --- | --- |\n| 1 | 2 |\n\n| 3 | 4 |\n", "without a header"),
        ("| a | b |\n| --- | --- |\n| 1 | 2 | 3 |\n", "3 cells"),
        ("| a | b |\n| 1 | 2 |\n", "without a header"),
        ("| a | b |\n| --- | --- |\n| `x|y` | 2 |\n", "3 cells"),
    ],
)
def test_the_checker_finds_broken_tables(text: str, problem: str) -> None:
    (found,) = table_problems(text)
    assert problem in found


def test_the_checker_accepts_escaped_pipes_and_ignores_code_blocks() -> None:
    ok = "| a | b |\n| --- | --- |\n| `x\\|y` | 2 |\n\n```text\n| not | a | table\n```\n"
    assert table_problems(ok) == []
    assert cells("| `x\\|y` | 2 |") == ["`x\\|y`", "2"]


def _listed(provider: str) -> list[str]:
    match = re.search(rf"^- \*\*{provider}\*\* \((\d+)\): (.*?)(?=^- \*\*|^$)", TEXT, re.M | re.S)
    assert match, f"README lists no {provider} event types"
    names = re.findall(r"`([^`]+)`", match.group(2))
    assert int(match.group(1)) == len(names)
    return names


def test_readme_lists_the_event_types_the_normalisers_apply() -> None:
    assert _listed("Stripe") == list(STRIPE_EVENTS)
    assert _listed("Chargebee") == list(CHARGEBEE_EVENTS)
