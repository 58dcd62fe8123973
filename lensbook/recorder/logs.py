"""Log observer: a handler on the root logger counting every record by (logger, level), keeping
the last records at WARNING and above, and passing records with a traceback to the exceptions
observer as ``logged_exception``.

It is a `lensbook.skills._observers` handler, so it never changes what is printed (when it is
the only handler, records still reach ``logging.lastResort``). The hot path is one increment in
a dict of dicts (logger name, then level number: no tuple to build and hash, no method call, no
formatting); `handle` skips the handler lock and the filters (the counters tolerate a lost
increment under a race far better than every record of the process would tolerate a lock).
Every flush turns the counters into one ``log_rate`` event per (logger, level) seen since the
last flush. Caps per window: 500 loggers (the rest as "<other loggers>"), 16 levels per logger
(a custom level past those counts as its standard one).

A logger with ``propagate = False`` keeps its records from the root handler. So the same
handler is also added to every such logger, at install and at each flush (every 10 s: a logger
made non-propagating since is seen from then on), and taken off one that propagates again (or
at `remove()`). A record then meets the handler exactly once: on the first non-propagating
logger of its chain, or on the root.
"""

from __future__ import annotations

import logging
import time
from typing import Any

from lensbook.recorder.event import HistoryEvent, make_event
from lensbook.recorder.exceptions import ExceptionObserver
from lensbook.recorder.frames import short, short_path
from lensbook.recorder.ring import HistoryRing, RateGate
from lensbook.skills._observers import ObserverHandler, forward_if_unhandled

__all__ = ["LogObserver"]

#: loggers counted apart per flush window (the rest as `_OTHER`), levels apart per logger
_MAX_LOGGERS = 500
_MAX_LEVELS = 16
_WARNING = logging.WARNING
_OTHER = "<other loggers>"


class _Handler(ObserverHandler):
    def __init__(self, owner: LogObserver) -> None:
        super().__init__()
        self.owner = owner
        #: records since the last flush, by logger name, then level number (swapped whole by
        #: the owner's flush; kept here so the hot path reads it in one attribute lookup)
        self.counts: dict[str, dict[int, int]] = {}

    def handle(self, record: logging.LogRecord) -> bool:
        # every record of the process comes through here: no filters, no lock, no context
        # manager, no method call, no formatting. Two plain dict lookups (a str key, whose hash
        # the string keeps, then an int): a (name, level) tuple key would be built and hashed
        # twice per record; a new logger or level takes the `except` branch
        levelno = record.levelno
        try:
            self.counts[record.name][levelno] += 1
        except KeyError:
            self._count_new(record.name, levelno)
        # (below WARNING only a record carrying a traceback: ``log.info(..., exc_info=True)``)
        if levelno >= _WARNING or record.exc_info:
            counts = self.counts
            per = counts.get(record.name) or counts.get(_OTHER) or {}
            try:  # noqa: SIM105 (a try costs nothing here, a context manager a call)
                self.owner.observe(record, per.get(levelno, 1))
            except Exception:  # an observer must never break the application's logging
                pass
            # (`logging.lastResort` prints from WARNING on; a lowered level is not followed)
            last = logging.lastResort
            if last is not None and levelno >= last.level:
                forward_if_unhandled(self, record)
        return True

    def _count_new(self, name: str, levelno: int) -> None:
        """Count the first record of a logger or a level in this window, within the caps: past
        `_MAX_LOGGERS` loggers a new one counts as `_OTHER`; past `_MAX_LEVELS` levels of one
        logger a custom level counts as its standard one (35 as 30: WARNING)."""
        counts = self.counts
        per = counts.get(name)
        if per is None:
            if len(counts) >= _MAX_LOGGERS:
                name = _OTHER
            per = counts.setdefault(name, {})
        if levelno not in per and len(per) >= _MAX_LEVELS:
            levelno = min(max(levelno // 10 * 10, 0), logging.CRITICAL)
        per[levelno] = per.get(levelno, 0) + 1

    def emit(self, record: logging.LogRecord) -> None:
        self.handle(record)


class LogObserver:
    """Counts records by (logger, level) and records warnings, errors and logged tracebacks."""

    def __init__(self, ring: HistoryRing, exceptions: ExceptionObserver) -> None:
        self.ring = ring
        self.exceptions = exceptions
        self.gate = RateGate(burst=5, window_s=60.0)
        self.handler = _Handler(self)
        self._window_start = time.time()
        self._installed = False
        #: the non-propagating loggers the handler was added to
        self._attached: list[logging.Logger] = []

    def observe(self, record: logging.LogRecord, count: int) -> None:
        """A record at WARNING or above: a logged exception, or maybe a ``log`` event."""
        exc = record.exc_info[1] if record.exc_info else None
        if isinstance(exc, BaseException):
            self.exceptions.record(
                exc,
                "logged",
                uncaught=False,
                source=record.name,
                extra={
                    "logger": record.name,
                    "level": record.levelname,
                    "log": self._message(record),
                },
            )
            return
        if record.levelno < _WARNING:
            return  # an exc_info without an exception, below the level kept as events
        template = record.msg if isinstance(record.msg, str) else type(record.msg).__name__
        now = record.created
        if not self.gate.allow((record.name, record.levelno, template), now):
            return
        detail: dict[str, Any] = {
            "level": record.levelname,
            "message": self._message(record),
            "where": f"{short_path(record.pathname)}:{record.lineno}",
            "function": record.funcName,
            "thread": record.threadName,
            "count": count,
        }
        self.ring.add(make_event("log", record.name, detail, at=now))

    @staticmethod
    def _message(record: logging.LogRecord) -> str:
        try:
            return short(record.getMessage())
        except Exception:  # a bad format string is the application's bug, not ours
            return short(str(record.msg))

    def flush(self, now: float) -> list[HistoryEvent]:
        self.follow_unpropagated()
        counts, self.handler.counts = self.handler.counts, {}
        span = max(now - self._window_start, 1.0)
        self._window_start = now
        return [
            make_event(
                "log_rate",
                name,
                {
                    "logger": name,
                    "level": logging.getLevelName(level),
                    "count": n,
                    "rate_per_s": round(n / span, 3),
                    "window_s": round(span, 2),
                },
                at=now,
            )
            for (name, level), n in sorted(
                (((name, level), n) for name, per in counts.items() for level, n in per.items()),
                key=lambda kv: -kv[1],
            )
        ]

    def install(self) -> None:
        if not self._installed:
            logging.root.addHandler(self.handler)
            self._installed = True
            self.follow_unpropagated()

    def follow_unpropagated(self) -> None:
        """Add the handler to loggers that stopped propagating, take it off those that
        propagate again (their records reach the root's)."""
        if not self._installed:
            return
        handler = self.handler
        for logger in [lg for lg in self._attached if lg.propagate]:
            logger.removeHandler(handler)
            self._attached.remove(logger)
        loggers = list(logging.root.manager.loggerDict.values())  # a copy: others may add
        for found in loggers:
            if (
                isinstance(found, logging.Logger)
                and not found.propagate
                and handler not in found.handlers
            ):
                found.addHandler(handler)
                self._attached.append(found)

    def remove(self) -> None:
        if self._installed:
            logging.root.removeHandler(self.handler)
            for logger in self._attached:
                logger.removeHandler(self.handler)
            self._attached = []
            self._installed = False

    def clear(self) -> None:
        self.handler.counts = {}
        self.gate.clear()
