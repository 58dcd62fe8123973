"""A leak allocated inside a library called from the user's code: pyplot figures never closed.

Modelled on quantopian/alphalens#241 ("Figures are not closed causing memory leak": figures made
through pyplot are kept by pyplot until ``close()``, whatever the caller does with them) and
matplotlib/matplotlib#23701 (memory growing with ``plt.figure()`` in a loop). A ``reports``
thread builds a dashboard chart per request with ``plt.subplots`` and ``ax.plot`` and drops
its reference. The memory is allocated inside matplotlib and numpy, several frames
below the user's ``render_dashboard``; what keeps it is pyplot's figure manager registry.
"""

from __future__ import annotations

import threading
from collections.abc import Callable
from functools import partial
from typing import Any

from lensbook.scenarios import scenario
from lensbook.scenarios._harness import Workers

__all__ = ["induce", "render_dashboard"]

POINTS = 20_000
PERIOD_S = 0.1


def render_dashboard(day: int, values: Any) -> int:
    import matplotlib.pyplot as plt

    _, ax = plt.subplots()
    ax.plot(values)  # the chart's data, copied into matplotlib's Line2D
    ax.set_title(f"orders on day {day}")
    return day  # the figure is dropped here, but never closed: pyplot still holds it


def _serve(stop: threading.Event) -> None:
    import numpy as np

    rng = np.random.default_rng(0)
    day = 0
    while not stop.wait(PERIOD_S):
        render_dashboard(day, rng.random(POINTS))
        day += 1


@scenario(
    skill="memory",
    reason="the reporting worker's memory keeps growing",
    expect=(
        r"figure_leak\.py:\d+ in render_dashboard",
        r"pyplot figure managers",
        r"plt\.close\(fig\)",
    ),
    settle=1.5,
)
def induce() -> Callable[[], None]:
    import matplotlib

    matplotlib.use("Agg")  # no display: the figures live only in pyplot's registry
    import matplotlib.pyplot as plt

    plt.rcParams["figure.max_open_warning"] = 0  # the warning would say it; the skill must
    workers = Workers()
    workers.start("reports", _serve, workers.stop)
    return workers.cleanup(partial(plt.close, "all"))
