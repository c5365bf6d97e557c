"""Which provider is authoritative for a billing account, and when: a pure fold of its history.

Authority starts with the **source** side. Every change says "from ``effective_at`` on, this
side": a *plan* schedules the target from the planned cut-over time, a *cutover* switches to the
target (now, or from a past moment, to record one that already happened), a *rollback* switches
back to the source. Folding the changes in the order they were recorded gives a timeline of
segments; a change drops every segment starting at or after its own time, so a rollback before
a planned time also cancels the plan.

An account's history is its cohort's changes and its own (per-account overrides), merged in
recorded order. :func:`check_change` refuses changes that would make the history meaningless
(:mod:`processors.coexist.errors`), so the fold never has to guess.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from typing import Literal

import msgspec

from processors.coexist.errors import AuthorityConflict, InvalidChange
from processors.coexist.model import Action, Side

__all__ = [
    "Authority",
    "AuthorityBook",
    "AuthorityEvent",
    "Phase",
    "Segment",
    "check_change",
    "resolve",
    "side_at",
    "timeline",
]

Phase = Literal["unplanned", "planned", "cut_over", "rolled_back"]
_MIN, _MAX = -(2**62), 2**62


class AuthorityEvent(msgspec.Struct, frozen=True, kw_only=True):
    """One recorded change (a row of ``coexist.authority_events``); ``seq`` is its record order."""

    seq: int
    cohort: str
    billing_account: str | None
    action: Action
    effective_at: int
    actor: str
    recorded_at: int
    note: str | None = None


class Segment(msgspec.Struct, frozen=True, kw_only=True):
    """``side`` is authoritative from ``start`` (None: since always) until the next segment."""

    start: int | None
    side: Side


class Authority(msgspec.Struct, frozen=True, kw_only=True):
    """An account's (or a cohort's) authority as of ``now``."""

    side: Side
    phase: Phase
    # When the current side became authoritative (None: the source, since always).
    since: int | None
    # A scheduled cut-over still ahead.
    planned_at: int | None
    # The cut-over instant the tolerances are about: the last switch already made, else the
    # planned one (None when there is neither).
    cutover_at: int | None
    segments: tuple[Segment, ...]


def _side(action: Action) -> Side:
    return "source" if action == "rollback" else "target"


def timeline(events: Iterable[AuthorityEvent]) -> tuple[Segment, ...]:
    segments = [Segment(start=None, side="source")]
    for e in sorted(events, key=lambda x: x.seq):
        side = _side(e.action)
        segments = [s for s in segments if s.start is None or s.start < e.effective_at]
        if segments[-1].side != side:
            segments.append(Segment(start=e.effective_at, side=side))
    return tuple(segments)


def side_at(segments: Sequence[Segment], t: int) -> Side:
    side: Side = "source"
    for s in segments:
        if s.start is None or s.start <= t:
            side = s.side
        else:
            break
    return side


def resolve(events: Sequence[AuthorityEvent], now: int) -> Authority:
    segments = timeline(events)
    current = [s for s in segments if s.start is None or s.start <= now]
    ahead = [s for s in segments if s.start is not None and s.start > now]
    side = current[-1].side
    since = current[-1].start
    planned = next((s.start for s in ahead if s.side == "target"), None)
    last = max(events, key=lambda e: e.seq) if events else None
    phase: Phase
    if last is None:
        phase = "unplanned"
    elif planned is not None and side == "source":
        phase = "planned"
    elif side == "target":
        phase = "cut_over"
    elif last.action == "rollback":
        phase = "rolled_back"
    else:
        phase = "unplanned"
    cutover_at = since if since is not None else planned
    return Authority(
        side=side,
        phase=phase,
        since=since,
        planned_at=planned,
        cutover_at=cutover_at,
        segments=segments,
    )


def check_change(
    events: Sequence[AuthorityEvent], action: Action, effective_at: int, now: int
) -> None:
    """Refuse a change that is wrong as asked (:class:`InvalidChange`) or that the current
    authority forbids (:class:`AuthorityConflict`). ``events``: the scope's history so far."""
    if action == "plan" and effective_at <= now:
        raise InvalidChange(
            "a planned cut-over must be in the future; to switch now (or record a switch that "
            "already happened) use cutover"
        )
    if action != "plan" and effective_at > now:
        raise InvalidChange(f"a {action} cannot take effect in the future; plan a cut-over instead")
    made = [e.effective_at for e in events if e.effective_at <= now]
    if made and effective_at < max(made):
        raise InvalidChange(
            f"a {action} effective before the last change already in effect would rewrite history"
        )
    state = resolve(events, now)
    if action in ("plan", "cutover") and state.side == "target":
        raise AuthorityConflict("already cut over: the target is authoritative; roll back first")
    if action == "rollback" and state.side == "source" and state.planned_at is None:
        raise AuthorityConflict(
            "nothing to roll back: the source is authoritative and no cut-over is planned"
        )


class AuthorityBook:
    """Every authority change of some cohorts, answering for a cohort or one of its accounts.

    Resolutions are cached per (cohort, account override): a verification run asks once per
    pair, and almost every pair shares its cohort's answer.
    """

    def __init__(self, events: Iterable[AuthorityEvent], now: int) -> None:
        self.now = now
        self._cohort: dict[str, list[AuthorityEvent]] = {}
        self._account: dict[tuple[str, str], list[AuthorityEvent]] = {}
        for e in events:
            if e.billing_account is None:
                self._cohort.setdefault(e.cohort, []).append(e)
            else:
                self._account.setdefault((e.cohort, e.billing_account), []).append(e)
        self._cache: dict[tuple[str, str | None], Authority] = {}

    def events(self, cohort: str, billing_account: str | None = None) -> list[AuthorityEvent]:
        """The history that applies: the cohort's, merged with the account's own, in order."""
        own = self._account.get((cohort, billing_account), []) if billing_account else []
        return sorted([*self._cohort.get(cohort, []), *own], key=lambda e: e.seq)

    def cohorts(self) -> set[str]:
        """Cohorts with changes of their own (the others: the source, since always)."""
        return set(self._cohort) | {c for c, _ in self._account}

    def segment_rows(self) -> list[tuple[str, str, str, int, int]]:
        """Every timeline as (cohort, billing account or "" for the cohort's, side, from, to)
        rows with finite bounds, for SQL that asks "who was authoritative at t" per row."""
        out: list[tuple[str, str, str, int, int]] = []
        keys = [(c, None) for c in self.cohorts()] + [(c, a) for c, a in self.overridden()]
        for cohort, account in sorted(keys, key=lambda k: (k[0], k[1] or "")):
            segs = timeline(self.events(cohort, account))
            for i, seg in enumerate(segs):
                start = _MIN if seg.start is None else seg.start
                end = segs[i + 1].start if i + 1 < len(segs) else _MAX
                out.append((cohort, account or "", seg.side, start, end or _MAX))
        return out

    def overridden(self) -> set[tuple[str, str]]:
        """(cohort, billing account) pairs with changes of their own."""
        return set(self._account)

    def resolve(self, cohort: str, billing_account: str | None = None) -> Authority:
        key = (
            cohort,
            billing_account if (cohort, billing_account or "") in self._account else None,
        )
        found = self._cache.get(key)
        if found is None:
            found = self._cache[key] = resolve(self.events(*key), self.now)
        return found
