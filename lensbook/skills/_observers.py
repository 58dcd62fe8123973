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
import math
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


class _Wire:
    """What one installed wrapper counts into: this window's counts, by logger name then level
    number, or None once the wrapper is cut out (it then passes records through untouched)."""

    __slots__ = ("counts",)

    def __init__(self, counts: dict[str, dict[int, int]]) -> None:
        self.counts: dict[str, dict[int, int]] | None = counts


class _Tap:
    """The wrapper of ``Logger.callHandlers`` and what it feeds (one per process)."""

    def __init__(self) -> None:
        self._lock = threading.RLock()
        self.notable: tuple[Observer, ...] = ()
        self.every: tuple[Observer, ...] = ()
        #: the level from which a record goes to the observers (any level with an "every" one)
        self.floor: float = _WARNING
        self.wire: _Wire | None = None
        self.wrapper: Any = None
        self._prev: Any = None

    @property
    def counts(self) -> dict[str, dict[int, int]]:
        """This window's counts so far (empty with no wrapper installed)."""
        wire = self.wire
        return (wire.counts if wire is not None else None) or {}

    def add(self, observer: Observer, every: bool) -> None:
        with self._lock:
            if observer not in self.notable and observer not in self.every:
                if every:
                    self.every = (*self.every, observer)
                else:
                    self.notable = (*self.notable, observer)
            self.floor = -math.inf if self.every else _WARNING
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
            self.floor = -math.inf if self.every else _WARNING
            if not self.notable and not self.every and self.wrapper is not None:
                if logging.Logger.callHandlers is self.wrapper:
                    logging.Logger.callHandlers = self._prev  # type: ignore[method-assign]
                # (one wrapped since stays in its chain, passing through: its wire is cut)
                self._cut()
                self.wrapper = self._prev = None

    def take_counts(self) -> dict[str, dict[int, int]]:
        with self._lock:  # (not between a cut and a new wire: a cut one stays cut)
            wire = self.wire
            if wire is None or wire.counts is None:
                return {}
            counts, wire.counts = wire.counts, {}
            return counts

    def _cut(self) -> dict[str, dict[int, int]]:
        wire, self.wire = self.wire, None
        if wire is None:
            return {}
        counts, wire.counts = wire.counts, None
        return counts or {}

    def _install(self) -> None:
        prev = self._prev = logging.Logger.callHandlers
        self.wire = wire = _Wire(self._cut())  # a window's counts go on with the new wrapper
        self.wrapper = _tap_wrapper(self, wire, prev)
        logging.Logger.callHandlers = self.wrapper  # type: ignore[method-assign]

    def dispatch(self, record: logging.LogRecord) -> None:
        """Hand `record` to the observers that want it; one that raises loses only it."""
        notable: object
        try:
            notable = record.levelno >= _WARNING or record.exc_info
        except Exception:
            notable = False
        if notable:
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

    def count_new(self, wire: _Wire, record: logging.LogRecord) -> bool:
        """Count the first record of a logger or a level in this window, within the caps: past
        `MAX_LOGGERS` loggers a new one counts as `OTHER_LOGGERS`; past `MAX_LEVELS` levels of
        one logger a custom level counts as its standard one (35 as 30: WARNING). Returns
        whether the record goes to the observers; never raises."""
        try:
            counts = wire.counts
            if counts is None:
                return False
            name, levelno = record.name, record.levelno
            per = counts.get(name)
            if per is None:
                if len(counts) >= MAX_LOGGERS:
                    name = OTHER_LOGGERS
                per = counts.setdefault(name, {})
            if levelno not in per and len(per) >= MAX_LEVELS:
                levelno = min(max(levelno // 10 * 10, 0), logging.CRITICAL)
            per[levelno] = per.get(levelno, 0) + 1
            return bool(record.levelno >= self.floor or record.exc_info)
        except Exception:  # a record of a strange shape: the program's logging goes on
            return False


def _tap_wrapper(
    tap: _Tap, wire: _Wire, prev: Callable[[logging.Logger, logging.LogRecord], Any]
) -> Any:
    """The ``callHandlers`` that counts into `wire`, calls `prev` (what was there before), then
    feeds `tap`'s observers; once `wire` is cut, it only calls `prev`."""

    def call_handlers(logger: logging.Logger, record: logging.LogRecord) -> None:
        # every record the process logs comes through here: as few steps as can be (each
        # costs ~5-10 ns here; the whole tap a fraction of a µs against ~20 µs a record costs
        # its handlers), no lock, no call, no formatting for a record below WARNING when only
        # the recorder observes (the common case: its count is all it needs)
        wanted: object  # (a declaration: no step at run time)
        try:
            wire.counts[record.name][record.levelno] += 1  # type: ignore[index]
            wanted = record.levelno >= tap.floor or record.exc_info
        except KeyError:  # the first of its logger or level in this window
            wanted = tap.count_new(wire, record)
        except Exception:  # cut (counts None: an older wrapper left in someone's chain, which
            wanted = False  # passes through), or a record of a strange shape
        if not wanted:
            prev(logger, record)
            return
        try:
            prev(logger, record)
        finally:
            # after the program's handlers, as a root handler would see it: a handler's
            # filter that scrubs the record in place has run
            tap.dispatch(record)

    call_handlers.__wrapped__ = prev  # type: ignore[attr-defined]
    call_handlers.__doc__ = prev.__doc__
    return call_handlers


_TAP = _Tap()


def observe(observer: Observer, *, every: bool = False) -> None:
    """Hand `observer` the records logged from now on: those at WARNING and above or carrying a
    traceback, or with `every` all of them (idempotent). It runs in the logging thread, after
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
    return _TAP.take_counts()


def count_of(record: logging.LogRecord) -> int:
    """How many records of `record`'s logger and level the current window has counted."""
    counts = _TAP.counts
    per = counts.get(record.name) or counts.get(OTHER_LOGGERS) or {}
    return per.get(record.levelno, 1)
