"""A thread spinning the CPU: a busy loop polls a flag instead of waiting for it."""

from __future__ import annotations

import threading
from collections.abc import Callable

from lensbook.scenarios import Scenario

__all__ = ["SCENARIO", "start_spinner"]


def poll_for_work(flags: dict[str, bool]) -> int:
    """Wait for work the wrong way: check a flag in a loop that never sleeps."""
    polls = 0
    while not flags["stop"]:
        polls += 1
    return polls


def start_spinner(name: str = "spinner") -> Callable[[], None]:
    """Start the spinning thread; returns the cleanup that stops and joins it."""
    flags = {"stop": False}
    thread = threading.Thread(target=poll_for_work, args=(flags,), name=name, daemon=True)
    thread.start()

    def cleanup() -> None:
        flags["stop"] = True
        thread.join(5)

    return cleanup


SCENARIO = Scenario(
    name="cpu_spin",
    title="A thread spinning the CPU",
    skill="threads",
    reason="the process uses a full core while it should be idle",
    induce=start_spinner,
    expect=(r"spinner", r"poll_for_work"),
    settle=0.5,
)
