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
                    target=self._work, name=f"{self._name}-{len(self._threads)}", daemon=True
                )
                self._threads.append(thread)
                thread.start()
        return future

    def _work(self) -> None:
        while True:
            with self._lock:
                self._idle += 1
            item = self._queue.get()
            with self._lock:
                self._idle -= 1
            if item is None:
                return
            future, fn, args, kwargs = item
            if future.set_running_or_notify_cancel():
                try:
                    future.set_result(fn(*args, **kwargs))
                except BaseException as exc:
                    future.set_exception(exc)
            del item, future, fn, args, kwargs

    def busy(self) -> int:
        """Threads running a probe now (including abandoned ones still finishing)."""
        with self._lock:
            return len(self._threads) - self._idle

    def release(self) -> None:
        """End every thread once it is idle (one running a probe ends after it); the pool
        takes work again at once, on new threads (`lensbook.stop()` leaves no thread of its)."""
        with self._lock:
            for _ in self._threads:
                self._queue.put(None)
            self._threads = []

    def shutdown(self, wait: bool = True, *, cancel_futures: bool = False) -> None:
        """Stop taking work; idle threads end. Never waits for a running probe."""
        with self._lock:
            self._shutdown = True
            for _ in self._threads:
                self._queue.put(None)
