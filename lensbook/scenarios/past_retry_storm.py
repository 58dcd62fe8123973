"""A retry storm that is over before anyone looks: only the flight recorder's history tells it.

Modelled on emeraldpay/dshackle#112 ("Disable upstream if retries exhausted": while an upstream
answered HTTP 502, every request was retried and each retry wrote an error to the log, instead of
setting the upstream aside for a while). Here an ``inventory-sync`` thread refreshes stock
levels from a supplier's API; while the API is down (the first ~2 s), ``fetch_stock`` raises
``ConnectionError`` and the sync loop logs it with its traceback and retries at once, with no
backoff: a burst of hundreds of errors a second. Then the API recovers and the loop goes quiet.

The question comes later ("stock levels were wrong for a while this morning"), when the process
is healthy again: no exception is being raised, no thread is stuck. lensbook had been loaded
before the outage (``%load_ext lensbook`` starts the flight recorder), so the burst is in the
history, and the investigation must diagnose it from there: which exception, raised where, in
which function, how many, and when it ended. Time is compressed: the storm ends ~10 s before
the investigation instead of an hour.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable
from functools import partial

from lensbook import recorder
from lensbook.scenarios import scenario
from lensbook.scenarios._harness import Workers

__all__ = ["fetch_stock", "induce", "sync_stock"]

LOGGER = "inventory.sync"
#: how long the supplier's API is down, and the pace of a healthy sync afterwards
OUTAGE_S = 2.0
SYNC_EVERY_S = 0.5
#: what the recorder is started as: `%load_ext lensbook` would have started it
_OWNER = "scenario-past-retry-storm"


def fetch_stock(sku: str, supplier_up_at: float) -> int:
    """The stock level of `sku` from the supplier's API (down until `supplier_up_at`)."""
    if time.monotonic() < supplier_up_at:
        raise ConnectionError(f"supplier API answered 502 for {sku}")  # while it is down
    return len(sku)


def sync_stock(skus: list[str], supplier_up_at: float, stop: threading.Event) -> None:
    log = logging.getLogger(LOGGER)
    levels: dict[str, int] = {}
    while not stop.is_set():
        for sku in skus:
            while not stop.is_set():
                try:
                    levels[sku] = fetch_stock(sku, supplier_up_at)
                    break
                except ConnectionError:
                    # the bug: retried at once, forever, logging every attempt
                    log.exception("stock sync failed for %s; retrying", sku)
        stop.wait(SYNC_EVERY_S)


@scenario(
    skill="exceptions",
    reason="stock levels were wrong for a while earlier; is anything still wrong?",
    expect=(
        r"exception_burst",
        r"ConnectionError",
        r"past_retry_storm\.py:\d+ in fetch_stock",
        r"ended \d+ s ago",
    ),
    # the outage, then ten quiet seconds: the burst is history when the run starts
    settle=OUTAGE_S + 10.0,
)
def induce() -> Callable[[], None]:
    recorder.start(_OWNER, sample_interval=None)
    log = logging.getLogger(LOGGER)
    # the application has its own handler, so nothing reaches stderr's last resort
    sink = logging.NullHandler()
    log.addHandler(sink)
    workers = Workers()
    skus = [f"sku-{n}" for n in range(20)]
    workers.start("inventory-sync", sync_stock, skus, time.monotonic() + OUTAGE_S, workers.stop)
    return workers.cleanup(partial(log.removeHandler, sink), partial(recorder.stop, _OWNER))
