"""The probe threads: daemon threads, released at `lensbook.stop()`, never in the way after."""

from __future__ import annotations

import threading
import time
from collections.abc import Callable

from lensbook.operator.probe_pool import DaemonPool


def _threads(prefix: str) -> list[str]:
    return [t.name for t in threading.enumerate() if t.name.startswith(prefix)]


def _until(check: Callable[[], bool], seconds: float = 5.0) -> None:
    deadline = time.monotonic() + seconds
    while not check():
        assert time.monotonic() < deadline, "not reached in time"
        time.sleep(0.01)


def test_released_threads_end_and_the_next_probe_runs_at_once() -> None:
    pool = DaemonPool(max_workers=4, name="pool-test")
    gate = threading.Event()
    abandoned = pool.submit(gate.wait)  # a probe still running when lensbook stops
    for future in [pool.submit(lambda: None) for _ in range(3)]:
        future.result(5)
    _until(lambda: pool.busy() == 1)  # (a thread counts itself done just after its result)
    pool.release()
    # the next run's probe is not queued behind the abandoned one
    assert pool.submit(lambda: "ran").result(3) == "ran"
    gate.set()
    assert abandoned.result(5) is True
    _until(lambda: _threads("pool-test-0.") == [])  # every thread from before the release ends
    _until(lambda: pool.busy() == 0)


def test_releases_in_a_row_leave_only_the_newest_threads() -> None:
    pool = DaemonPool(max_workers=4, name="pool-rows")
    for _ in range(30):  # a new thread never takes the wake-up meant for an older one
        futures = [pool.submit(time.sleep, 0.001) for _ in range(4)]
        pool.release()
        assert pool.submit(lambda: "ran").result(3) == "ran"
        for future in futures:
            future.result(3)
    _until(lambda: [n for n in _threads("pool-rows-") if not n.startswith("pool-rows-30.")] == [])
