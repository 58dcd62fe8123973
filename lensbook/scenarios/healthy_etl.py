"""Busy but healthy: a pandas ETL loop at steady state; no skill judging the process may alarm.

A worker thread extracts batches of orders (CSV text parsed by pandas), transforms them
(cleans, joins a small product table, aggregates per category) and loads each summary into a
bounded store of recent results, logging one INFO line per batch. It allocates and frees
megabytes per batch and keeps a steady working set: memory, threads, file descriptors and error
rates stay flat, which is what every skill must see.
"""

from __future__ import annotations

import io
import logging
from collections import deque
from collections.abc import Callable
from typing import Any

import numpy as np

from lensbook.scenarios import process_skills, scenario
from lensbook.scenarios._harness import Workers

__all__ = ["induce", "run_batch"]

ROWS = 20_000


def extract(rng: np.random.Generator) -> Any:
    import pandas as pd

    frame = pd.DataFrame(
        {
            "order": np.arange(ROWS),
            "product": rng.integers(0, 50, ROWS),
            "quantity": rng.integers(1, 5, ROWS),
            "price": rng.random(ROWS) * 100,
        }
    )
    text = frame.to_csv(index=False)  # what a file or an HTTP response would hold
    return pd.read_csv(io.StringIO(text))


def run_batch(rng: np.random.Generator, products: Any) -> Any:
    orders = extract(rng)
    orders = orders[orders["quantity"] > 0].assign(total=lambda d: d["quantity"] * d["price"])
    joined = orders.merge(products, on="product", how="left")
    return joined.groupby("category")["total"].agg(["sum", "mean", "count"])


@scenario(
    skill="runtime",
    reason="routine check of the ETL worker: is anything wrong?",
    healthy=True,
    # the bounded store fills and pandas warms its caches within the first seconds
    settle=4.0,
    skills=process_skills(),
)
def induce() -> Callable[[], None]:
    import pandas as pd

    log = logging.getLogger("etl.orders")
    products = pd.DataFrame({"product": range(50), "category": [f"c{i % 7}" for i in range(50)]})
    recent: deque[Any] = deque(maxlen=5)  # the "warehouse": a bounded store of summaries
    workers = Workers(join_timeout=10)

    def etl() -> None:
        rng = np.random.default_rng(0)
        batch = 0
        while not workers.stop.wait(0.05):
            batch += 1
            recent.append(run_batch(rng, products))
            log.info("batch %d loaded", batch)

    workers.start("etl", etl)
    return workers.cleanup()
