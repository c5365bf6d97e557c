"""Small server-rendered SVG charts: sparkline geometry as plain numbers, no script.

:func:`sparkline` turns a series (None = no sample) into the ``points`` of SVG polylines, one per
run of samples, scaled into a ``width`` x ``height`` box with the maximum at the top. The
template draws them with presentation attributes only (no ``style``), so the strict CSP holds.
"""

from __future__ import annotations

from collections.abc import Sequence

import msgspec

__all__ = ["Sparkline", "sparkline"]


class Sparkline(msgspec.Struct, frozen=True, kw_only=True):
    width: int
    height: int
    # One "x,y x,y ..." string per unbroken run of samples.
    segments: list[str]
    maximum: float
    last: float | None
    samples: int


def sparkline(values: Sequence[float | None], width: int = 240, height: int = 48) -> Sparkline:
    present = [v for v in values if v is not None]
    top = max(present, default=0.0)
    scale = (height - 4) / top if top > 0 else 0.0
    step = width / max(len(values) - 1, 1)
    segments: list[str] = []
    run: list[str] = []
    for i, v in enumerate(values):
        if v is None:
            if run:
                segments.append(" ".join(run))
                run = []
            continue
        x = i * step
        y = height - 2 - v * scale
        run.append(f"{x:.1f},{y:.1f}")
    if run:
        segments.append(" ".join(run))
    # A single sample draws as a dot-sized line so it is visible.
    segments = [s if " " in s else f"{s} {s}" for s in segments]
    last = next((v for v in reversed(values) if v is not None), None)
    return Sparkline(
        width=width,
        height=height,
        segments=segments,
        maximum=top,
        last=last,
        samples=len(present),
    )
