"""Log observer: counts every record by (logger, level), keeps the last records at WARNING and
above, and passes records with a traceback to the exceptions observer as ``logged_exception``.

It reads what `lensbook.skills._observers` taps from ``logging.Logger.callHandlers``: nothing
is added to any logger, so the program's logging (``basicConfig``, ``hasHandlers()``, the last
resort, records of loggers that do not propagate) is exactly what it was. The counting is the
tap's (one increment per record); this observer gets only the records at WARNING and above or
with a traceback, and every flush turns the tap's counts into one ``log_rate`` event per
(logger, level) seen since the last flush.
"""

from __future__ import annotations

import logging
import time
from typing import Any

from lensbook.recorder.event import HistoryEvent, make_event
from lensbook.recorder.exceptions import ExceptionObserver
from lensbook.recorder.frames import MESSAGE_CHARS, short_path
from lensbook.recorder.ring import HistoryRing, RateGate
from lensbook.skills import _observers
from lensbook.skills.redact import clip

__all__ = ["LogObserver"]

_WARNING = logging.WARNING


class LogObserver:
    """Counts records by (logger, level) and records warnings, errors and logged tracebacks."""

    def __init__(self, ring: HistoryRing, exceptions: ExceptionObserver) -> None:
        self.ring = ring
        self.exceptions = exceptions
        self.gate = RateGate(burst=5, window_s=60.0)
        self._window_start = time.time()
        self._installed = False

    def notable(self, record: logging.LogRecord) -> None:
        """A record at WARNING or above or with a traceback (from the tap, in the logging
        thread): a logged exception, or maybe a ``log`` event."""
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
            "count": _observers.count_of(record),
        }
        self.ring.add(make_event("log", record.name, detail, at=now))

    @staticmethod
    def _message(record: logging.LogRecord) -> str:
        try:
            return clip(record.getMessage(), MESSAGE_CHARS)
        except Exception:  # a bad format string is the application's bug, not ours
            return clip(str(record.msg), MESSAGE_CHARS)

    def flush(self, now: float) -> list[HistoryEvent]:
        counts = _observers.take_counts()
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
                # (copied first: a logging thread that read the window before the swap may
                # still add to it)
                [
                    ((name, level), n)
                    for name, per in list(counts.items())
                    for level, n in list(per.items())
                ],
                key=lambda kv: -kv[1],
            )
        ]

    def install(self) -> None:
        if not self._installed:
            _observers.take_counts()  # (counted before: not this recorder's window)
            self._window_start = time.time()
            _observers.observe(self.notable)
            self._installed = True

    def remove(self) -> None:
        if self._installed:
            _observers.stop_observing(self.notable)
            self._installed = False

    def clear(self) -> None:
        _observers.take_counts()
        self.gate.clear()
