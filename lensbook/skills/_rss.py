"""Whether the process's resident memory grows, judged against the process, and how much of a
rise Python's own allocators account for.

One judgement for every skill that looks at RSS (runtime, memory): a rise counts when it is a
share of the process's size, at a rate that would add a share of it in ten minutes, rising in
most steps and not levelled off. What a tracemalloc window still holds at its end, over the
same time, tells memory that Python allocated from memory it never saw: a C extension's,
ctypes' or a native library's, or freed memory the C allocator keeps (fragmentation). Reports
of that kind of fault say "RSS grows, tracemalloc shows nothing" (python/cpython#131997,
NousResearch/hermes-agent#19251, nesquena/hermes-webui#4633).

"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from lensbook.skills._trend import RISING_SHARE
from lensbook.skills.rules import Evidence, as_dict

__all__ = [
    "GROWTH_FLOOR_MB",
    "GROWTH_MIN_SHARE",
    "GROWTH_TEN_MIN_SHARE",
    "NATIVE_MAX_SHARE",
    "NATIVE_MIN_EXPECTED_SHARE",
    "NATIVE_RECHECK_S",
    "NATIVE_RECHECK_SHARE",
    "Growth",
    "PythonShare",
    "python_share",
    "rss_growth",
]

#: RSS growth that counts, judged against the process: over the window at least this share of
#: the starting RSS (and this absolute floor, against allocator noise), at a rate that would
#: add this share of RSS in ten minutes, rising in most steps (`RISING_SHARE`)
GROWTH_MIN_SHARE = 0.05
GROWTH_FLOOR_MB = 8.0
GROWTH_TEN_MIN_SHARE = 0.25

#: a rise is outside Python's allocators when the blocks a tracemalloc window traced held less
#: than this share of what RSS gained while it traced...
NATIVE_MAX_SHARE = 0.2
#: ...and RSS gained at least this share of itself while traced (less is noise of pages and
#: arenas, or a rise that happened between the bursts)
NATIVE_MIN_EXPECTED_SHARE = 0.01
#: a native rise is looked at again this long after: it must go on at this share of its rate
NATIVE_RECHECK_S = 2.0
NATIVE_RECHECK_SHARE = 0.3


@dataclass(frozen=True)
class Growth:
    """An RSS rise that counts: MB at its start and end, over `span_s`, at `mb_per_s`."""

    start_mb: float
    end_mb: float
    span_s: float
    mb_per_s: float
    samples: int


def rss_growth(trend: dict[str, Any], ev: Evidence) -> Growth | None:
    """The rise of RSS by the relative rule, from a series' `_trend.summary` (three samples
    over two seconds at least), else from the run's first and last snapshots; None when RSS
    does not grow, or rose and levelled off (a warm-up, not a leak)."""
    if int(trend.get("samples") or 0) >= 3 and float(trend.get("span_s") or 0) >= 2.0:
        start, end = float(trend["first"]), float(trend["last"])
        span, rising = float(trend["span_s"]), float(trend.get("rising_share") or 0)
        rate = float(trend.get("slope_per_s") or 0.0)
        samples = int(trend["samples"])
    elif len(ev.snapshots) >= 2:
        start, end = float(ev.first("rss_mb", 0.0) or 0.0), float(ev.latest("rss_mb", 0.0) or 0)
        span, rate, rising, samples = ev.elapsed(), ev.rate("rss_mb") or 0.0, 1.0, len(ev.snapshots)
    else:
        return None
    if trend.get("plateaued"):
        return None
    if (
        end - start < max(GROWTH_FLOOR_MB, GROWTH_MIN_SHARE * start)
        or rate * 600 < GROWTH_TEN_MIN_SHARE * end
        or rising < RISING_SHARE
    ):
        return None
    return Growth(start, end, span, rate, samples)


@dataclass(frozen=True)
class PythonShare:
    """What a tracemalloc window says of an RSS rise over the same time."""

    #: MB that RSS gained while the window traced (its bursts, or all of it)
    gained_mb: float
    #: MB that the traced blocks still held then (lensbook's own and imports' included: they
    #: are Python's too)
    held_mb: float
    #: seconds the window really traced
    traced_s: float
    #: whether RSS gained enough while traced to say whose it was
    conclusive: bool

    @property
    def share(self) -> float:
        """The share of what RSS gained that Python's traced blocks held."""
        return self.held_mb / self.gained_mb if self.gained_mb > 0 else 1.0

    @property
    def native(self) -> bool:
        """Whether the rise is memory Python's allocators did not make (or do not hold)."""
        return self.conclusive and self.share < NATIVE_MAX_SHARE

    def stated(self) -> str:
        """The comparison, as findings state it."""
        said = (
            f"while tracemalloc traced ({self.traced_s:.2f} s), RSS gained "
            f"{self.gained_mb:.1f} MB and the blocks Python allocated meanwhile held "
            f"{self.held_mb:.1f} MB"
        )
        if not self.conclusive:
            return said + ": too little gained to weigh"
        return f"{said} ({self.share:.0%} of it)"


def python_share(growth: Growth, diff: Any) -> PythonShare | None:
    """What a tracemalloc window's result (`memory_allocation_diff`) says of `growth`; None
    when it cannot say: no window, no burst traced yet, or a listing cut short.

    A bursting window compares like with like: what RSS gained during its bursts with what
    the bursts' blocks held at their ends. A Python leak of a few large blocks that fell
    between the bursts then shows no gain either, and proves nothing, where the RSS rise of
    the whole window would have passed for native. A window traced throughout compares its
    held growth with the RSS rise at `growth`'s rate over its length.
    """
    window = as_dict(diff)
    seconds = float(window.get("window_s") or 0.0)
    if seconds <= 0 or growth.mb_per_s <= 0 or window.get("bursts") == 0 or window.get("partial"):
        return None
    if window.get("bursts") is not None:
        if "rss_gained_in_bursts_kb" not in window:
            return None  # (a record from before bursts weighed RSS)
        gained = float(window["rss_gained_in_bursts_kb"]) / 1024
        held = float(window.get("held_in_bursts_kb") or 0.0) / 1024
        traced_s = float(window.get("traced_s") or 0.0)
    else:  # traced throughout
        held_kb = float(window.get("growth_kb") or 0.0) + sum(
            max(float(kb), 0.0) for kb in as_dict(window.get("excluded_kb")).values()
        )
        held, gained, traced_s = max(held_kb, 0.0) / 1024, growth.mb_per_s * seconds, seconds
    return PythonShare(
        gained_mb=gained,
        held_mb=held,
        traced_s=traced_s,
        conclusive=gained >= NATIVE_MIN_EXPECTED_SHARE * growth.end_mb,
    )
