"""A file-descriptor leak: a thread opens ``leak-<n>.log`` files every few ms, never closing them.

The leak is bounded so it cannot exhaust the machine: at most 2000 files and never more than
40% of the RLIMIT_NOFILE headroom, opened over about 60 seconds (the rate adapts to the cap,
so the growth stays visible between two snapshots a few seconds apart).
"""

from __future__ import annotations

import os
from collections.abc import Callable
from typing import IO

from lensbook.scenarios import scenario
from lensbook.scenarios._harness import Workers, each, scratch_dir

__all__ = ["induce", "leak_files"]

MAX_FILES = 2000
#: seconds over which the cap is reached: long enough that the leak is still going when a
#: slow (loaded) investigation opens its creation window after the two snapshots
SPREAD = 60.0


def _cap() -> int:
    try:
        import resource

        soft, _hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    except (ImportError, ValueError, OSError):
        return 200
    if soft == resource.RLIM_INFINITY:
        return MAX_FILES
    in_use = len(os.listdir("/proc/self/fd")) if os.path.isdir("/proc/self/fd") else 64
    return max(50, min(MAX_FILES, int(0.4 * (soft - in_use))))


def leak_files(workers: Workers, directory: str, cap: int, interval: float) -> list[IO[str]]:
    """Start a worker that opens `cap` files in `directory`, one every `interval` s; returns
    the list of the files it has opened so far."""
    opened: list[IO[str]] = []

    def run() -> None:
        for n in range(cap):
            if workers.stop.wait(interval):
                return
            # the bug: the handle is kept (as a forgotten log handle would be), never closed
            handle = open(os.path.join(directory, f"leak-{n}.log"), "w")  # noqa: SIM115
            handle.write(f"request {n}\n")
            handle.flush()
            opened.append(handle)

    workers.start("request-logger", run)
    return opened


@scenario(
    skill="process",
    reason="the process holds more and more open file descriptors",
    expect=(
        r"grew from \d+ to \d+",  # the growth, with numbers
        r"\+\d+ in [\d.]+ s",
        r"leak-\*\.log",  # the path pattern of the leaked files
    ),
)
def induce() -> Callable[[], None]:
    directory, remove_directory = scratch_dir()
    cap = _cap()
    workers = Workers()
    opened = leak_files(workers, directory, cap, SPREAD / cap)

    return workers.cleanup(each(opened, lambda handle: handle.close()), remove_directory)
