"""GC pause observer: full (generation-2) collections that paused the process for longer than a
threshold, with how long, what they freed and what they could not.

``gc.callbacks`` calls each callback with ``("start", info)`` and ``("stop", info)`` around every
collection, in the thread that triggered it and with the GIL held: every Python thread waits
between the two, so the time between them is a pause of the whole process. The callback reads
``time.perf_counter()`` at a generation-2 start and at its stop; a pause over `threshold_s`
becomes a ``gc_pause`` event (duration_ms, collected, uncollectable, generation: numbers only,
nothing of the process's data, so there is nothing to redact).

A collection can start inside any allocation, also one made while the history ring's lock is
held in that same thread, so the callback takes no lock: it appends to a bounded deque (an
atomic append; the oldest pause is dropped past `MAX_PENDING`) and the periodic flush moves
those into the ring, whose cap for the kind bounds what is kept. A young collection (generation
0 or 1, the frequent kind) costs the callback one call and one comparison.

`install()` appends the callback to ``gc.callbacks``; `remove()` takes out that one entry (by
identity), leaving the list exactly as it was before, whatever others added meanwhile.
"""

from __future__ import annotations

import gc
import time
from collections import deque
from typing import Any

from lensbook.recorder.event import HistoryEvent, make_event

__all__ = ["DEFAULT_THRESHOLD_S", "MAX_PENDING", "GcPauseObserver"]

#: a full collection pausing the process longer than this (seconds) is recorded
DEFAULT_THRESHOLD_S = 0.05
#: pauses seen and not flushed yet that are kept (the newest)
MAX_PENDING = 100


class GcPauseObserver:
    """A ``gc.callbacks`` entry recording long full collections."""

    def __init__(self, threshold_s: float = DEFAULT_THRESHOLD_S) -> None:
        self.threshold_s = threshold_s
        #: (epoch seconds at the end, duration s, collected, uncollectable), oldest first
        self._pending: deque[tuple[float, float, int, int]] = deque(maxlen=MAX_PENDING)
        self._began = 0.0
        self._installed = False
        # one bound method, kept: the entry put in ``gc.callbacks`` and found there by identity
        self._hook = self._callback

    def _callback(self, phase: str, info: dict[str, Any]) -> None:
        if info["generation"] != 2:
            return
        if phase == "start":
            self._began = time.perf_counter()
            return
        took = time.perf_counter() - self._began
        if self._began and took > self.threshold_s:
            self._pending.append(
                (time.time(), took, int(info["collected"]), int(info["uncollectable"]))
            )
        self._began = 0.0

    def install(self) -> None:
        if not self._installed:
            gc.callbacks.append(self._hook)
            self._installed = True

    def remove(self) -> None:
        if self._installed:
            # by identity, not `list.remove` (equality): only the entry this observer put there
            for i, found in enumerate(gc.callbacks):
                if found is self._hook:
                    del gc.callbacks[i]
                    break
            self._installed = False
            self._began = 0.0

    @property
    def installed(self) -> bool:
        return self._installed

    def flush(self, now: float) -> list[HistoryEvent]:
        """The pauses seen since the last flush, as ``gc_pause`` events at their own time."""
        events = []
        pending = self._pending
        while pending:
            try:
                at, took, collected, uncollectable = pending.popleft()
            except IndexError:  # emptied by another flush meanwhile
                break
            events.append(
                make_event(
                    "gc_pause",
                    "gc",
                    {
                        "duration_ms": round(took * 1000, 1),
                        "threshold_ms": round(self.threshold_s * 1000, 1),
                        "generation": 2,
                        "collected": collected,
                        "uncollectable": uncollectable,
                    },
                    at=at,
                )
            )
        return events

    def clear(self) -> None:
        self._pending.clear()
