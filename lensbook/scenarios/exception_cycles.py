"""Caught exceptions stored in a local: every call leaves a reference cycle for the collector.

Modelled on agronholm/typeguard#408 ("By storing previously raised exceptions inside a local,
this code created ref cycles that kept all locals in all calling stack frames alive ... fixes
some resource exhaustion issues") and python/cpython#75188 ("caught and stored exception
creates a reference cycle"). Here a record validator keeps each caught ValueError in an
``errors`` dict: exception -> traceback -> the validator's frame -> ``errors`` -> exception. The
frame also holds the record's 64 KB payload, so memory waits for the cycle collector and the
collector runs far more often than the allocation rate alone would need.
"""

from __future__ import annotations

import threading
from collections.abc import Callable
from typing import Any

from lensbook.scenarios import scenario
from lensbook.scenarios._harness import Workers

__all__ = ["induce", "validate_record"]


def check_fields(record: dict[str, Any]) -> None:
    if "sku" not in record:
        raise ValueError(f"record {record['id']} has no sku")


def validate_record(record: dict[str, Any]) -> int:
    payload = bytearray(64 * 1024)  # the decoded record, kept alive by the cycle below
    errors: dict[str, Exception] = {}
    try:
        check_fields(record)
    except ValueError as exc:
        errors["fields"] = exc  # the bug: exc -> traceback -> this frame -> errors -> exc
    return len(errors) + len(payload) * 0


def _validate(stop: threading.Event) -> None:
    n = 0
    while not stop.is_set():
        for _ in range(100):
            n += 1
            validate_record({"id": n})
        stop.wait(0.01)


@scenario(
    skill="gc",
    reason="memory saw-tooths and the process pauses; is the garbage collector busy?",
    expect=(r"validate_record", r"exception_cycles\.py:\d+", r"ValueError", r"cycle"),
)
def induce() -> Callable[[], None]:
    workers = Workers()
    workers.start("validator", _validate, workers.stop)
    return workers.cleanup()
