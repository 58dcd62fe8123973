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


class _Generation:
    """The threads started between two releases, and the queue only they read."""

    def __init__(self) -> None:
        self.queue: queue.SimpleQueue[_Item | None] = queue.SimpleQueue()
        self.threads: list[threading.Thread] = []
        self.idle = 0


class DaemonPool(concurrent.futures.Executor):
    """A small executor of daemon threads (usable with `loop.run_in_executor`)."""

    def __init__(self, max_workers: int, name: str) -> None:
        self._max = max_workers
        self._name = name
        self._lock = threading.Lock()
        #: the threads taking work now; `release` starts a new one (its own queue), and each
        #: thread of an older one ends after the work queued before the release
        self._current = _Generation()
        self._generations = 0
        self._shutdown = False
        #: items being run now, by threads of any generation
        self._running = 0

    def submit(
        self, fn: Callable[..., T], /, *args: Any, **kwargs: Any
    ) -> concurrent.futures.Future[T]:
        future: concurrent.futures.Future[T] = concurrent.futures.Future()
        with self._lock:
            if self._shutdown:
                raise RuntimeError("cannot run a probe after the pool was shut down")
            gen = self._current
            gen.queue.put((future, fn, args, kwargs))
            if gen.queue.qsize() > gen.idle and len(gen.threads) < self._max:
                thread = threading.Thread(
                    target=self._work,
                    args=(gen,),
                    name=f"{self._name}-{self._generations}.{len(gen.threads)}",
                    daemon=True,
                )
                gen.threads.append(thread)
                thread.start()
        return future

    def _work(self, gen: _Generation) -> None:
        while True:
            with self._lock:
                gen.idle += 1
            item = gen.queue.get()
            with self._lock:
                gen.idle -= 1
            if item is None:
                return  # released (or shut down): the work queued before it is done
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
        """End every thread once the work queued so far is done (one running a probe ends
        after it); the pool takes work again at once, on new threads with a queue of their
        own (`lensbook.stop()` leaves no thread of its)."""
        with self._lock:
            old, self._current = self._current, _Generation()
            self._generations += 1
            for _ in old.threads:
                old.queue.put(None)

    def shutdown(self, wait: bool = True, *, cancel_futures: bool = False) -> None:
        """Stop taking work; idle threads end. Never waits for a running probe."""
        with self._lock:
            self._shutdown = True
            for _ in self._current.threads:
                self._current.queue.put(None)
