"""A healthy process: nothing is wrong, and the diagnosis must say so (no false alarms)."""

from __future__ import annotations

from lensbook.scenarios import scenario


@scenario(
    skill="runtime",
    reason="routine check: is anything wrong?",
    healthy=True,
    settle=0.2,
)
def induce() -> None:
    return None
