"""Authority fold and change checks, as tables of histories (pure)."""

from __future__ import annotations

import pytest

from processors.coexist.authority import AuthorityEvent, check_change, resolve, side_at, timeline
from processors.coexist.errors import AuthorityConflict, InvalidChange
from processors.coexist.model import Action

NOW = 1_800_000_000
DAY = 86_400


def ev(seq: int, action: Action, at: int, recorded: int | None = None) -> AuthorityEvent:
    return AuthorityEvent(
        seq=seq,
        cohort="c1",
        billing_account=None,
        action=action,
        effective_at=at,
        actor="t",
        recorded_at=recorded if recorded is not None else min(at, NOW),
    )


@pytest.mark.parametrize(
    ("events", "side", "phase", "since", "planned", "cutover_at"),
    [
        ([], "source", "unplanned", None, None, None),
        ([ev(1, "plan", NOW + DAY, NOW - 10)], "source", "planned", None, NOW + DAY, NOW + DAY),
        # a plan whose time has come is a cut-over
        (
            [ev(1, "plan", NOW - DAY, NOW - 2 * DAY)],
            "target",
            "cut_over",
            NOW - DAY,
            None,
            NOW - DAY,
        ),
        ([ev(1, "cutover", NOW - 5)], "target", "cut_over", NOW - 5, None, NOW - 5),
        (
            [ev(1, "cutover", NOW - 50), ev(2, "rollback", NOW - 5)],
            "source",
            "rolled_back",
            NOW - 5,
            None,
            NOW - 5,
        ),
        # a rollback before the planned time cancels the plan
        (
            [ev(1, "plan", NOW + DAY, NOW - 10), ev(2, "rollback", NOW - 1)],
            "source",
            "rolled_back",
            None,
            None,
            None,
        ),
        # cut over ahead of the plan: the plan's segment is dropped
        (
            [ev(1, "plan", NOW + DAY, NOW - 10), ev(2, "cutover", NOW - 1)],
            "target",
            "cut_over",
            NOW - 1,
            None,
            NOW - 1,
        ),
        # rolled back, then planned again
        (
            [
                ev(1, "cutover", NOW - 50),
                ev(2, "rollback", NOW - 40),
                ev(3, "plan", NOW + DAY, NOW - 30),
            ],
            "source",
            "planned",
            NOW - 40,
            NOW + DAY,
            NOW - 40,
        ),
    ],
)
def test_resolve(
    events: list[AuthorityEvent],
    side: str,
    phase: str,
    since: int | None,
    planned: int | None,
    cutover_at: int | None,
) -> None:
    a = resolve(events, NOW)
    assert (a.side, a.phase, a.since, a.planned_at, a.cutover_at) == (
        side,
        phase,
        since,
        planned,
        cutover_at,
    )


def test_timeline_answers_for_any_moment() -> None:
    segs = timeline(
        [ev(1, "cutover", NOW - 100), ev(2, "rollback", NOW - 50), ev(3, "plan", NOW + 10, NOW - 1)]
    )
    assert [
        side_at(segs, t) for t in (NOW - 101, NOW - 100, NOW - 51, NOW - 50, NOW, NOW + 10)
    ] == [
        "source",
        "target",
        "target",
        "source",
        "source",
        "target",
    ]


@pytest.mark.parametrize(
    ("events", "action", "at", "error"),
    [
        ([], "plan", NOW - 1, InvalidChange),  # a plan in the past
        ([], "plan", NOW, InvalidChange),
        ([], "cutover", NOW + 1, InvalidChange),  # a cut-over in the future is a plan
        ([], "rollback", NOW, AuthorityConflict),  # nothing to roll back
        ([ev(1, "cutover", NOW - 5)], "cutover", NOW, AuthorityConflict),  # twice
        ([ev(1, "cutover", NOW - 5)], "plan", NOW + DAY, AuthorityConflict),
        (
            [ev(1, "cutover", NOW - 5), ev(2, "rollback", NOW - 2)],
            "cutover",
            NOW - 3,
            InvalidChange,
        ),  # rewrites history
    ],
)
def test_refused_changes(
    events: list[AuthorityEvent], action: Action, at: int, error: type[Exception]
) -> None:
    with pytest.raises(error):
        check_change(events, action, at, NOW)


@pytest.mark.parametrize(
    ("events", "action", "at"),
    [
        ([], "plan", NOW + DAY),
        ([], "cutover", NOW),
        ([], "cutover", NOW - DAY),  # record a cut-over that already happened
        ([ev(1, "plan", NOW + DAY, NOW - 10)], "plan", NOW + 2 * DAY),  # re-plan
        ([ev(1, "plan", NOW + DAY, NOW - 10)], "rollback", NOW),  # cancel a plan
        ([ev(1, "plan", NOW + DAY, NOW - 10)], "cutover", NOW),  # early
        ([ev(1, "cutover", NOW - 5)], "rollback", NOW),
    ],
)
def test_accepted_changes(events: list[AuthorityEvent], action: Action, at: int) -> None:
    check_change(events, action, at, NOW)
