"""Whether a sampled series still rises, or has levelled off: leak or warm-up.

A leak keeps rising at about the same rate; a heap warming up (caches filling, an allocator
growing its arenas, the first batches of a pipeline) rises fast and then flattens. Rules that
judge growth over the sampled history compare the slope of its later half with the slope of
the whole: a later slope well under the overall one is a plateau, not a leak.
"""

from __future__ import annotations

import itertools
from collections.abc import Sequence
from typing import Any

__all__ = [
    "PLATEAU_RATIO",
    "RISING_SHARE",
    "plateaued",
    "rising_share",
    "shape_known",
    "slope",
    "steady_rise",
    "summary",
]

#: the later half rising at less than this share of the whole series' rate is a plateau
PLATEAU_RATIO = 0.35
#: a steady rise goes up in at least this share of the steps that moved (a busy heap saw-tooths)
RISING_SHARE = 0.6


def slope(points: Sequence[Sequence[float]]) -> float | None:
    """Least-squares change per unit of time of (time, value) points (None if < 2 times)."""
    if len(points) < 2:
        return None
    n = len(points)
    mt = sum(p[0] for p in points) / n
    mv = sum(p[1] for p in points) / n
    var = sum((p[0] - mt) ** 2 for p in points)
    if var == 0:
        return None
    return sum((p[0] - mt) * (p[1] - mv) for p in points) / var


def plateaued(points: Sequence[Sequence[float]], min_points: int = 6) -> bool:
    """Whether a rising (time, value) series has levelled off in its later half. With too few
    points to tell, it has not (the caller's other evidence decides)."""
    pts = [p for p in points if isinstance(p, (list, tuple)) and len(p) >= 2]
    if len(pts) < min_points:
        return False
    whole = slope(pts)
    if whole is None or whole <= 0:
        return True  # not rising at all
    middle = pts[0][0] + (pts[-1][0] - pts[0][0]) / 2
    late = slope([p for p in pts if p[0] >= middle])
    return late is not None and late < PLATEAU_RATIO * whole


def shape_known(points: Sequence[Sequence[float]], per_half: int = 2) -> bool:
    """Whether a series has enough points in each half of its time span to tell a steady rise
    from a rise that levelled off (samples bunched at one end cannot)."""
    pts = [p for p in points if isinstance(p, (list, tuple)) and len(p) >= 2]
    if len(pts) < 2 * per_half:
        return False
    middle = pts[0][0] + (pts[-1][0] - pts[0][0]) / 2
    early = sum(1 for p in pts if p[0] < middle)
    return early >= per_half and len(pts) - early >= per_half


def rising_share(points: Sequence[Sequence[float]]) -> float:
    """The share of a series' moves that went up (0.0 when it never moved)."""
    pts = [p for p in points if isinstance(p, (list, tuple)) and len(p) >= 2]
    moving = [b[1] - a[1] for a, b in itertools.pairwise(pts) if b[1] != a[1]]
    return round(sum(d > 0 for d in moving) / len(moving), 2) if moving else 0.0


def steady_rise(points: Sequence[Sequence[float]]) -> bool:
    """Whether a series is known to rise and keep rising: enough points in both halves of its
    span, rising in most steps, and not levelled off. Growth seen once (a batch in flight when
    it was measured, a heap warming up) is not a steady rise."""
    pts = [p for p in points if isinstance(p, (list, tuple)) and len(p) >= 2]
    rate = slope(pts)
    return (
        rate is not None
        and rate > 0
        and shape_known(pts)
        and not plateaued(pts)
        and rising_share(pts) >= RISING_SHARE
    )


def summary(points: Sequence[Sequence[float]]) -> dict[str, Any]:
    """First, last, span, least-squares slope per second and how steadily a series rose."""
    if len(points) < 2:
        return {"samples": len(points), "last": points[-1][1] if points else None}
    return {
        "samples": len(points),
        "span_s": round(points[-1][0] - points[0][0], 1),
        "first": points[0][1],
        "last": points[-1][1],
        "min": min(p[1] for p in points),
        "slope_per_s": None if (rate := slope(points)) is None else round(rate, 4),
        "plateaued": plateaued(points),
        "shape_known": shape_known(points),
        # the share of changes that went up: a leak rises steadily, a busy heap saw-tooths
        "rising_share": rising_share(points),
    }
