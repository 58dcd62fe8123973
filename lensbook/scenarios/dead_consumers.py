"""Queue consumer threads that die on a malformed message, one after another, silently.

Modelled on gorakhargosh/watchdog#357 ("while user code raises an uncaught exception,
watchdog's consumer thread will be killed and not reborn; tasks in the queue accumulate") and
camunda-community-hub/pyzeebe#80 ("Worker threads silently die and stop handling pending jobs
after an exception occurs"). Here six consumers take events from a queue; the event parser
raises ValueError on a malformed payload, nothing catches it, and each poison message (one
every 1.5 s) ends a consumer. The producer goes on, so the backlog grows while the pool shrinks.
"""

from __future__ import annotations

import json
import queue
import threading
from collections.abc import Callable
from typing import Any

from lensbook.scenarios import scenario
from lensbook.scenarios._harness import Workers

__all__ = ["consume_events", "induce", "parse_event"]

CONSUMERS = 6
#: seconds between malformed messages
POISON_EVERY = 1.5


def parse_event(raw: str) -> dict[str, Any]:
    event: dict[str, Any] = json.loads(raw)
    if "kind" not in event:
        raise ValueError(f"event without a kind: {raw[:40]}")
    return event


def consume_events(events: queue.Queue[str | None], handled: list[int]) -> None:
    while True:
        raw = events.get()
        if raw is None:
            return
        parse_event(raw)  # the bug: one bad message ends the consumer thread
        handled[0] += 1


def _produce(events: queue.Queue[str | None], stop: threading.Event) -> None:
    n = 0
    next_poison = POISON_EVERY
    elapsed = 0.0
    while not stop.wait(0.02):
        elapsed += 0.02
        n += 1
        if elapsed >= next_poison:
            next_poison += POISON_EVERY
            events.put(json.dumps({"id": n}))  # a malformed event: no "kind"
        elif events.qsize() < 5000:
            events.put(json.dumps({"id": n, "kind": "click"}))


@scenario(
    skill="exceptions",
    reason="events pile up unprocessed; the workers seem to have stopped",
    expect=(r"thread_died", r"ValueError", r"parse_event", r"dead_consumers\.py:\d+"),
    settle=0.3,
)
def induce() -> Callable[[], None]:
    events: queue.Queue[str | None] = queue.Queue()
    handled = [0]
    workers = Workers()
    for i in range(CONSUMERS):
        workers.start(f"consumer-{i}", consume_events, events, handled)
    workers.start("producer", _produce, events, workers.stop)

    def end_of_stream() -> None:  # one for each consumer still alive, none for the producer
        for _ in range(CONSUMERS):
            events.put(None)

    return workers.cleanup(unblock=end_of_stream)
