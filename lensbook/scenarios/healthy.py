"""A healthy process: nothing is wrong, and the diagnosis must say so (no false alarms)."""

from __future__ import annotations

from lensbook.scenarios import Scenario


def _induce() -> None:
    return None


SCENARIO = Scenario(
    title="A healthy process",
    skill="runtime",
    reason="routine check: is anything wrong?",
    induce=_induce,
    healthy=True,
    settle=0.2,
)
