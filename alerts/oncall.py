"""On-call's alert status changes, shared by the HTTP API and the web console.

Both go through :func:`change_status`, so the transitions, refusals (``IllegalTransition`` for
acknowledging anything but an open alert, or resolving a resolved one), the note's limit, the
history row naming the actor, the notification outbox and the refreshed gauges are the same
whichever door on-call came in by.
"""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Literal

import asyncpg

from alerts import lifecycle, notify
from alerts.errors import InvalidAlertQuery
from alerts.lifecycle import Alert
from ledgerhook.settings import Settings

__all__ = ["MAX_NOTE", "Action", "change_status", "check_note"]

Action = Literal["acknowledge", "resolve"]
MAX_NOTE = 2000


def check_note(note: str | None) -> str | None:
    """The note as recorded; longer than :data:`MAX_NOTE` is refused."""
    if note is not None and len(note) > MAX_NOTE:
        raise InvalidAlertQuery(f"note: at most {MAX_NOTE} characters")
    return note


async def change_status(
    pool: asyncpg.Pool,
    settings: Settings,
    alert_id: int,
    action: Action,
    *,
    actor: str,
    note: str | None,
) -> Alert:
    """Acknowledge or resolve ``alert_id`` as ``actor`` (a token name), then refresh the gauges."""
    change = lifecycle.acknowledge if action == "acknowledge" else lifecycle.resolve
    async with pool.acquire() as conn:
        alert = await change(
            conn,
            alert_id,
            actor=actor,
            now=datetime.now(UTC),
            note=check_note(note),
            channels=notify.channels(settings),
        )
        await lifecycle.refresh_gauges(conn)
    return alert
