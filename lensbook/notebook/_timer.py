"""Deferred calls for the widgets: one thread of their own that lives only while calls are due.

A throttle's trailing flush and a card's elapsed-time tick must run later without holding up
the thread that asked for them (the lens loop delivering events, a probe's thread, the kernel).
They run on a timer thread rather than on an event loop: the lens loop is lensbook's own
machinery, and the kernel's loop would run them only once the busy cell has ended (a blocking
`%lens run` would show no ticks). Every view guards its model and its flush with its own lock,
so the thread they run on does not matter to them.

The thread starts with the first call, sleeps until the earliest deadline (a new earlier call
wakes it), runs what is due in deadline order and ends when nothing is left. So an idle
process has no timer thread, and nothing needs stopping at unload or exit. A call that raises
is logged and does not stop the ones after it.
"""

from __future__ import annotations

import heapq
import itertools
import logging
import threading
import time
from collections.abc import Callable

__all__ = ["call_later"]

_log = logging.getLogger("lensbook.notebook")

THREAD_NAME = "lensbook-widget-timer"

_due_lock = threading.Condition()
#: (deadline on the monotonic clock, order of the call, the call): a heap, earliest first
_due: list[tuple[float, int, Callable[[], None]]] = []
_order = itertools.count()
_thread: threading.Thread | None = None


def call_later(delay: float, fn: Callable[[], None]) -> None:
    """Call `fn` after `delay` seconds on the widgets' timer thread (started if need be)."""
    global _thread
    deadline = time.monotonic() + max(0.0, delay)
    with _due_lock:
        heapq.heappush(_due, (deadline, next(_order), fn))
        if _thread is None:
            thread = threading.Thread(target=_serve, name=THREAD_NAME, daemon=True)
            thread.start()  # its first step waits for this lock
            _thread = thread
        else:
            _due_lock.notify()  # the new call may be due before the one the thread sleeps on


def _serve() -> None:
    global _thread
    try:
        _run_due()
    finally:
        # however the loop ended (a call raised SystemExit or KeyboardInterrupt), the next
        # call starts a new thread instead of queueing behind this dead one
        with _due_lock:
            if _thread is threading.current_thread():
                _thread = None


def _run_due() -> None:
    global _thread
    while True:
        with _due_lock:
            while True:
                if not _due:
                    _thread = None  # under the lock: the next call starts a new thread
                    return
                wait = _due[0][0] - time.monotonic()
                if wait <= 0:
                    break
                _due_lock.wait(wait)
            _, _, fn = heapq.heappop(_due)
        try:
            fn()
        except Exception:
            _log.exception("deferred widget update %r failed", fn)
