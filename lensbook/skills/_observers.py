"""Root-logger observers: handlers that watch what the process logs and never change it.

The logs skill, the exceptions skill and the flight recorder each keep a handler on the root
logger. Adding a handler there would silence logging's "last resort" (the stderr output of a
process that configured no handler), so an observer hands a record to `logging.lastResort`
whenever only observers would have seen it, and the first observer on the chain does it, so a
record is never printed twice.
"""

from __future__ import annotations

import contextlib
import logging

__all__ = ["ObserverHandler", "forward_if_unhandled"]


class ObserverHandler(logging.Handler):
    """Base of lensbook's root-logger observers: they watch, and never change what is printed."""

    lensbook_observer = True

    def __init__(self) -> None:
        super().__init__(logging.NOTSET)

    def observe(self, record: logging.LogRecord) -> None:
        """Take note of one record (subclasses); must be quick and must not raise."""

    def emit(self, record: logging.LogRecord) -> None:
        # an observer must never break the application's logging
        with contextlib.suppress(Exception):
            self.observe(record)
        forward_if_unhandled(self, record)


def forward_if_unhandled(handler: ObserverHandler, record: logging.LogRecord) -> None:
    """Give the record to `logging.lastResort` when only observers would have handled it.

    Logging prints a record through its last resort only when no handler was found on the
    logger's chain; observers count as handlers, so they restore that. The first observer on
    the chain forwards, so two observers never print a record twice.
    """
    last = logging.lastResort
    if last is None or record.levelno < last.level:
        return
    found = logging.Logger.manager.loggerDict.get(record.name)
    logger: logging.Logger | None = found if isinstance(found, logging.Logger) else logging.root
    first: logging.Handler | None = None
    while logger is not None:
        for h in logger.handlers:
            if not getattr(h, "lensbook_observer", False):
                return
            first = first or h
        if not logger.propagate:
            break
        logger = logger.parent
    if first is handler:
        last.handle(record)
