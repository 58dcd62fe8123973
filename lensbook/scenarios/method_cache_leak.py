"""Instances pinned by a cache decorator: ``@functools.lru_cache`` on a method keeps every
``self`` it was called with alive.

Modelled on getsentry/seer#2512 ("Fix memory leak due to functools caches": the cache kept a
reference to every repository client instance, ``self`` being part of the key) and
pytest-dev/pytest#9148 ("Avoid @lru_cache on methods"). A ``pricing`` thread builds a new
``PriceQuote`` per request and asks for its converted total; the unbounded cache on
``PriceQuote.converted`` keeps each quote, with its price history, for ever.
"""

from __future__ import annotations

import functools
import threading
from collections.abc import Callable

from lensbook.scenarios import scenario
from lensbook.scenarios._harness import Workers

__all__ = ["PriceQuote", "induce"]

QUOTES_PER_BATCH = 100
PERIOD_S = 0.05


class PriceQuote:
    def __init__(self, sku: int) -> None:
        self.sku = sku
        self.history = [float(sku + i) for i in range(120)]  # the quote's price history

    @functools.cache  # noqa: B019 - the bug this scenario reproduces
    def converted(self, currency: str) -> float:
        return sum(self.history) * (1.1 if currency == "EUR" else 1.0)


def quote_price(sku: int) -> float:
    return PriceQuote(sku).converted("EUR")


def _serve(stop: threading.Event) -> None:
    sku = 0
    while not stop.wait(PERIOD_S):
        for _ in range(QUOTES_PER_BATCH):
            quote_price(sku)
            sku += 1


@scenario(
    skill="memory",
    reason="memory of the pricing service keeps growing",
    expect=(
        r"method_cache_leak\.py:\d+",
        r"PriceQuote",
        r"functools\.lru_cache .*PriceQuote\.converted",
        r"cache_clear",
    ),
)
def induce() -> Callable[[], None]:
    workers = Workers()
    workers.start("pricing", _serve, workers.stop)
    return workers.cleanup(PriceQuote.converted.cache_clear)
