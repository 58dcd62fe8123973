"""Busy but healthy: one shared thread pool at steady state; no skill judging the process may alarm.

A dispatcher submits small jobs to one long-lived 8-worker ThreadPoolExecutor at a steady
rate; each job does a little work, waits briefly as I/O would, and records its result under a
short lock. The thread count, memory and file descriptors stay flat, the lock is held for
microseconds, and nothing raises.
"""

from __future__ import annotations

import hashlib
import threading
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from functools import partial

from lensbook.scenarios import process_skills, scenario
from lensbook.scenarios._harness import Workers

__all__ = ["induce", "resize_image"]


def resize_image(n: int, results: dict[int, str], lock: threading.Lock) -> None:
    digest = hashlib.sha256(str(n).encode() * 200).hexdigest()
    time.sleep(0.005)  # the upload, as I/O would wait
    with lock:
        results[n % 1000] = digest


@scenario(
    skill="threads",
    reason="routine check of the image workers: is anything wrong?",
    healthy=True,
    skills=process_skills(),
)
def induce() -> Callable[[], None]:
    pool = ThreadPoolExecutor(max_workers=8, thread_name_prefix="resize")
    results: dict[int, str] = {}
    lock = threading.Lock()
    workers = Workers(join_timeout=10)

    def dispatch() -> None:
        n = 0
        while not workers.stop.wait(0.01):
            futures = [pool.submit(resize_image, n + i, results, lock) for i in range(4)]
            n += 4
            for f in futures:
                f.result()

    workers.start("dispatcher", dispatch)
    return workers.cleanup(partial(pool.shutdown, wait=True))
