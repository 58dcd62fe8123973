"""A logging handler wedged on a write: every thread that logs queues behind its lock.

Modelled on NousResearch/hermes-agent#58636 (a ``FileHandler.emit`` wedged in a synchronous
``write()`` to a disk that stopped accepting I/O "serialized both the inbound adapter and the
tool executor" behind ``Handler.lock``; the process was alive but unresponsive for 15 minutes).
Here an audit handler writes to a pipe whose reader (a log shipper) has stalled: once the pipe
buffer is full, the handler's ``write`` blocks while it holds the handler's lock, and the four
order workers wait at that lock the next time they log.
"""

from __future__ import annotations

import logging
import os
import time
from collections.abc import Callable

from lensbook.scenarios import scenario
from lensbook.scenarios._harness import Workers

__all__ = ["induce", "process_order"]

LOGGER = "orders.audit"
WORKERS = 4


def process_order(log: logging.Logger, worker: int, n: int) -> None:
    total = sum(range(200))
    log.warning("order %d-%d processed, total %d, %s", worker, n, total, "x" * 200)


@scenario(
    skill="threads",
    reason="the order service is hung; workers make no progress",
    expect=(r"process_order", r"blocked_log_handler\.py:\d+", r"lock", r"write"),
    settle=1.5,
)
def induce() -> Callable[[], None]:
    read_end, write_end = os.pipe()
    stream = os.fdopen(write_end, "w", buffering=1)  # line-buffered: one write per record
    handler = logging.StreamHandler(stream)
    log = logging.getLogger(LOGGER)
    log.addHandler(handler)
    log.propagate = False
    workers = Workers()

    def work(worker: int) -> None:
        n = 0
        while not workers.stop.is_set():
            n += 1
            process_order(log, worker, n)
            workers.stop.wait(0.01)

    for i in range(WORKERS):
        workers.start(f"order-worker-{i}", work, i)

    def ship_again() -> None:
        # the shipper comes back: drain the pipe until every worker has finished its record
        os.set_blocking(read_end, False)
        deadline = time.monotonic() + 5
        while time.monotonic() < deadline:
            try:
                while os.read(read_end, 65536):
                    pass
            except BlockingIOError:
                pass
            if not workers.alive():
                break
            time.sleep(0.01)  # polling the workers' exit, with the deadline above
        log.removeHandler(handler)
        log.propagate = True

    return workers.cleanup(stream.close, lambda: os.close(read_end), unblock=ship_again)
