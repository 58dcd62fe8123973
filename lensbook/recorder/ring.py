"""The history's storage: one bounded ring per kind, and a gate that keeps floods out of them.

Each kind has its own ring (a `deque` with `maxlen`), so a flood of one kind (a million log
records) evicts only older events of that kind, never the thread death an hour earlier. Reading
merges the rings by time. Events older than `max_age_s` are dropped when the recorder flushes.
`CAPS` documents the per-kind caps; at these caps the history holds < 5 MB
(`benchmarks/bench_recorder.py` measures it).

`RateGate` decides which occurrences of a repeated thing (the same exception at the same line,
the same log message, threads of one kind) become events of their own: the first `burst` per key
in each `window_s`; the others are only counted, and the observers' periodic summaries
(``exception_rate``, ``log_rate``, ``thread_growth``) carry the counts and rates.
"""

from __future__ import annotations

import heapq
import threading
import time
from collections import deque
from collections.abc import Collection, Hashable, Iterable

from lensbook.recorder.event import HistoryEvent

__all__ = ["CAPS", "DEFAULT_CAP", "MAX_AGE_S", "HistoryRing", "RateGate"]

#: events kept per kind (the newest); kinds not listed keep `DEFAULT_CAP`
CAPS: dict[str, int] = {
    "exception": 300,
    "logged_exception": 300,
    "exception_rate": 300,
    "log": 300,
    "log_rate": 300,
    "thread_started": 200,
    "thread_ended": 200,
    "thread_died": 200,
    "thread_growth": 300,
    "loop_lag": 200,
    "metrics": 180,
    "gc_pause": 100,
    "trace": 30,
}
DEFAULT_CAP = 100
#: nothing older than this is kept (seconds)
MAX_AGE_S = 6 * 3600.0


class HistoryRing:
    """Per-kind rings of `HistoryEvent`, safe to append to from any thread."""

    def __init__(self, caps: dict[str, int] | None = None, max_age_s: float = MAX_AGE_S) -> None:
        self.caps = dict(CAPS if caps is None else caps)
        self.max_age_s = max_age_s
        self._lock = threading.RLock()
        self._rings: dict[str, deque[HistoryEvent]] = {}
        #: events dropped because their ring was full, by kind
        self.evicted: dict[str, int] = {}

    def add(self, event: HistoryEvent) -> None:
        with self._lock:
            ring = self._rings.get(event.kind)
            if ring is None:
                cap = self.caps.get(event.kind, DEFAULT_CAP)
                ring = self._rings[event.kind] = deque(maxlen=cap)
            if len(ring) == ring.maxlen:
                self.evicted[event.kind] = self.evicted.get(event.kind, 0) + 1
            ring.append(event)

    def extend(self, events: Iterable[HistoryEvent]) -> None:
        for event in events:
            self.add(event)

    def events(
        self,
        since: float | None = None,
        kinds: Collection[str] | None = None,
        limit: int | None = None,
    ) -> list[HistoryEvent]:
        """Chronological events at or after `since`, of `kinds`; the newest `limit` of them."""
        if limit is not None and limit <= 0:
            return []
        with self._lock:
            chosen = [
                list(ring) for kind, ring in self._rings.items() if kinds is None or kind in kinds
            ]
        # each ring is in time order (appended as seen), so a k-way merge keeps the order
        merged = list(heapq.merge(*chosen, key=lambda e: e.time))
        if since is not None:
            merged = [e for e in merged if e.time >= since]
        if limit is not None:
            merged = merged[-limit:]
        return merged

    def prune(self, now: float | None = None) -> int:
        """Drop events older than `max_age_s`; returns how many were dropped."""
        horizon = (time.time() if now is None else now) - self.max_age_s
        dropped = 0
        with self._lock:
            for ring in self._rings.values():
                while ring and ring[0].time < horizon:
                    ring.popleft()
                    dropped += 1
        return dropped

    def counts(self) -> dict[str, int]:
        with self._lock:
            return {kind: len(ring) for kind, ring in self._rings.items()}

    def clear(self) -> None:
        with self._lock:
            self._rings.clear()
            self.evicted.clear()


class RateGate:
    """Lets the first `burst` occurrences of each key through per `window_s` seconds.

    Keys are bounded (`max_keys`): when full, keys whose window has passed are dropped (at most
    once a second); past that, new keys share one overflow slot, so a hostile stream of distinct
    keys cannot grow memory. Not locked: a lost update under a race only lets one event more or
    fewer through.
    """

    _OVERFLOW = ("<other>",)

    def __init__(self, burst: int = 5, window_s: float = 60.0, max_keys: int = 500) -> None:
        self.burst = burst
        self.window_s = window_s
        self.max_keys = max_keys
        self._slots: dict[Hashable, list[float]] = {}  # key -> [window start, count]
        self._pruned = 0.0

    def allow(self, key: Hashable, now: float) -> bool:
        slot = self._slots.get(key)
        if slot is None:
            if len(self._slots) >= self.max_keys and now - self._pruned >= 1.0:
                self._pruned = now
                horizon = now - self.window_s
                for old in [k for k, s in self._slots.items() if s[0] <= horizon]:
                    del self._slots[old]
            if len(self._slots) >= self.max_keys:
                key = self._OVERFLOW
                slot = self._slots.get(key)
            if slot is None:
                slot = self._slots[key] = [now, 0.0]
        if now - slot[0] >= self.window_s:
            slot[0], slot[1] = now, 0.0
        slot[1] += 1
        return slot[1] <= self.burst

    def clear(self) -> None:
        self._slots.clear()
