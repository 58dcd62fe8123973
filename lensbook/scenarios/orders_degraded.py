"""A vague incident, "orders service degraded": an audit log that keeps every order (~8 MB/s)
while the payment client logs ~100 errors a second. A coordinator's scenario.

Modelled on two public reports: psf/requests#4191 (every response kept for a consumer that
falls behind, so memory grows with each request) and strands-project/mongodb_store#170 (a retry
loop with no delay logging the same error thousands of times). The complaint names neither:
no keyword of the question points at memory or logs, so the coordinator must dispatch its
operators from triage's evidence (the runtime skill's RSS trend, the log handler's error rate).

lensbook had been loaded before the complaint: the runtime skill is sampled every second and
the logs skill's handler is installed (what `lensbook.start()` and the flight recorder do), so
there is a history to triage.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable
from functools import partial
from typing import Any

from lensbook.scenarios import scenario
from lensbook.scenarios._harness import Workers, sample_runtime
from lensbook.skills import resolve_skill

__all__ = ["induce", "record_order"]

LOGGER = "orders.payments"
ORDERS_PER_BATCH = 300
ERRORS_PER_BATCH = 5
PERIOD_S = 0.05

_AUDIT_LOG: list[dict[str, Any]] = []


def record_order(n: int) -> None:
    order = {"id": n, "lines": [n, n + 1, n + 2], "note": f"order {n} " + "." * 1000}
    _AUDIT_LOG.append(order)  # kept forever: nothing reads or trims the audit log


def _serve(stop: threading.Event, log: logging.Logger) -> None:
    n = 0
    while not stop.wait(PERIOD_S):
        for _ in range(ORDERS_PER_BATCH):
            record_order(n)
            n += 1
        for _ in range(ERRORS_PER_BATCH):
            log.error("charge for order %s failed: payment provider timeout", n)


@scenario(
    skill="runtime",
    reason="orders service degraded",
    expect=(r"orders_degraded\.py:\d+", r"_AUDIT_LOG", r"orders\.payments"),
    settle=4.0,
)
def induce() -> Callable[[], None]:
    stop_sampling = sample_runtime()
    resolve_skill("logs").snapshot()  # the log handler is in place before the incident
    log = logging.getLogger(LOGGER)
    sink = logging.NullHandler()  # the service's own handler: nothing reaches stderr
    log.addHandler(sink)
    workers = Workers()
    workers.start("orders-api", _serve, workers.stop, log)
    return workers.cleanup(stop_sampling, partial(log.removeHandler, sink), _AUDIT_LOG.clear)
