"""An error storm: a worker thread logs the same error from one logger ~200 times a second.

The "payments.gateway" logger repeats "failed to charge card %s: gateway timeout" with a new
card id each time (one template, many messages), as a retry loop without backoff would.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from functools import partial

from lensbook.scenarios import scenario
from lensbook.scenarios._harness import Workers

LOGGER = "payments.gateway"
#: records per burst, and bursts per second
BURST = 20
PERIOD = 0.1


@scenario(
    skill="logs",
    reason="the service feels sluggish and the log files are growing fast",
    expect=(
        r"payments\.gateway",
        r"failed to charge card %s: gateway timeout",
        r"\d+(\.\d+)?\s*(errors)?/s",
        r"payments-retry",
    ),
    settle=0.5,
)
def induce() -> Callable[[], None]:
    log = logging.getLogger(LOGGER)
    # the application has its own handler, so nothing reaches stderr's last resort
    sink = logging.NullHandler()
    log.addHandler(sink)
    workers = Workers()

    def retry_loop() -> None:
        card = 4000_0000
        while not workers.stop.is_set():
            for _ in range(BURST):
                card += 1
                log.error("failed to charge card %s: gateway timeout", card)
            workers.stop.wait(PERIOD)

    workers.start("payments-retry", retry_loop)
    return workers.cleanup(partial(log.removeHandler, sink))
