"""The fold: deliveries in, rebuilt state and every row processing derives out. No I/O.

It decides each delivery exactly as :func:`processors.service.process_batch` does (first
delivery of an event settles it; normalise; :class:`processors.service.Batch` applies the pure
transitions and produces the history, subscription change and anomaly rows), one delivery at a
time, carrying the state forward. The rows are taken out as the fold goes (:meth:`Fold.take`), so
memory grows with the number of objects, not with the length of the log.
"""

from __future__ import annotations

import msgspec

from processors import repository as repo
from processors.errors import NormalisationError
from processors.model import StoredObject
from processors.normalize import normalize_delivery
from processors.service import Batch

__all__ = ["Fold", "Rows"]


class Rows(msgspec.Struct, frozen=True, kw_only=True):
    """What processing writes besides current state, for the deliveries folded since last taken."""

    outcomes: list[repo.Outcome]
    history: list[repo.HistoryRow]
    changes: list[repo.ChangeRow]
    anomalies: list[repo.AnomalyRow]


class Fold:
    def __init__(self) -> None:
        self._batch = Batch({})
        self._events: set[tuple[str, str, str]] = set()
        self._outcomes: list[repo.Outcome] = []
        self.deliveries = self.duplicates = self.ignored = self.failed = 0
        # Of ``deliveries``: those live settled its event with (the rest: backlog, dead letters).
        self.settled = 0

    def add(self, d: repo.Delivery, *, settled: bool) -> None:
        """Fold one delivery. ``settled``: live settled its event with it (see ``_order``).

        A settled delivery always gets an outcome, so that a live settlement the log does not
        support (a second settlement of one event, a payload that cannot be normalised) shows up
        as a difference. An unsettled one that cannot be normalised is left out, as live leaves
        it dead-lettered.
        """
        self.deliveries += 1
        self.settled += settled
        event_key = (d.provider, d.account, d.event_id)
        if event_key in self._events:
            self.duplicates += 1
            if settled:
                self._outcomes.append(repo.Outcome(delivery=d, outcome="duplicate"))
            return
        try:
            event = normalize_delivery(
                d.provider,
                d.body,
                account=d.account,
                origin=d.origin,
                event_id=d.event_id,
                event_type=d.event_type,
                event_created=d.event_created,
            )
        except NormalisationError as exc:
            self.failed += 1
            if settled:
                self._outcomes.append(
                    repo.Outcome(delivery=d, outcome="dead_letter", error=str(exc)[:2000])
                )
            return
        self._events.add(event_key)
        if event is None or not event.updates:
            self.ignored += 1
            self._outcomes.append(repo.Outcome(delivery=d, outcome="ignored"))
            return
        self._outcomes.append(self._batch.apply(d, event))

    def take(self) -> Rows:
        """The rows derived since the last call (and forget them)."""
        b = self._batch
        rows = Rows(
            outcomes=self._outcomes, history=b.history, changes=b.changes, anomalies=b.anomalies
        )
        self._outcomes, b.history, b.changes, b.anomalies = [], [], [], []
        b.changed.clear()  # the batch's "to save" set; the rebuild saves ``states`` at the end
        return rows

    @property
    def states(self) -> list[StoredObject]:
        return list(self._batch.states.values())
