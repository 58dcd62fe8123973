"""The threads probes run on: daemon threads, so the interpreter never waits for a probe.

`concurrent.futures.ThreadPoolExecutor` joins its workers at interpreter exit (before `atexit`
handlers run). A probe abandoned by its budget may still be busy then, and the user's process
could not exit until it finished. These workers are daemon threads that nothing joins: at exit
a probe still running is simply dropped with the interpreter. Probes bound their own work
(deadlines, linear-time regexes) so that an abandoned probe also stops consuming CPU soon.

The pool grows to `max_workers` threads on demand and keeps them; an idle worker blocks on its
queue (no polling, no wake-ups).
"""

from __future__ import annotations

import concurrent.futures
import queue
import threading
from collections.abc import Callable
from typing import Any, TypeVar

__all__ = ["DaemonPool"]

T = TypeVar("T")

_Item = tuple["concurrent.futures.Future[Any]", Callable[..., Any], tuple[Any, ...], dict[str, Any]]


class DaemonPool(concurrent.futures.Executor):
    """A small executor of daemon threads (usable with `loop.run_in_executor`)."""

    def __init__(self, max_workers: int, name: str) -> None:
        self._max = max_workers
        self._name = name
        self._queue: queue.SimpleQueue[_Item | None] = queue.SimpleQueue()
        self._lock = threading.Lock()
        self._threads: list[threading.Thread] = []
        self._idle = 0
        self._shutdown = False
        #: bumped by `release`: a thread started in an older generation ends when it can
        self._generation = 0
        #: items being run now, by threads of any generation
        self._running = 0

    def submit(
        self, fn: Callable[..., T], /, *args: Any, **kwargs: Any
    ) -> concurrent.futures.Future[T]:
        future: concurrent.futures.Future[T] = concurrent.futures.Future()
        with self._lock:
            if self._shutdown:
                raise RuntimeError("cannot run a probe after the pool was shut down")
            self._queue.put((future, fn, args, kwargs))
            if self._queue.qsize() > self._idle and len(self._threads) < self._max:
                thread = threading.Thread(
                    target=self._work,
                    args=(self._generation,),
                    name=f"{self._name}-{self._generation}.{len(self._threads)}",
                    daemon=True,
                )
                self._threads.append(thread)
                thread.start()
        return future

    def _work(self, generation: int) -> None:
        while True:
            with self._lock:
                if generation != self._generation:
                    return  # released: newer threads take the work
                self._idle += 1
            item = self._queue.get()
            with self._lock:
                self._idle -= 1
            if item is None:
                if self._shutdown:
                    return
                continue  # a wake-up from `release`: look at the generation again
            future, fn, args, kwargs = item
            with self._lock:
                self._running += 1
            try:
                if future.set_running_or_notify_cancel():
                    try:
                        future.set_result(fn(*args, **kwargs))
                    except BaseException as exc:
                        future.set_exception(exc)
            finally:
                with self._lock:
                    self._running -= 1
            del item, future, fn, args, kwargs

    def busy(self) -> int:
        """Threads running a probe now (including abandoned ones still finishing)."""
        with self._lock:
            return self._running

    def release(self) -> None:
        """End every thread once it is idle (one running a probe ends after it); the pool
        takes work again at once, on new threads (`lensbook.stop()` leaves no thread of its)."""
        with self._lock:
            self._generation += 1  # each thread of an older one ends at its next look
            for _ in range(self._idle):
                self._queue.put(None)  # wakes the idle ones (a new thread may take one: it
            self._threads = []  # then just looks again, as its generation is current)

    def shutdown(self, wait: bool = True, *, cancel_futures: bool = False) -> None:
        """Stop taking work; idle threads end. Never waits for a running probe."""
        with self._lock:
            self._shutdown = True
            for _ in self._threads:
                self._queue.put(None)
