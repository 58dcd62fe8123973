"""Three threads deadlocked in a ring, each lock taken by subscript: ``locks[i]``, then
``locks[(i + 1) % 3]``.

Modelled on the dining-philosophers deadlock reported against the Rust book's example
(rust-lang/rust#27932, "dining philosophers does not actually exhibit deadlock": each
philosopher takes ``table.forks[self.left]`` then ``table.forks[self.right]``, and the last
one's right fork is the first one's left). Each ``station-N`` thread takes its own lock, meets
the others at a barrier (so the deadlock is certain, not a race), then reaches for its
neighbour's. No lock is named by a plain name or attribute: the expression is a subscript with
arithmetic on a local. The cleanup breaks the ring by releasing ``locks[0]`` by hand.
"""

from __future__ import annotations

import threading
from collections.abc import Callable

from lensbook.scenarios import scenario
from lensbook.scenarios._harness import Workers

__all__ = ["start_ring"]

STATIONS = 3


def pack_order(locks: list[threading.Lock], i: int, ready: threading.Barrier) -> None:
    with locks[i]:
        ready.wait()
        with locks[(i + 1) % len(locks)]:
            pass


def _station(
    locks: list[threading.Lock], i: int, ready: threading.Barrier, breaking: threading.Event
) -> None:
    try:
        pack_order(locks, i, ready)
    except (RuntimeError, threading.BrokenBarrierError):
        # the cleanup released a lock this thread held (or aborted the barrier)
        if not breaking.is_set():
            raise


@scenario(
    skill="threads",
    reason="order packing stopped; the three station threads do nothing",
    expect=(
        r"deadlock",
        r"station-0",
        r"station-1",
        r"station-2",
        r"locks\[\(i \+ 1\) % len\(locks\)\]",
        r"ring_deadlock\.py:\d+ in pack_order",
    ),
    settle=0.5,
)
def start_ring(prefix: str = "station") -> Callable[[], None]:
    """Start the ring of deadlocked threads ``{prefix}-0`` .. ``-2``; returns the cleanup."""
    locks = [threading.Lock() for _ in range(STATIONS)]
    ready = threading.Barrier(STATIONS)
    workers = Workers()  # its stop event tells the stations that the cleanup is breaking in
    for i in range(STATIONS):
        workers.start(f"{prefix}-{i}", _station, locks, i, ready, workers.stop)

    def break_ring() -> None:
        ready.abort()
        # releasing one lock lets its waiter finish, which releases the next, and so on
        if locks[0].locked():
            locks[0].release()

    return workers.cleanup(unblock=break_ring)
