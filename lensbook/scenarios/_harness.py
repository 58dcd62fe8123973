"""What every threaded scenario does around its fault: named daemon workers and their cleanup.

A scenario's fault runs on daemon threads (so a fault that never ends, such as a deadlock, cannot
keep the interpreter alive) that share one stop event. `Workers` starts them and builds the
scenario's cleanup, which always runs in the same order:

1. set the stop event (loops that wait on it return);
2. run the `unblock` step: what a thread stuck outside the stop event needs (a lock released
   by hand, a pipe drained, a sentinel queued);
3. join every thread, each for at most `join_timeout` seconds (a thread that stays stuck is a
   daemon: it is left behind rather than hanging the cleanup);
4. run the `then` steps: undo what the fault left in the process (caches, handlers, files).

`start_paced` is the paced request loop the memory leak services share: a batch of calls
every 1/20 s until stopped, so a leak grows at a steady, known rate. `sample_runtime` plays a
process where lensbook was loaded before the question, for the scenarios judged on history;
`scratch_dir` is a temporary folder for the files a fault leaves, with the step that removes it;
`each` is the step that closes (or waits for) every resource a fault kept.
"""

from __future__ import annotations

import shutil
import tempfile
import threading
from collections.abc import Callable, Iterable
from functools import partial
from typing import TypeVar

__all__ = ["Workers", "each", "sample_runtime", "scratch_dir", "start_paced"]

T = TypeVar("T")

#: how many batches of requests a paced service serves a second
BATCHES_PER_S = 20


class Workers:
    """Named daemon threads that share one stop event, and the cleanup that ends them."""

    def __init__(self, join_timeout: float = 5.0) -> None:
        #: set by the cleanup; a worker's loop waits on it (``while not stop.wait(period)``)
        self.stop = threading.Event()
        self.threads: list[threading.Thread] = []
        self._join_timeout = join_timeout

    def start(self, name: str, target: Callable[..., object], *args: object) -> threading.Thread:
        """Start `target(*args)` on a daemon thread called `name` (the name the tests expect)."""
        thread = threading.Thread(target=target, args=args, name=name, daemon=True)
        thread.start()
        self.threads.append(thread)
        return thread

    def alive(self) -> bool:
        """Whether any worker is still running."""
        return any(t.is_alive() for t in self.threads)

    def cleanup(
        self,
        *then: Callable[[], object],
        unblock: Callable[[], object] | None = None,
    ) -> Callable[[], None]:
        """The scenario's cleanup: stop, `unblock`, join, then each of `then` in order."""

        def cleanup() -> None:
            self.stop.set()
            if unblock is not None:
                unblock()
            for thread in self.threads:
                thread.join(self._join_timeout)
            for step in then:
                step()

        return cleanup


def start_paced(name: str, serve: Callable[[int], object], per_second: int) -> Workers:
    """Call ``serve(0)``, ``serve(1)``, ... about `per_second` times a second, in batches, on a
    daemon thread `name`, until the workers' stop event is set."""
    workers = Workers()
    batch = max(1, per_second // BATCHES_PER_S)

    def loop() -> None:
        n = 0
        while not workers.stop.is_set():
            for _ in range(batch):
                serve(n)
                n += 1
            workers.stop.wait(1 / BATCHES_PER_S)

    workers.start(name, loop)
    return workers


def sample_runtime() -> Callable[[], None]:
    """Do what `lensbook.start()` does before anyone asks a question: sample the runtime skill
    every second into the metrics store. Returns the sampler's stop."""
    from lensbook.sampling import Sampler, store
    from lensbook.skills import resolve_skill

    store.listen()
    sampler = Sampler([resolve_skill("runtime")], interval=1.0)
    sampler.start()
    return sampler.stop


def scratch_dir() -> tuple[str, Callable[[], None]]:
    """A new temporary folder for a fault's files, and the cleanup step that removes it."""
    directory = tempfile.mkdtemp()
    return directory, partial(shutil.rmtree, directory, ignore_errors=True)


def each(items: Iterable[T], action: Callable[[T], object]) -> Callable[[], None]:
    """A cleanup step: `action(item)` for every item, read when the step runs (the fault's
    list of what it kept is complete by then)."""

    def step() -> None:
        for item in items:
            action(item)

    return step
