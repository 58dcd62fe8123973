"""Two threads deadlocked on two locks taken in opposite orders.

``worker-a`` takes ``lock_a`` then ``lock_b``; ``worker-b`` takes ``lock_b`` then ``lock_a``. A
barrier makes sure each holds its first lock before reaching for the second, so the deadlock is
certain, not a race. The cleanup breaks it by hand (see `start_deadlock`).
"""

from __future__ import annotations

import threading
from collections.abc import Callable

from lensbook.scenarios import scenario
from lensbook.scenarios._harness import Workers

__all__ = ["start_deadlock"]


def transfer_a_to_b(
    lock_a: threading.Lock, lock_b: threading.Lock, both: threading.Barrier
) -> None:
    with lock_a:
        both.wait()
        with lock_b:
            pass


def transfer_b_to_a(
    lock_a: threading.Lock, lock_b: threading.Lock, both: threading.Barrier
) -> None:
    with lock_b:
        both.wait()
        with lock_a:
            pass


def _worker(
    transfer: Callable[[threading.Lock, threading.Lock, threading.Barrier], None],
    locks: tuple[threading.Lock, threading.Lock, threading.Barrier],
    breaking: threading.Event,
) -> None:
    try:
        transfer(*locks)
    except RuntimeError:
        # the cleanup released a lock this thread held, so its own release finds it unlocked
        if not breaking.is_set():
            raise


@scenario(
    skill="threads",
    reason="two worker threads stopped making progress; the job hangs",
    expect=(r"deadlock", r"worker-a", r"worker-b", r"\block_a\b", r"\block_b\b"),
    settle=0.5,
)
def start_deadlock(prefix: str = "worker") -> Callable[[], None]:
    """Start the two deadlocked threads (``{prefix}-a``, ``{prefix}-b``); returns the cleanup.

    A plain Lock may be released by any thread: the cleanup releases ``lock_a`` on behalf of
    ``{prefix}-a``, which lets both threads finish.
    """
    lock_a = threading.Lock()
    lock_b = threading.Lock()
    both = threading.Barrier(2)
    locks = (lock_a, lock_b, both)
    workers = Workers()  # its stop event tells the workers that the cleanup is breaking in
    workers.start(f"{prefix}-a", _worker, transfer_a_to_b, locks, workers.stop)
    workers.start(f"{prefix}-b", _worker, transfer_b_to_a, locks, workers.stop)

    def break_in() -> None:
        both.abort()  # in case a thread has not reached the barrier yet
        if lock_a.locked():
            lock_a.release()

    return workers.cleanup(unblock=break_in)
