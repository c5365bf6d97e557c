"""How the comparison names a difference: fields of a state row, and one readable line each."""

from __future__ import annotations

from typing import Any

import pytest

from processors.replay import Difference
from processors.replay._compare import _field_diff


def _row(data: dict[str, Any], **columns: Any) -> dict[str, Any]:
    return {"data": {"type": "subscription", **data}, "version": "v1", **columns}


@pytest.mark.parametrize(
    ("live", "rebuilt", "expected"),
    [
        # The snapshot's field and the column repeating it drifted together: said once.
        (_row({"mrr": 1}, mrr=1), _row({"mrr": 0}, mrr=0), {"mrr": [1, 0]}),
        # Only the column drifted from its snapshot: named by the column.
        (_row({"mrr": 0}, mrr=1), _row({"mrr": 0}, mrr=0), {"mrr": [1, 0]}),
        # Both drifted, differently: the column is told apart.
        (
            _row({"mrr": 2}, mrr=1),
            _row({"mrr": 0}, mrr=0),
            {"mrr": [2, 0], "mrr (column)": [1, 0]},
        ),
        # A field only one side has, and columns outside the snapshot.
        (
            _row({"status": "active", "trial_end": 5}, last_delivery_id=7),
            _row({"status": "active"}, last_delivery_id=9),
            {"trial_end": [5, None], "last_delivery_id": [7, 9]},
        ),
        # Record rows have no ``data``: plain columns.
        (
            {"outcome": "stale", "change": {}},
            {"outcome": "applied", "change": {}},
            {"outcome": ["stale", "applied"]},
        ),
        (_row({"mrr": 1}), _row({"mrr": 1}), {}),
    ],
)
def test_field_diff(
    live: dict[str, Any], rebuilt: dict[str, Any], expected: dict[str, list[Any]]
) -> None:
    assert _field_diff(live, rebuilt) == expected


def _difference(**kw: Any) -> Difference:
    base: dict[str, Any] = {
        "table": "subscriptions",
        "provider": "stripe",
        "account": "acct_1",
        "id": "sub_1",
        "subject": "subscription stripe/acct_1/sub_1",
    }
    return Difference(**{**base, **kw})


@pytest.mark.parametrize(
    ("difference", "lines"),
    [
        (
            _difference(kind="differs", fields={"mrr": [1, 0], "status": ["active", None]}),
            [
                "subscription stripe/acct_1/sub_1: mrr: live 1, rebuilt 0",
                'subscription stripe/acct_1/sub_1: status: live "active", rebuilt null',
            ],
        ),
        (
            _difference(kind="missing_replay"),
            [
                "subscription stripe/acct_1/sub_1: only in live "
                "(the rebuild from the log has no such row)"
            ],
        ),
        (
            _difference(kind="missing_live"),
            ["subscription stripe/acct_1/sub_1: only in the rebuild (missing from live)"],
        ),
    ],
)
def test_one_line_per_field_or_missing_row(difference: Difference, lines: list[str]) -> None:
    assert difference.describe().splitlines() == lines
