"""The recorder: its observers, their periodic flush, who started it, and the read functions.

One `Recorder` per process (`recorder`). `start(owner)` installs every observer once and adds an
owner ("api" for `lensbook.start()`, "ipython" for `%load_ext`, "watch" for `lensbook.watch`);
`stop(owner)` removes that owner and, when none is left, takes every hook out exactly as it was
(`stop()` without an owner removes them all, as `lensbook.stop()` does). The history itself
survives a stop, so what was seen can still be read.

A tick on the lens loop drives the periodic work: every `lag_interval_s` (while there are loops
to watch) it pings them; every `flush_interval_s` it looks for new loops, hooks their exception
handlers, turns the observers' counters into rate events and drops events past the age cap.
With no loop to watch it wakes only every `flush_interval_s`, so the idle cost is one wake of
the lens loop per 10 s plus the metrics sampler's snapshot every 30 s. Reading the history
flushes first, so counts are never older than the read.
"""

from __future__ import annotations

import asyncio
import contextlib
import threading
import time
from collections.abc import Collection
from typing import Any

from lensbook.limits import SAMPLE_INTERVAL, sampling_interval
from lensbook.recorder.aio import DEFAULT_THRESHOLD_S, LagObserver
from lensbook.recorder.event import HistoryEvent, make_event
from lensbook.recorder.exceptions import ExceptionObserver
from lensbook.recorder.gcpause import GcPauseObserver
from lensbook.recorder.logs import LogObserver
from lensbook.recorder.ring import HistoryRing
from lensbook.recorder.samples import SampleObserver
from lensbook.recorder.threads import ThreadObserver
from lensbook.skills._ipython import shell as _shell

__all__ = ["KINDS", "Recorder", "recorder"]

#: the kinds of events the recorder writes
KINDS = (
    "exception",
    "logged_exception",
    "exception_rate",
    "log",
    "log_rate",
    "thread_started",
    "thread_ended",
    "thread_died",
    "thread_growth",
    "loop_lag",
    "metrics",
    "gc_pause",
    "trace",
)


class Recorder:
    """The flight recorder: observers feeding one `HistoryRing`."""

    def __init__(
        self,
        flush_interval_s: float = 10.0,
        lag_interval_s: float = 1.0,
        lag_threshold_s: float = DEFAULT_THRESHOLD_S,
    ) -> None:
        self.flush_interval_s = flush_interval_s
        self.lag_interval_s = lag_interval_s
        self.ring = HistoryRing()
        self.threads = ThreadObserver(self.ring)
        self.exceptions = ExceptionObserver(
            self.ring, self.threads.count_death, self.threads.on_death
        )
        self.threads.record_raw_death = self._raw_thread_died
        self.logs = LogObserver(self.ring, self.exceptions)
        self.lag = LagObserver(self.ring, lag_threshold_s)
        self.samples = SampleObserver(self.ring)
        self.gc = GcPauseObserver()
        self.started_at: float | None = None
        self._owners: set[str] = set()
        self._lock = threading.RLock()
        self._flush_lock = threading.Lock()
        self._task: asyncio.Task[None] | None = None
        self._sampler: Any = None

    # -- lifecycle ------------------------------------------------------------------------

    def start(
        self,
        owner: str = "api",
        *,
        shell: Any = None,
        sample_interval: float | None = SAMPLE_INTERVAL,
    ) -> None:
        """Install the observers (once) and note `owner`; idempotent."""
        if sample_interval is not None:  # checked before anything is installed
            sampling_interval(sample_interval, "sample_interval")
        with self._lock:
            if not self._owners:
                self.started_at = time.time()
                self.threads.install()
                self.exceptions.install(_shell() if shell is None else shell)
                self.logs.install()
                self.gc.install()
            else:
                self.exceptions.hook_shell(shell)
            self._owners.add(owner)
            self._start_tick()
            self.start_sampler(sample_interval)

    def start_sampler(self, interval: float | None) -> None:
        """Sample the runtime skill's snapshot into the metrics store every `interval` s (the
        history's metrics; None: only runs' snapshots are kept). Idempotent."""
        from lensbook.sampling import Sampler, store
        from lensbook.skills import resolve_skill

        store.listen()
        with self._lock:
            if interval is not None and self._sampler is None:
                self._sampler = Sampler(
                    [resolve_skill("runtime")], interval=interval, on_sample=self.samples.observe
                )
                self._sampler.start()

    def stop(self, owner: str | None = None) -> None:
        """Drop `owner` (every owner if None); with none left, remove every hook."""
        with self._lock:
            if owner is None:
                self._owners.clear()
            else:
                self._owners.discard(owner)
            if self._owners:
                return
            if self._sampler is not None:
                self._sampler.stop()
                self._sampler = None
            self._stop_tick()
            self.logs.remove()
            self.gc.remove()
            self.exceptions.remove()
            self.threads.remove()
            self.lag.clear()
        self.flush()  # what was counted until now stays readable

    def _raw_thread_died(self, exc: BaseException, name: str) -> dict[str, Any] | None:
        # a ``_thread`` thread's exception never reaches threading.excepthook: counted here as
        # one that ended a thread
        event = self.exceptions.record(exc, "thread", uncaught=True, source=name)
        return event.detail if event is not None else None

    @property
    def recording(self) -> bool:
        return bool(self._owners)

    @property
    def owners(self) -> frozenset[str]:
        return frozenset(self._owners)

    # -- the tick on the lens loop ------------------------------------------------------------

    def _start_tick(self) -> None:
        from lensbook import _loop

        task = self._task
        if task is not None and not task.done():
            return
        self._task = None
        _loop.call_soon(self._create_task)

    def _create_task(self) -> None:
        if (self._task is None or self._task.done()) and self._owners:
            self._task = asyncio.get_running_loop().create_task(
                self._run(), name="lensbook-recorder"
            )

    def _stop_tick(self) -> None:
        from lensbook import _loop

        task, self._task = self._task, None
        if task is not None and _loop.is_running():
            with contextlib.suppress(RuntimeError):
                task.get_loop().call_soon_threadsafe(task.cancel)

    async def _run(self) -> None:
        lens = asyncio.get_running_loop()
        next_flush = 0.0
        while True:
            now = time.monotonic()
            if now >= next_flush:
                next_flush = now + self.flush_interval_s
                try:
                    self._find_loops(lens)
                    self.flush()
                except Exception:  # a failing flush must not end the recorder
                    pass
            if self.lag.watching:
                self.lag.tick(lens)
                interval = self.lag_interval_s
            else:
                interval = max(next_flush - time.monotonic(), 0.05)
            expected = time.monotonic() + interval
            await asyncio.sleep(interval)
            self.lag.record_own_lag(time.monotonic() - expected)

    def _find_loops(self, lens: asyncio.AbstractEventLoop) -> None:
        from lensbook.recorder.loops import known_loops

        loops = known_loops()
        self.exceptions.hook_loops(loops)
        self.lag.set_loops(loops, lens)

    def add(self, kind: str, source: str, detail: dict[str, Any]) -> HistoryEvent | None:
        """Write one event that a skill observed on demand (a tracer window), redacted like
        every event, while recording; None when not recording."""
        if not self._owners:
            return None
        event = make_event(kind, source, detail)
        self.ring.add(event)
        return event

    # -- reading --------------------------------------------------------------------------

    def flush(self) -> None:
        """Turn the observers' counters into rate events now and drop events past the age cap."""
        with self._flush_lock:
            now = time.time()
            self.ring.extend(self.exceptions.flush(now))
            self.ring.extend(self.logs.flush(now))
            self.ring.extend(self.threads.flush(now))
            self.ring.extend(self.gc.flush(now))
            self.ring.prune(now)

    def events(
        self,
        since: float | None = None,
        kinds: Collection[str] | None = None,
        limit: int | None = None,
    ) -> list[HistoryEvent]:
        self.flush()
        return self.ring.events(since, kinds, limit)

    def clear(self) -> None:
        """Forget the history and the counters (the hooks stay as they are)."""
        with self._flush_lock:
            self.exceptions.clear()
            self.logs.clear()
            self.threads.clear()
            self.samples.clear()
            self.gc.clear()
            self.ring.clear()


recorder = Recorder()
