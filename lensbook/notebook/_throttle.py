"""Throttling of widget updates: at most one flush per interval, the last change never lost.

Events arrive on the lens loop at any rate (a burst of thousands per second is possible); a
widget sends one comm message per changed trait, so each view flushes its model to its traits
through a `Throttle`. A change inside the interval is not dropped: a trailing flush is scheduled
at the end of the interval on the widgets' timer thread (`lensbook.notebook._timer`).
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable

from lensbook.notebook._timer import call_later

__all__ = ["Throttle"]


class Throttle:
    """Calls `flush` at most once per `interval` seconds; `now()` flushes at once (final states).

    `request()` is cheap when a flush is already pending (one flag check, no clock read), which
    is the common case under a burst.
    """

    def __init__(self, flush: Callable[[], None], interval: float = 0.1) -> None:
        self.interval = max(0.0, interval)
        self.flushes = 0
        self._flush = flush
        self._lock = threading.Lock()
        self._last = float("-inf")
        self._pending = False

    def request(self) -> None:
        """Ask for a flush: now if the interval has passed, else once at its end."""
        if self._pending:  # the common case under a burst: no lock, no clock
            return
        with self._lock:
            wait = self._claim()
        if wait is None:
            return
        if wait > 0:
            call_later(wait, self._trailing)
        else:
            self._run()

    def _claim(self) -> float | None:
        """Under the lock: None if a flush is pending already, else how long to wait for it."""
        if self._pending:  # another thread got here first
            return None
        now = time.monotonic()
        wait = self._last + self.interval - now
        if wait > 0:
            self._pending = True
        else:
            self._last = now
        return wait

    @property
    def pending(self) -> bool:
        """Whether a trailing flush is scheduled."""
        return self._pending

    def now(self) -> None:
        """Flush at once, whatever the interval (used for the final state of a run)."""
        with self._lock:
            self._last = time.monotonic()
        self._run()

    def _trailing(self) -> None:
        with self._lock:
            self._pending = False
            self._last = time.monotonic()
        self._run()

    def _run(self) -> None:
        self.flushes += 1
        self._flush()
