"""A logger set up again on every use: one more FileHandler per call, every line written N times.

Modelled on durdraw/durdraw#85 ("repeated calls to instantiate a logger of the same name (for
each Frame) ... ends up accumulating FileHandlers, as each time the exact same logger object is
fetched and has a handler added to it": duplicated log lines, one open file per handler) and
chris104957/django-carrot#11 (each ConsumerSet attached a new handler in ``__init__``, so lines
were written once per instance). Here each rendered frame calls a helper that fetches the
"app.frame" logger and adds a FileHandler to it. Bounded: at most 300 handlers over about 15 s.
"""

from __future__ import annotations

import logging
import os
from collections.abc import Callable

from lensbook.scenarios import scenario
from lensbook.scenarios._harness import Workers, scratch_dir

__all__ = ["frame_logger", "induce"]

LOGGER = "app.frame"
MAX_HANDLERS = 300


def frame_logger(path: str) -> logging.Logger:
    """The frame logger, 'configured' each time it is fetched."""
    log = logging.getLogger(LOGGER)
    handler = logging.FileHandler(path)  # the bug: one more handler per call
    handler.setFormatter(logging.Formatter("%(asctime)s %(message)s"))
    log.addHandler(handler)
    log.setLevel(logging.INFO)
    return log


def render_frame(path: str, n: int) -> None:
    frame_logger(path).info("rendered frame %d", n)


@scenario(
    skill="logs",
    reason="every line of our frame log appears dozens of times",
    expect=(
        r"'app\.frame'",
        r"FileHandler",
        r"frames\.log",
        r"written \d+ times",
        r"\+\d+ handlers",
        r"created at .*duplicate_handlers\.py:\d+ in frame_logger",
    ),
)
def induce() -> Callable[[], None]:
    directory, remove_directory = scratch_dir()
    path = os.path.join(directory, "frames.log")
    workers = Workers()

    def animate() -> None:
        for n in range(MAX_HANDLERS):
            if workers.stop.wait(0.05):
                return
            render_frame(path, n)

    workers.start("animator", animate)

    def remove_handlers() -> None:
        log = logging.getLogger(LOGGER)
        for handler in list(log.handlers):
            log.removeHandler(handler)
            handler.close()

    return workers.cleanup(remove_handlers, remove_directory)
