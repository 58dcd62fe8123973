"""A small user skill for the core tests: typed probes, one that raises, one that overruns."""

from __future__ import annotations

import time
from typing import Any

from lensbook import Skill, probe


class Toy(Skill):
    id = "toy"
    title = "Toy skill"
    description = "A skill for tests"
    system_prompt = "You look after a toy."

    def __init__(self) -> None:
        self.counter = 0

    def snapshot(self) -> dict[str, Any]:
        self.counter += 1
        return {"counter": self.counter, "token": "sk-ant-api03-abcdefghijklmnopqrstuvwxyz"}

    @probe
    def echo(self, text: str, times: int = 1) -> dict[str, Any]:
        """Echo text back.

        Args:
            text: what to echo.
            times: how many times.
        Cost: nothing.
        """
        return {"echo": [text] * times}

    @probe
    def explode(self) -> None:
        """Always raises. Cost: nothing."""
        raise RuntimeError("probe exploded on purpose")

    @probe(budget=0.2)
    def slow(self) -> str:
        """Sleeps past its budget. Cost: 1 s of sleep."""
        time.sleep(1.0)
        return "late"

    @probe(max_chars=100)
    def big(self) -> list[int]:
        """Returns far more than its cap. Cost: builds a list of 10,000 ints."""
        return list(range(10_000))
