"""Loop-lag observer: how late each known event loop runs a callback, and what blocked it.

Every tick (run on the lens loop, ~1 s while there are loops to watch) a callback is posted to
each loop lensbook knows (`lensbook.recorder.loops.known_loops`: registered loops and loops running
in any thread) and the lens loop arms a timer at the threshold. If the callback has not run by
then, the loop's thread is blocked *now*, so its stack is sampled (`sys._current_frames()`, a few
microseconds): the innermost coroutine frame names the coroutine, the innermost frame and its
source line name the blocking call (``time.sleep(1.5)``, ``requests.get(url)``). When the
callback finally runs, it records one ``loop_lag`` event with the lag and that sample. A loop
still blocked after `STILL_BLOCKED_S` gets its event then, marked ``still_blocked``.

The lens loop's own lateness is measured from its tick (no stack: blocking it is lensbook's bug).

This is the process's one heartbeat: the asyncio skill's snapshot also pings through it
(`ping`, at most one ping in flight per loop, whoever posted it) and reads each loop's recent
lags (`last_lag`) and how long a pending ping has waited (`unanswered`).
"""

from __future__ import annotations

import asyncio
import contextlib
import inspect
import linecache
import threading
import time
import types
import weakref
from collections import deque
from typing import Any

from lensbook.recorder.event import make_event
from lensbook.recorder.frames import stack_of, where
from lensbook.recorder.ring import HistoryRing
from lensbook.skills._frames import back
from lensbook.skills._stacks import current_frames
from lensbook.skills.redact import clip

__all__ = ["DEFAULT_THRESHOLD_S", "LagObserver"]

DEFAULT_THRESHOLD_S = 0.1
STILL_BLOCKED_S = 10.0
OWN_LAG_S = 0.5
_COROUTINE_FLAGS = inspect.CO_COROUTINE | inspect.CO_ASYNC_GENERATOR | inspect.CO_ITERABLE_COROUTINE


def loop_label(loop: asyncio.AbstractEventLoop) -> tuple[str, str]:
    """(source label, thread name) of a loop."""
    ident = getattr(loop, "_thread_id", None)  # set by BaseEventLoop while it runs
    thread = ""
    if isinstance(ident, int):
        for t in threading.enumerate():
            if t.ident == ident:
                thread = t.name
                break
    return f"loop {id(loop):#x}" + (f" in {thread}" if thread else ""), thread


def blocked_at(frame: types.FrameType | None) -> dict[str, Any]:
    """What a loop's thread is doing: the coroutine it is in and the call it is blocked in."""
    if frame is None:
        return {}
    out: dict[str, Any] = {"stack": stack_of(frame)}
    code = frame.f_code
    line = linecache.getline(code.co_filename, frame.f_lineno or 0).strip()
    out["where"] = where(code, frame.f_lineno)
    out["function"] = getattr(code, "co_qualname", code.co_name)
    out["blocking_call"] = clip(line, 160) if line else out["function"]
    f: types.FrameType | None = frame
    while f is not None:
        if f.f_code.co_flags & _COROUTINE_FLAGS:
            out["coroutine"] = getattr(f.f_code, "co_qualname", f.f_code.co_name)
            out["coroutine_where"] = where(f.f_code, f.f_lineno)
            break
        f = back(f)
    return out


class _Ping:
    __slots__ = ("done", "lock", "loop", "posted", "reported", "sample", "sampled_at")

    def __init__(self, loop: asyncio.AbstractEventLoop) -> None:
        self.loop: weakref.ref[asyncio.AbstractEventLoop] = weakref.ref(loop)
        self.posted = time.monotonic()
        self.sample: dict[str, Any] | None = None
        self.sampled_at = 0.0
        self.done = False
        self.reported = False
        self.lock = threading.Lock()


class LagObserver:
    """Pings known loops and records a ``loop_lag`` event when one answers late."""

    def __init__(self, ring: HistoryRing, threshold_s: float = DEFAULT_THRESHOLD_S) -> None:
        self.ring = ring
        self.threshold_s = threshold_s
        self._pending: dict[int, _Ping] = {}
        self._loops: list[weakref.ref[asyncio.AbstractEventLoop]] = []
        self._lock = threading.Lock()
        #: id(loop) -> the lags (s) of its last answered pings
        self._lags: dict[int, deque[float]] = {}

    def set_loops(self, loops: list[asyncio.AbstractEventLoop], lens: Any) -> None:
        self._loops = [weakref.ref(loop) for loop in loops if loop is not lens]

    @property
    def watching(self) -> bool:
        return any((ref() is not None) for ref in self._loops)

    def tick(self, lens: asyncio.AbstractEventLoop) -> None:
        """Ping every watched loop (on the lens loop); a loop still busy with the last ping is
        checked instead."""
        now = time.monotonic()
        for ref in self._loops:
            loop = ref()
            if loop is None or loop.is_closed() or not loop.is_running():
                continue
            ping = self._pending.get(id(loop))
            if ping is not None and ping.loop() is loop and not ping.done:
                self._check_still_blocked(ping, loop, now)
                continue
            ping = self._post(loop)
            if ping is not None:
                lens.call_later(self.threshold_s, self._sample_if_late, ping)

    def _post(self, loop: asyncio.AbstractEventLoop) -> _Ping | None:
        """Post a ping to `loop` unless one is in flight; the new ping, or None."""
        with self._lock:
            ping = self._pending.get(id(loop))
            if ping is not None and ping.loop() is loop and not ping.done:
                return None
            ping = self._pending[id(loop)] = _Ping(loop)
        try:
            loop.call_soon_threadsafe(self._pong, ping)
        except RuntimeError:  # closed meanwhile
            with self._lock:
                self._pending.pop(id(loop), None)
            return None
        return ping

    def ping(self, loop: asyncio.AbstractEventLoop) -> None:
        """Post a ping to `loop` now (from any thread; none if one is in flight). When the lens
        loop runs, a late answer gets its stack sample as the tick's pings do."""
        if not loop.is_running():
            return
        from lensbook import _loop

        ping = self._post(loop)
        if ping is None:
            return
        if loop is getattr(_loop, "_loop", None):
            ping.reported = True  # the lens loop's lateness is the tick's to tell, unsampled
            return
        if _loop.is_running():
            with contextlib.suppress(RuntimeError):
                _loop.call_soon(self._arm, ping)

    def _arm(self, ping: _Ping) -> None:
        # on the lens loop: the sample is taken at the threshold after the ping was posted
        late = max(self.threshold_s - (time.monotonic() - ping.posted), 0.0)
        asyncio.get_running_loop().call_later(late, self._sample_if_late, ping)

    def last_lag(self, loop: asyncio.AbstractEventLoop) -> float | None:
        """The lag (s) of `loop`'s last answered ping, None before any."""
        with self._lock:
            lags = self._lags.get(id(loop))
            return lags[-1] if lags else None

    def unanswered(self, loop: asyncio.AbstractEventLoop) -> float:
        """Seconds `loop`'s pending ping has waited (0 when none is pending)."""
        with self._lock:
            ping = self._pending.get(id(loop))
        if ping is None or ping.loop() is not loop or ping.done:
            return 0.0
        return time.monotonic() - ping.posted

    def _sample_if_late(self, ping: _Ping) -> None:
        loop = ping.loop()
        if loop is None:
            return
        with ping.lock:
            if ping.done or ping.sample is not None:
                return
            ident = getattr(loop, "_thread_id", None)
            frame = current_frames().get(ident) if isinstance(ident, int) else None
            ping.sample = blocked_at(frame)
            ping.sampled_at = time.monotonic()

    def _pong(self, ping: _Ping) -> None:
        # runs on the watched loop's own thread, when it gets round to it
        lag = time.monotonic() - ping.posted
        loop = ping.loop()
        if loop is not None:
            with self._lock:
                lags = self._lags.get(id(loop))
                if lags is None:
                    lags = self._lags[id(loop)] = deque(maxlen=20)
                lags.append(lag)
        with ping.lock:
            ping.done = True
            if lag < self.threshold_s or ping.reported:
                return
            ping.reported = True
            sample = ping.sample
        if loop is not None:
            self._record(loop, lag, sample, still_blocked=False)

    def _check_still_blocked(
        self, ping: _Ping, loop: asyncio.AbstractEventLoop, now: float
    ) -> None:
        waited = now - ping.posted
        if waited < STILL_BLOCKED_S:
            return
        with ping.lock:
            if ping.reported or ping.done:
                return
            ping.reported = True
            sample = ping.sample
        self._record(loop, waited, sample, still_blocked=True)

    def _record(
        self,
        loop: asyncio.AbstractEventLoop,
        lag: float,
        sample: dict[str, Any] | None,
        *,
        still_blocked: bool,
    ) -> None:
        source, thread = loop_label(loop)
        detail: dict[str, Any] = {
            "lag_ms": round(lag * 1000, 1),
            "threshold_ms": round(self.threshold_s * 1000, 1),
            "thread": thread,
            "still_blocked": still_blocked,
            "sampled": bool(sample),
        }
        if sample:
            detail.update(sample)
        self.ring.add(make_event("loop_lag", source, detail))

    def record_own_lag(self, late_s: float) -> None:
        """The lens loop ran its tick `late_s` seconds late (a busy machine makes a sleeping
        thread a little late: only half a second counts for lensbook's own loop)."""
        if late_s >= max(self.threshold_s, OWN_LAG_S):
            self.ring.add(
                make_event(
                    "loop_lag",
                    "lens loop",
                    {
                        "lag_ms": round(late_s * 1000, 1),
                        "threshold_ms": round(self.threshold_s * 1000, 1),
                        "thread": "lensbook-loop",
                        "still_blocked": False,
                        "sampled": False,
                    },
                )
            )

    def clear(self) -> None:
        with self._lock:
            self._pending.clear()
            self._lags.clear()
