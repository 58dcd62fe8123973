"""Metrics observer: the sampled runtime numbers as ``metrics`` events, written when they move.

The recorder's sampler takes the runtime skill's snapshot every 30 s into the metrics store; it
also hands each snapshot here, with a few numbers read at the same moment: the process's child
processes (`count_children`: one small read per thread on Linux, so a fork or subprocess leak
shows as growth) and the host's memory and swap in use and load per CPU (one read of
``/proc/meminfo`` and ``/proc/loadavg``). The first sample of a recording is written as the
baseline (``baseline=True``); after that a sample becomes an event only when a tracked number
moved a step away from the last event written (compared with that event, not with the previous
sample, so a value wobbling inside a step writes nothing), or `HEARTBEAT_S` after the last
event. A steady process so writes one event per ten minutes, a leaking one an event per 10% of
growth: the cap holds hours, and the skills' rules read "since lensbook loaded" from the
baseline and the latest event, each citable by its id.

Counters that only rise (collections, uncollectable objects) ride along in every event: the
difference between two events is what happened between them.
"""

from __future__ import annotations

import contextlib
import gc
import os
import sys
import time
from typing import Any

from lensbook.recorder.event import HistoryEvent, make_event
from lensbook.recorder.ring import HistoryRing
from lensbook.skills.process import count_children

__all__ = ["HEARTBEAT_S", "STEPS", "SampleObserver", "host_pressure"]

#: an event at least this often (seconds) even when nothing moved
HEARTBEAT_S = 600.0
#: key -> (absolute step, relative step): a move of max(absolute, relative * last) is an event
STEPS: dict[str, tuple[float, float]] = {
    "rss_mb": (16.0, 0.10),
    "allocated_blocks": (50_000.0, 0.10),
    "open_fds": (16.0, 0.10),
    "python_threads": (8.0, 0.10),
    "threads": (8.0, 0.10),
    "children": (4.0, 0.10),
    "host_memory_percent": (5.0, 0.0),
    "host_swap_percent": (5.0, 0.0),
    "host_load_per_cpu": (0.5, 0.0),
}
#: the snapshot's numbers kept in an event
_KEPT = (
    "rss_mb",
    "threads",
    "python_threads",
    "open_fds",
    "gc_collections",
    "gc_uncollectable",
    "cpu_percent",
)


def host_pressure() -> dict[str, float]:
    """Host memory and swap in use (%) and the 1-minute load per CPU; empty where unknown.

    Cost: ~50 µs (psutil reads /proc/meminfo and /proc/swaps; os.getloadavg)."""
    out: dict[str, float] = {}
    try:
        import psutil

        out["host_memory_percent"] = float(psutil.virtual_memory().percent)
        out["host_swap_percent"] = float(psutil.swap_memory().percent)
    except Exception:  # a container without /proc/meminfo: the host part stays unknown
        pass
    with contextlib.suppress(AttributeError, OSError):  # no load average on Windows
        out["host_load_per_cpu"] = round(os.getloadavg()[0] / (os.cpu_count() or 1), 2)
    return out


class SampleObserver:
    """Turns sampled snapshots into ``metrics`` events when they move (see the module)."""

    def __init__(self, ring: HistoryRing) -> None:
        self.ring = ring
        self._last: dict[str, Any] | None = None
        self._last_at = 0.0

    def observe(self, skill: str, data: dict[str, Any]) -> HistoryEvent | None:
        """A sampled snapshot of `skill` (only the runtime skill's are read); returns the event
        written, if any."""
        if skill != "runtime":
            return None
        now = time.time()
        detail: dict[str, Any] = {
            k: data[k] for k in _KEPT if isinstance(data.get(k), (int, float))
        }
        detail["allocated_blocks"] = sys.getallocatedblocks()
        children = count_children()
        if children >= 0:
            detail["children"] = children
        stats = gc.get_stats()
        if len(stats) > 2:
            detail["gc_gen2_collections"] = stats[2].get("collections", 0)
        detail.update(host_pressure())
        last = self._last
        moved = [] if last is None else _moved(last, detail)
        if last is not None and not moved and now - self._last_at < HEARTBEAT_S:
            return None
        detail["baseline"] = last is None
        detail["moved"] = moved
        event = make_event("metrics", "sampler", detail, at=now)
        self.ring.add(event)
        self._last, self._last_at = detail, now
        return event

    def clear(self) -> None:
        """Forget the last event: the next sample is a new baseline."""
        self._last = None
        self._last_at = 0.0


def _moved(last: dict[str, Any], now: dict[str, Any]) -> list[str]:
    moved = []
    for key, (absolute, relative) in STEPS.items():
        a, b = last.get(key), now.get(key)
        if (
            isinstance(a, (int, float))
            and isinstance(b, (int, float))
            and abs(b - a) >= max(absolute, relative * abs(a))
        ):
            moved.append(key)
    return moved
