"""Log-record observers: every record the process logs, seen without being one of its handlers.

A handler of lensbook's on the root logger would be seen by the program it watches:
`logging.basicConfig()` does nothing once the root logger has a handler, so the user's own
configuration after ``lensbook.start()`` or ``%load_ext lensbook`` would silently not apply
(their INFO records vanish, their format is lost; libraries that add a root handler are
reported for exactly this: pyroute2#601, gremlinclient#5, digital_rf#112); ``hasHandlers()``
turns true, so code that configures logging only when nothing is configured skips it; logging's
last resort (stderr for a process with no handler) stops; ``dictConfig`` removes the handler.

So lensbook taps ``logging.Logger.callHandlers`` instead: the one method every record goes
through once, after its logger's level and filters let it pass, whether it propagates or not.
The tap counts the record by logger and level (one increment in a dict of dicts: no tuple to
build, no formatting), calls what was there before (the program's handlers), then hands records
at WARNING and above or with a traceback to the "notable" observers (the flight recorder) and
every record to the "every" observers (the logs skill's ring, asyncio's slow-callback watch):
after the handlers, as a root handler saw them, so a handler's filter that scrubs a record in
place has run. It is put in by the first
observer and taken out by the last (only if still ours: one someone wrapped since stays in the
chain as a pass-through), leaving the class exactly as it was; if someone restores what they
saw before it, `observing` says so and the next `observe` puts a new one on top. Nothing is
added to any logger: handlers, levels, propagation and what is printed stay the program's.

Counts are kept per window (`take_counts` swaps them out) within caps: 500 loggers (the rest as
"<other loggers>"), 16 levels per logger (a custom level past those counts as its standard
one). An observer that raises loses that record, never the program's logging. A Logger
subclass that overrides ``callHandlers`` without calling it is not seen.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable
from typing import Any

__all__ = [
    "OTHER_LOGGERS",
    "count_of",
    "observe",
    "observing",
    "stop_observing",
    "take_counts",
]

#: loggers counted apart per window (the rest as `OTHER_LOGGERS`), levels apart per logger
MAX_LOGGERS = 500
MAX_LEVELS = 16
OTHER_LOGGERS = "<other loggers>"
_WARNING = logging.WARNING

Observer = Callable[[logging.LogRecord], Any]


class _Tap:
    """The wrapper of ``Logger.callHandlers`` and what it feeds (one per process)."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        #: records since the last `take_counts`, by logger name, then level number
        self.counts: dict[str, dict[int, int]] = {}
        self.notable: tuple[Observer, ...] = ()
        self.every: tuple[Observer, ...] = ()
        self.wrapper: Any = None
        self._prev: Any = None

    def add(self, observer: Observer, every: bool) -> None:
        with self._lock:
            if observer not in self.notable and observer not in self.every:
                if every:
                    self.every = (*self.every, observer)
                else:
                    self.notable = (*self.notable, observer)
            if self.wrapper is None or not self.in_chain():
                # (not in the chain: someone who wrapped after us put back what they saw
                # before, our older wrapper: a new one goes on top, the old passes through)
                self._install()

    def in_chain(self) -> bool:
        """Whether the wrapper is reached from ``Logger.callHandlers`` (through the
        ``__wrapped__`` of wrappers put over it)."""
        found: Any = logging.Logger.callHandlers
        for _ in range(32):
            if found is None or found is self.wrapper:
                return found is not None
            found = getattr(found, "__wrapped__", None)
        return False

    def discard(self, observer: Observer) -> None:
        with self._lock:
            self.notable = tuple(o for o in self.notable if o != observer)
            self.every = tuple(o for o in self.every if o != observer)
            if not self.notable and not self.every and self.wrapper is not None:
                if logging.Logger.callHandlers is self.wrapper:
                    logging.Logger.callHandlers = self._prev  # type: ignore[method-assign]
                # (one wrapped since stays in its chain, passing through: see the wrapper)
                self.wrapper = self._prev = None
                self.counts = {}

    def _install(self) -> None:
        prev = self._prev = logging.Logger.callHandlers
        self.wrapper = _tap_wrapper(self, prev)
        logging.Logger.callHandlers = self.wrapper  # type: ignore[method-assign]

    def dispatch(self, record: logging.LogRecord, levelno: int) -> None:
        """Hand `record` to the observers that want it; one that raises loses only it."""
        if levelno >= _WARNING or record.exc_info:
            for seen in self.notable:
                try:  # noqa: SIM105 (a try costs nothing; a context manager a call)
                    seen(record)
                except Exception:
                    pass
        for seen in self.every:
            try:  # noqa: SIM105
                seen(record)
            except Exception:
                pass

    def count_new(self, name: str, levelno: int) -> None:
        """Count the first record of a logger or a level in this window, within the caps: past
        `MAX_LOGGERS` loggers a new one counts as `OTHER_LOGGERS`; past `MAX_LEVELS` levels of
        one logger a custom level counts as its standard one (35 as 30: WARNING)."""
        counts = self.counts
        per = counts.get(name)
        if per is None:
            if len(counts) >= MAX_LOGGERS:
                name = OTHER_LOGGERS
            per = counts.setdefault(name, {})
        if levelno not in per and len(per) >= MAX_LEVELS:
            levelno = min(max(levelno // 10 * 10, 0), logging.CRITICAL)
        per[levelno] = per.get(levelno, 0) + 1


def _tap_wrapper(tap: _Tap, prev: Callable[[logging.Logger, logging.LogRecord], Any]) -> Any:
    """The ``callHandlers`` that counts for `tap`, calls `prev` (what was there before), then
    feeds `tap`'s observers."""

    def call_handlers(logger: logging.Logger, record: logging.LogRecord) -> None:
        # every record the process logs comes through here: no lock, no call, no formatting
        # for a record below WARNING when only the recorder observes (the common case: its
        # count is all it needs). Only the wrapper installed now observes (an older one left
        # in a chain, because someone wrapped it after us, passes through)
        if tap.wrapper is not call_handlers:
            prev(logger, record)
            return
        try:
            levelno = record.levelno
            try:
                tap.counts[record.name][levelno] += 1
            except KeyError:
                tap.count_new(record.name, levelno)
            wanted = bool(levelno >= _WARNING or record.exc_info or tap.every)
        except Exception:  # a record of a strange shape: the program's logging goes on
            wanted = False
        if not wanted:
            prev(logger, record)
            return
        try:
            prev(logger, record)
        finally:
            # after the program's handlers, as a root handler would see it: a handler's
            # filter that scrubs the record in place has run
            tap.dispatch(record, levelno)

    call_handlers.__wrapped__ = prev  # type: ignore[attr-defined]
    call_handlers.__doc__ = prev.__doc__
    return call_handlers


_TAP = _Tap()


def observe(observer: Observer, *, every: bool = False) -> None:
    """Hand `observer` the records logged from now on: those at WARNING and above or carrying a
    traceback, or with `every` all of them (idempotent). It runs in the logging thread, before
    the program's handlers: it must be quick and never block."""
    _TAP.add(observer, every)


def stop_observing(observer: Observer) -> None:
    """No more records for `observer`; the tap goes with the last observer."""
    _TAP.discard(observer)


def observing(observer: Observer) -> bool:
    """Whether `observer` gets records now (its tap still in ``Logger.callHandlers``' chain)."""
    return (
        _TAP.wrapper is not None
        and (observer in _TAP.notable or observer in _TAP.every)
        and _TAP.in_chain()
    )


def take_counts() -> dict[str, dict[int, int]]:
    """The records counted since the last call, by logger name then level number (a new
    window starts)."""
    counts, _TAP.counts = _TAP.counts, {}
    return counts


def count_of(record: logging.LogRecord) -> int:
    """How many records of `record`'s logger and level the current window has counted."""
    counts = _TAP.counts
    per = counts.get(record.name) or counts.get(OTHER_LOGGERS) or {}
    return per.get(record.levelno, 1)
