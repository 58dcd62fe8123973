"""An error storm for tests: a logger logs `count` exceptions with their tracebacks, each
raised and caught as a program's failing call would be."""

from __future__ import annotations

import logging


def log_exceptions(
    log: logging.Logger,
    count: int,
    error: type[Exception] = RuntimeError,
    message: str = "order {i} rejected",
    logged: str = "checkout failed",
) -> None:
    for i in range(count):
        try:
            raise error(message.format(i=i))
        except error:
            log.exception(logged)
