"""A combined fault: the never-evicted cache leak and the payments error storm, at once.

A real incident crosses domains; this one shows up to the memory operator (a module-level
cache that only grows) and to the logs operator (one logger repeating one error ~200 times a
second). It is the coordinator's scenario: an investigation should link the two operators'
notifications. It reuses the `cache_leak` and `error_storm` scenarios' own faults.
"""

from __future__ import annotations

from collections.abc import Callable

from lensbook.scenarios import get_scenario, scenario

CACHE_LEAK = get_scenario("cache_leak")
ERROR_STORM = get_scenario("error_storm")

#: the skills an investigation of this fault needs
SKILLS = ("memory", "logs")


@scenario(
    skill="memory",
    reason="memory keeps growing and the service logs errors",
    # both operators' culprits must be named
    expect=(*CACHE_LEAK.expect, *ERROR_STORM.expect[:2]),
    settle=max(CACHE_LEAK.settle, ERROR_STORM.settle),
)
def induce() -> Callable[[], None]:
    cleanups = [CACHE_LEAK.induce(), ERROR_STORM.induce()]

    def cleanup() -> None:
        for undo in reversed(cleanups):
            if undo is not None:
                undo()

    return cleanup
