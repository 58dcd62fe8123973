"""Reference cycles of objects with `__del__` churning the cycle collector.

A parser builds small trees whose children point back to their parent, and the node class has
a `__del__` that releases a handle. The trees live for a while (a window of recent parses) and
then die: each tree is a cycle with finalizers that only the collector can reclaim, promoted to
generation 2 by the time it dies, so full collections run over and over.
"""

from __future__ import annotations

import threading
from collections import deque
from collections.abc import Callable
from typing import Any

from lensbook.scenarios import scenario
from lensbook.scenarios._harness import Workers

_released = 0


class ParseNode:
    """A node of a parse tree; children point back to their parent (a reference cycle)."""

    def __init__(self, kind: str, parent: ParseNode | None = None) -> None:
        self.kind = kind
        self.parent = parent
        self.children: list[ParseNode] = []
        if parent is not None:
            parent.children.append(self)

    def __del__(self) -> None:
        global _released
        _released += 1  # stands for releasing a handle held by the node


def parse(statement: int) -> ParseNode:
    root = ParseNode("statement")
    for i in range(12):
        ParseNode("token" if i % 3 else "expr", root)
    return root


def _churn(stop: threading.Event, trees_per_s: int, keep: int) -> None:
    recent: deque[Any] = deque(maxlen=keep)  # recent parses, kept for a while then dropped
    n = 0
    batch = max(1, trees_per_s // 50)
    while not stop.is_set():
        for _ in range(batch):
            recent.append(parse(n))
            n += 1
        stop.wait(0.02)
    recent.clear()


@scenario(
    skill="gc",
    reason="latency spikes; the process spends time in garbage collection",
    # the type with __del__ in cycles, and the full-collection rate with its unit
    expect=(r"ParseNode", r"gen-2 \(full\) collections: \d+ in [\d.]+ s \([\d.]+/s\)"),
    settle=1.5,
)
def induce() -> Callable[[], None]:
    workers = Workers()
    workers.start("parser", _churn, workers.stop, 8000, 2000)
    return workers.cleanup()
