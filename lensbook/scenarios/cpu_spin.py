"""A thread spinning the CPU: a busy loop polls a flag instead of waiting for it."""

from __future__ import annotations

from collections.abc import Callable

from lensbook.scenarios import scenario
from lensbook.scenarios._harness import Workers

__all__ = ["start_spinner"]


def poll_for_work(flags: dict[str, bool]) -> int:
    """Wait for work the wrong way: check a flag in a loop that never sleeps."""
    polls = 0
    while not flags["stop"]:
        polls += 1
    return polls


@scenario(
    skill="threads",
    reason="the process uses a full core while it should be idle",
    expect=(r"spinner", r"poll_for_work"),
    settle=0.5,
)
def start_spinner(name: str = "spinner") -> Callable[[], None]:
    """Start the spinning thread; returns the cleanup that stops and joins it."""
    # a plain flag, not the workers' stop event: polling it must stay a tight pure-Python loop
    flags = {"stop": False}
    workers = Workers()
    workers.start(name, poll_for_work, flags)
    return workers.cleanup(unblock=lambda: flags.update(stop=True))
