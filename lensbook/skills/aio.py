"""The `asyncio` skill: tasks on every event loop lensbook knows, stuck tasks, loop lag.

Loops lensbook knows:

- loops registered with `register_loop(loop)` (held by weak reference);
- the lens loop, when it runs;
- every loop running in some thread of the process, found by its ``run_forever`` frame (the
  kernel's loop, a caller of the async API, an application's loop in a background thread).

Tasks are read with `asyncio.all_tasks(loop)`, which is not thread-safe for another thread's
loop: probes schedule that read on the loop itself and wait a bounded time for it (falling back
to a direct read, retried when the task set changes under it); the cheap snapshot reads directly.
A task's age is the time since lensbook first saw it (asyncio records no creation time), and a
task "makes no progress" while it stays suspended at the same point awaiting the same future.
Lag is measured with the flight recorder's heartbeat (`lensbook.recorder.aio`, the one in the
process): a callback posted with `call_soon_threadsafe` and timed until it runs; the skill
starts the recorder as owner "asyncio" on first use and drops that owner on `close()`. Slow
callbacks are only measured by asyncio in debug mode; a logging handler on the ``asyncio``
logger (added on first use, removed by `AsyncioSkill.close()`) collects them.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import functools
import inspect
import logging
import re
import statistics
import threading
import time
import types
import weakref
from collections import deque
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any, ClassVar, TypeVar

from lensbook.recorder.loops import is_registered as _is_registered
from lensbook.recorder.loops import known_loops, register_loop, unregister_loop
from lensbook.recorder.loops import lens_loop as _lens_loop
from lensbook.skills import _observers, intrusion
from lensbook.skills._frames import back, short_path, type_names
from lensbook.skills._frames import origin as code_origin
from lensbook.skills._heap import collections_off
from lensbook.skills._stacks import current_frames, format_stack, source_line
from lensbook.skills._stacks import qualname as _qualname
from lensbook.skills.base import Skill, probe
from lensbook.skills.history_rules import PastLoopStalls
from lensbook.skills.redact import clip
from lensbook.skills.rules import CountGrowth, Evidence, Finding, ProbeCall, Rule
from lensbook.skills.untrusted import from_process

__all__ = ["AsyncioSkill", "known_loops", "register_loop", "unregister_loop"]

#: the owner name the skill starts the flight recorder as
OWNER = "asyncio"


T = TypeVar("T")

#: kinds of waits that only end when someone else acts: a task parked in one too long is stuck
STUCK_KINDS = frozenset(
    {"event", "condition", "lock", "semaphore", "barrier", "future", "queue_join"}
)
#: the innermost asyncio function a task is suspended in -> the kind of wait
_ASYNCIO_WAITS = {
    "sleep": "sleep",
    "Event.wait": "event",
    "Condition.wait": "condition",
    "Condition.wait_for": "condition",
    "Lock.acquire": "lock",
    "Semaphore.acquire": "semaphore",
    "BoundedSemaphore.acquire": "semaphore",
    "Barrier.wait": "barrier",
    "Barrier._block": "barrier",
    "Barrier._wait": "barrier",
    "Queue.get": "queue_get",
    "Queue.put": "queue_put",
    "Queue.join": "queue_join",
    "wait": "wait",
    "_wait": "wait",
    "wait_for": "wait_for",
    "as_completed": "wait",
    "to_thread": "executor",
    "TaskGroup.__aexit__": "taskgroup",
    "TaskGroup._aexit": "taskgroup",
    "Timeout.__aexit__": "timeout",
}
#: an await whose source names the end of the program's life waits by design, not stuck
_LIFECYCLE = re.compile(r"shutdown|stop|exit|quit|terminat|clos|cancel", re.I)
_MAX_TRACKED = 256  # user tasks whose await point a snapshot records
_REASON_LAG = re.compile(r"lag|slow|block|freez|frozen|respon|latenc|stall|hang", re.I)

# -- loops ----------------------------------------------------------------------------------


def _loop_thread(loop: asyncio.AbstractEventLoop) -> int | None:
    ident = getattr(loop, "_thread_id", None)  # set by BaseEventLoop while it runs
    return ident if isinstance(ident, int) else None


def _loop_label(loop: asyncio.AbstractEventLoop) -> str:
    if loop is _lens_loop():
        source = "lens loop"
    elif _is_registered(loop):
        source = "registered loop"
    else:
        source = "loop"
    ident = _loop_thread(loop)
    names = {t.ident: t.name for t in threading.enumerate()}
    where = f" in thread {names.get(ident, ident)!r}" if ident is not None else " (not running)"
    return f"{source}{where} ({type_names(type(loop))[2]} at {id(loop):#x})"


#: frames of a loop's thread `_blocked_by` looks at, innermost first (a deep recursion's
#: stack is not walked whole at every check)
_BLOCKED_BY_DEPTH = 300


def _blocked_by(frame: types.FrameType | None) -> str:
    """Why a loop's thread does not run its callbacks, from its stack: "lensbook" (it waits for
    a lensbook call it made: not a fault of the program), "cell" (an IPython cell is running on
    the kernel's loop, as cells do) or "code" (synchronous code blocks the loop)."""
    cell = False
    f = frame
    depth = 0
    while f is not None and depth < _BLOCKED_BY_DEPTH:
        depth += 1
        code = f.f_code
        origin = code_origin(code.co_filename)
        if origin == "lensbook":
            return "lensbook"
        if code.co_name == "run_code" and "IPython" in code.co_filename:
            cell = True
        f = back(f)
    return "cell" if cell else "code"


def _all_tasks(loop: asyncio.AbstractEventLoop) -> list[asyncio.Task[Any]]:
    """`asyncio.all_tasks(loop)` from any thread, retried when the task set changes under it."""
    for _ in range(5):
        try:
            return list(asyncio.all_tasks(loop))
        except RuntimeError:  # "Set changed size during iteration" (another thread's loop)
            time.sleep(0)
    return []


def _on_loop(loop: asyncio.AbstractEventLoop, fn: Callable[[], T], timeout: float) -> tuple[T, str]:
    """Run `fn` on the loop's own thread and wait at most `timeout`; else run it here.

    Returns the value and how it was read.
    """
    ident = _loop_thread(loop)
    if not loop.is_running() or ident is None or ident == threading.get_ident():
        return fn(), "direct"
    future: concurrent.futures.Future[T] = concurrent.futures.Future()

    def run() -> None:
        if future.set_running_or_notify_cancel():
            try:
                future.set_result(fn())
            except BaseException as exc:
                future.set_exception(exc)

    try:
        loop.call_soon_threadsafe(run)
        return future.result(timeout), "on the loop"
    except RuntimeError:  # closed meanwhile
        return fn(), "direct"
    except concurrent.futures.TimeoutError:
        future.cancel()
        return fn(), f"direct (the loop did not run a callback within {timeout:g} s)"


# -- tasks ----------------------------------------------------------------------------------


@dataclass
class _Seen:
    first: float
    mark: tuple[Any, ...] | None = None
    mark_since: float = 0.0


def _await_frames(coro: Any, limit: int = 30) -> tuple[list[types.FrameType], Any]:
    """The frames of a suspended coroutine chain (outermost first) and the object it waits on
    last (a future, a generator-based awaitable), following cr_await / gi_yieldfrom.

    Read with collections put off: a coroutine may be running in its loop's thread, and its
    frame object is made on first read (see `lensbook.skills._stacks`)."""
    with collections_off():
        return _await_chain(coro, limit)


def _await_chain(coro: Any, limit: int) -> tuple[list[types.FrameType], Any]:
    frames: list[types.FrameType] = []
    obj = coro
    last: Any = None
    while obj is not None and len(frames) < limit:
        frame = (
            getattr(obj, "cr_frame", None)
            or getattr(obj, "gi_frame", None)
            or getattr(obj, "ag_frame", None)
        )
        if not isinstance(frame, types.FrameType):
            last = obj
            break
        frames.append(frame)
        obj = (
            getattr(obj, "cr_await", None)
            or getattr(obj, "gi_yieldfrom", None)
            or getattr(obj, "ag_await", None)
        )
    return frames, last


def _is_asyncio(code: types.CodeType) -> bool:
    path = code.co_filename.replace("\\", "/")
    return "/asyncio/" in path and code_origin(code.co_filename) == "stdlib"


@dataclass
class _Wait:
    kind: str
    awaiting: str
    site: types.FrameType | None  # the innermost frame outside asyncio: where the await is


def _classify(task: asyncio.Task[Any], frames: list[types.FrameType], last: Any) -> _Wait:
    waiter = getattr(task, "_fut_waiter", None)  # the future the task is parked on
    coro = task.get_coro()
    if inspect.iscoroutine(coro) and inspect.getcoroutinestate(coro) == inspect.CORO_CREATED:
        return _Wait("not_started", "never ran yet: the loop has not got to it", None)
    site = next((f for f in reversed(frames) if not _is_asyncio(f.f_code)), None)
    inner_asyncio = next((f for f in reversed(frames) if _is_asyncio(f.f_code)), None)
    if inner_asyncio is not None and (
        site is None or frames.index(inner_asyncio) > frames.index(site)
    ):
        name = _qualname(inner_asyncio.f_code)
        kind = _ASYNCIO_WAITS.get(name)
        if kind is None and "streams" in inner_asyncio.f_code.co_filename:
            kind = "stream_io"
        kind = kind or "asyncio"
        return _Wait(kind, f"asyncio {name}()", site)
    if waiter is not None and issubclass(type(waiter), asyncio.Task):
        return _Wait("task", f"task {waiter.get_name()!r}", site)
    if waiter is not None:
        wtype = type_names(type(waiter))[2]
        if wtype == "_GatheringFuture":
            return _Wait("gather", "asyncio.gather(...)", site)
        text = source_line(site.f_code.co_filename, site.f_lineno) if site is not None else ""
        if "run_in_executor" in text or "wrap_future" in text:
            return _Wait("executor", f"{wtype} of an executor job", site)
        origin = code_origin(site.f_code.co_filename) if site is not None else "unknown"
        if origin == "user":
            return _Wait("future", f"a bare {wtype} (nothing has set its result)", site)
        return _Wait(
            "library", f"{wtype} in {short_path(site.f_code.co_filename)}" if site else wtype, site
        )
    if last is not None:
        return _Wait("other", type_names(type(last))[2], site)
    return _Wait("running", "running or ready to run", site)


def _mark(frames: list[types.FrameType], task: asyncio.Task[Any]) -> tuple[Any, ...]:
    """Where a task is suspended: moves whenever it makes progress."""
    waiter = getattr(task, "_fut_waiter", None)
    return (*((id(f.f_code), f.f_lasti) for f in frames), id(waiter))


def _is_user_task(frames: list[types.FrameType]) -> bool:
    return bool(frames) and code_origin(frames[0].f_code.co_filename) == "user"


def _coro_name(task: asyncio.Task[Any], frames: list[types.FrameType]) -> str:
    coro = task.get_coro()
    name = getattr(coro, "__qualname__", None)
    if isinstance(name, str):
        return name
    return _qualname(frames[0].f_code) if frames else type_names(type(coro))[2]


# -- slow callbacks -------------------------------------------------------------------------


class _SlowCallbacks:
    """Keeps asyncio's debug-mode "Executing <handle> took N seconds" warnings (an observer of
    lensbook's logging tap, not a handler: the asyncio logger's handlers, and whether logging's
    last resort prints its errors, stay the program's)."""

    def __init__(self) -> None:
        self.seen: deque[tuple[float, int | None, str, float]] = deque(maxlen=200)
        self.total = 0

    def observe(self, record: logging.LogRecord) -> None:
        if record.name != "asyncio" or record.levelno < logging.WARNING:
            return
        msg = record.msg
        if not isinstance(msg, str) or not msg.startswith("Executing "):
            return
        if not isinstance(record.args, tuple) or len(record.args) != 2:
            return
        args: Any = record.args
        try:
            seconds = float(args[1])
        except (TypeError, ValueError):
            return
        handle = clip(str(args[0]), 200)
        self.total += 1
        self.seen.append((record.created, record.thread, handle, seconds))


# -- the skill ------------------------------------------------------------------------------


class AsyncioSkill(Skill):
    id = "asyncio"
    title = "asyncio"
    description = "Event loops and their tasks: stuck tasks, loop lag, slow callbacks"
    system_prompt = (
        "You are the asyncio operator of a live Python process. You see every event loop "
        "lensbook knows (the lens loop, registered loops, loops running in any thread), their "
        "tasks with coroutine name, age and the point each is suspended at, the loops' lag "
        "(a heartbeat callback timed until it runs) and slow callbacks (asyncio debug mode). "
        "Look for tasks stuck awaiting something that never comes (an Event nobody sets, a "
        "future nobody resolves, a lock never released: name the coroutine and the await), "
        "for loops blocked by synchronous code (a ping that is not answered: name what the "
        "loop's thread is doing), and for lag. Tasks idle in asyncio.sleep, a queue get or a "
        "socket read are normal. lensbook's own tasks live on the lens loop."
    )
    # what the coordinator and the watcher know of it (see `Skill`)
    keywords = (
        "slow",
        "latency",
        "lag",
        "loop",
        "async",
        "await",
        "task",
        "sluggish",
        "stall",
        "unresponsive",
    )
    families: ClassVar[dict[str, tuple[str, ...]]] = {
        "event-loop lag": ("event_loop_lag", "event_loop_blocked", "slow_callbacks", "stuck_task")
    }
    investigates = ("event-loop lag",)
    counters = frozenset({"slow_callbacks"})
    watched = True

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._seen: weakref.WeakKeyDictionary[asyncio.Task[Any], _Seen] = (
            weakref.WeakKeyDictionary()
        )
        self._slow: _SlowCallbacks | None = None
        self._change: intrusion.Change | None = None

    @property
    def _heartbeat(self) -> Any:
        from lensbook.recorder.api import recorder

        return recorder.lag

    def _hook(self) -> None:
        """Collect asyncio's slow-callback warnings from now on and start the flight
        recorder, whose heartbeat the skill reads (idempotent)."""
        from lensbook.recorder.api import recorder

        with self._lock:
            if self._slow is None:
                self._slow = _SlowCallbacks()
                _observers.observe(self._slow.observe)
                recorder.start(OWNER, sample_interval=None)
                if self._change is None:  # removed by lensbook.stop() and at exit
                    self._change = intrusion.switch_on(
                        "asyncio slow-callback handler", self.close, max_seconds=None, session=True
                    )

    def close(self) -> None:
        """Remove the logging handler, drop the skill's hold on the recorder; forget the tasks
        seen."""
        from lensbook.recorder.api import recorder

        with self._lock:
            if self._slow is not None:
                _observers.stop_observing(self._slow.observe)
                self._slow = None
                recorder.stop(OWNER)
            self._seen = weakref.WeakKeyDictionary()
            change, self._change = self._change, None
        if change is not None:
            change.forget()

    def _observe(
        self, task: asyncio.Task[Any], now: float, frames: list[types.FrameType] | None
    ) -> _Seen:
        with self._lock:
            seen = self._seen.get(task)
            if seen is None:
                seen = self._seen[task] = _Seen(first=now)
            if frames is not None:
                mark = _mark(frames, task)
                if mark != seen.mark:
                    seen.mark, seen.mark_since = mark, now
            return seen

    @staticmethod
    def _waits_for_lensbook(loop: asyncio.AbstractEventLoop) -> bool:
        ident = _loop_thread(loop)
        frame = current_frames().get(ident) if ident is not None else None
        return _blocked_by(frame) == "lensbook"

    # -- snapshot ---------------------------------------------------------------------------

    def snapshot(self) -> dict[str, Any]:
        """Cost: ~0.3 ms + ~0.5 µs per task, + ~5 µs for each of the first 256 tasks in user
        code (their await point is recorded); posts one heartbeat callback per running loop.
        """
        self._hook()
        now = time.monotonic()
        loops = known_loops()
        lens = _lens_loop()
        tasks = user = stalled = tracked = 0
        oldest = 0.0
        lag = unanswered = 0.0
        for loop in loops:
            if loop.is_running():
                self._heartbeat.ping(loop)
                lag = max(lag, self._heartbeat.last_lag(loop) or 0.0)
                waited = self._heartbeat.unanswered(loop)
                if waited >= 0.1 and self._waits_for_lensbook(loop):
                    waited = 0.0  # its thread waits for a lensbook call: not the program's fault
                unanswered = max(unanswered, waited)
            for task in _all_tasks(loop):
                tasks += 1
                coro = task.get_coro()
                code = getattr(coro, "cr_code", None) or getattr(coro, "gi_code", None)
                if loop is lens or not isinstance(code, types.CodeType):
                    continue
                if code_origin(code.co_filename) != "user":
                    continue
                user += 1
                if tracked >= _MAX_TRACKED:  # bounded: the rest are only counted
                    continue
                tracked += 1
                frames, _ = _await_frames(coro, 8)
                seen = self._observe(task, now, frames)
                oldest = max(oldest, now - seen.first)
                if seen.mark is not None and now - seen.mark_since >= 2.0:
                    stalled += 1
        slow = self._slow
        return {
            "loops": len(loops),
            "loops_running": sum(1 for loop in loops if loop.is_running()),
            "app_loops_running": sum(1 for lp in loops if lp.is_running() and lp is not lens),
            "loops_debug": sum(1 for loop in loops if loop.get_debug()),
            "tasks": tasks,
            "user_tasks": user,
            "oldest_user_task_s": round(oldest, 2),
            "user_tasks_without_progress_2s": stalled,
            "loop_lag_ms": round(lag * 1000, 2),
            "loop_unanswered_s": round(unanswered, 2),
            "slow_callbacks": slow.total if slow is not None else 0,
        }

    # -- probes -----------------------------------------------------------------------------

    @probe
    def loops(self) -> list[dict[str, Any]]:
        """The event loops lensbook knows: where each runs, its state, tasks and last lag.

        Cost: ~0.1 ms per loop (a task count read directly, no callback is posted).
        """
        self._hook()
        lens = _lens_loop()
        rows = []
        for loop in known_loops():
            lag = self._heartbeat.last_lag(loop)
            rows.append(
                {
                    "loop": _loop_label(loop),
                    "running": loop.is_running(),
                    "debug": loop.get_debug(),
                    "slow_callback_duration_s": getattr(loop, "slow_callback_duration", None),
                    "tasks": len(_all_tasks(loop)),
                    "lensbook_own": loop is lens,
                    "last_lag_ms": None if lag is None else round(lag * 1000, 2),
                }
            )
        return rows

    def _census(
        self, include_lensbook: bool, stack_limit: int, wait: float
    ) -> tuple[list[dict[str, Any]], list[str]]:
        now = time.monotonic()
        lens = _lens_loop()
        rows: list[dict[str, Any]] = []
        notes: list[str] = []
        for loop in known_loops():
            if loop is lens and not include_lensbook:
                continue
            tasks, how = _on_loop(loop, functools.partial(_all_tasks, loop), wait)
            if how.startswith("direct ("):
                notes.append(f"{_loop_label(loop)}: tasks read {how}")
            label = _loop_label(loop)
            for task in tasks:
                frames, last = _await_frames(task.get_coro())
                seen = self._observe(task, now, frames)
                wait_ = _classify(task, frames, last)
                site = wait_.site
                code = source_line(site.f_code.co_filename, site.f_lineno) if site else ""
                if wait_.kind in STUCK_KINDS and _LIFECYCLE.search(code):
                    wait_.kind = "lifecycle"  # e.g. `await shutdown.wait()` in a service's main
                stack = [
                    f"{short_path(f.f_code.co_filename)}:{f.f_lineno} in {_qualname(f.f_code)}"
                    for f in frames[-stack_limit:]
                ]
                first = frames[0].f_code if frames else None
                rows.append(
                    {
                        "task": from_process(task.get_name()),
                        "coroutine": _coro_name(task, frames),
                        "defined_at": f"{short_path(first.co_filename)}:{first.co_firstlineno}"
                        if first
                        else None,
                        "state": "cancelling"
                        if getattr(task, "cancelling", lambda: 0)()
                        else "pending",
                        "age_s": round(now - seen.first, 2),
                        "same_await_s": round(now - seen.mark_since, 2),
                        "kind": wait_.kind,
                        "awaiting": wait_.awaiting,
                        "await_at": (
                            f"{short_path(site.f_code.co_filename)}:{site.f_lineno} in "
                            f"{_qualname(site.f_code)}"
                        )
                        if site is not None
                        else None,
                        "code": code,
                        "user": _is_user_task(frames),
                        "loop": label,
                        "stack": stack,
                    }
                )
        return rows, notes

    @probe(max_chars=8000)
    def tasks(
        self,
        limit: int = 20,
        stack_limit: int = 4,
        include_lensbook: bool = False,
        min_age_s: float = 0.0,
    ) -> dict[str, Any]:
        """Pending tasks on every known loop: coroutine, age, state, and what each awaits where.

        Identical tasks (same coroutine suspended at the same point) are grouped with a count;
        user code first, oldest first. Age counts from when lensbook first saw the task.

        Args:
            limit: at most this many groups.
            stack_limit: coroutine frames kept per task, innermost last (1 to 20).
            include_lensbook: also list lensbook's own tasks on the lens loop.
            min_age_s: only tasks pending at least this long (since lensbook first saw them).

        Cost: one callback per loop to read its task set (waits at most 0.5 s per loop), then
        ~10 µs per task.
        """
        self._hook()
        rows, notes = self._census(include_lensbook, min(max(stack_limit, 1), 20), 0.5)
        groups: dict[tuple[Any, ...], dict[str, Any]] = {}
        for row in rows:
            if row["age_s"] < min_age_s:
                continue
            key = (row["loop"], row["coroutine"], row["await_at"], row["kind"])
            group = groups.get(key)
            if group is None:
                groups[key] = dict(row, count=1)
            else:
                group["count"] += 1
                group["age_s"] = max(group["age_s"], row["age_s"])
        ordered = sorted(groups.values(), key=lambda g: (not g["user"], -g["age_s"]))
        return {
            "tasks": len(rows),
            "user_tasks": sum(1 for r in rows if r["user"]),
            "pending_at_least_min_age": sum(g["count"] for g in ordered),
            "groups": ordered[: max(limit, 1)],
            "groups_left_out": max(0, len(ordered) - max(limit, 1)),
            "notes": notes,
        }

    @probe
    def stuck(self, min_age_s: float = 2.0, limit: int = 10) -> dict[str, Any]:
        """Tasks suspended at the same await, on the same future, for at least `min_age_s`,
        in waits that only end when someone else acts (an Event, a Condition, a lock, a
        semaphore, a bare future, Queue.join).

        Tasks idle in sleep, a queue get, a socket read or awaiting other tasks are counted, not
        listed. The time counts from when lensbook first saw the task at that point, so call it
        after a snapshot taken a few seconds earlier.

        Args:
            min_age_s: seconds without progress to count as stuck.
            limit: at most this many stuck tasks.

        Cost: as `asyncio_tasks`.
        """
        self._hook()
        rows, notes = self._census(False, 6, 0.5)
        stuck = [
            r
            for r in rows
            if r["kind"] in STUCK_KINDS and r["same_await_s"] >= min_age_s and r["user"]
        ]
        stuck.sort(key=lambda r: -r["same_await_s"])
        idle: dict[str, int] = {}
        listed = {id(r) for r in stuck}
        for r in rows:
            if id(r) not in listed:
                idle[r["kind"]] = idle.get(r["kind"], 0) + 1
        return {
            "stuck": stuck[: max(limit, 1)],
            "stuck_count": len(stuck),
            "other_tasks_by_kind": idle,
            "tasks": len(rows),
            "min_age_s": min_age_s,
            "notes": notes,
        }

    @probe
    def lag(self, pings: int = 5, timeout_s: float = 1.0) -> dict[str, Any]:
        """Event-loop lag: how long a callback posted from another thread waits to run.

        A loop that does not answer within `timeout_s` is blocked; the probe then shows what its
        thread is doing (its stack), which names the blocking call.

        Args:
            pings: round trips per loop (1 to 20), 10 ms apart.
            timeout_s: how long to wait for one answer (0.05 to 2).

        Cost: up to pings x 10 ms, plus `timeout_s` for a blocked loop (loops are pinged in
        parallel); the loops wake once per ping.
        """
        self._hook()
        pings = min(max(pings, 1), 20)
        timeout_s = min(max(timeout_s, 0.05), 2.0)
        me = threading.get_ident()
        loops = [
            lp for lp in known_loops() if lp.is_running() and _loop_thread(lp) not in (None, me)
        ]
        lags: dict[int, list[float]] = {id(lp): [] for lp in loops}
        blocked: dict[int, float] = {}
        deadline = time.monotonic() + 4.0  # within the probe's budget whatever happens
        for _ in range(pings):
            live = [lp for lp in loops if id(lp) not in blocked]
            if not live or time.monotonic() > deadline:
                break
            answered = {id(lp): threading.Event() for lp in live}
            sent: dict[int, float] = {}
            arrived: dict[int, float] = {}
            for lp in live:

                def pong(
                    key: int = id(lp),
                    arrived: dict[int, float] = arrived,
                    answered: dict[int, threading.Event] = answered,
                ) -> None:
                    arrived[key] = time.perf_counter()
                    answered[key].set()

                sent[id(lp)] = time.perf_counter()
                try:
                    lp.call_soon_threadsafe(pong)
                except RuntimeError:
                    answered[id(lp)].set()
            for lp in live:
                key = id(lp)
                left = max(0.0, sent[key] + timeout_s - time.perf_counter())
                if answered[key].wait(left) and key in arrived:
                    lags[key].append(arrived[key] - sent[key])
                elif not answered[key].is_set():
                    blocked[key] = time.perf_counter() - sent[key]
            time.sleep(0.01)
        frames = current_frames()
        rows = []
        for lp in loops:
            values = lags[id(lp)]
            row: dict[str, Any] = {
                "loop": _loop_label(lp),
                "answered": len(values),
                "median_ms": round(statistics.median(values) * 1000, 2) if values else None,
                "max_ms": round(max(values) * 1000, 2) if values else None,
                "lensbook_own": lp is _lens_loop(),
            }
            if id(lp) in blocked:
                ident = _loop_thread(lp)
                frame = frames.get(ident) if ident else None
                row["unanswered_after_s"] = round(blocked[id(lp)], 3)
                row["blocked_by"] = _blocked_by(frame)
                row["blocked_in"] = format_stack(frame, 8)
            rows.append(row)
        return {
            "loops": rows,
            "pings": pings,
            "timeout_s": timeout_s,
            "note": "loops of the probe's own thread are not measurable from inside"
            if any(_loop_thread(lp) == me for lp in known_loops())
            else "",
        }

    @probe
    def slow_callbacks(self, limit: int = 10) -> dict[str, Any]:
        """Callbacks that held a loop longer than its slow_callback_duration (debug mode only).

        asyncio measures callbacks only on loops in debug mode (``loop.set_debug(True)`` or
        PYTHONASYNCIODEBUG=1); for other loops this says so, and `asyncio_lag` is the measure.
        Only warnings logged since the skill was first used are seen.

        Args:
            limit: at most this many of the slowest recent callbacks.

        Cost: microseconds (reads the handler's ring buffer of the last 200).
        """
        self._hook()
        slow = self._slow
        seen = list(slow.seen) if slow is not None else []
        loops = known_loops()
        threads = {t.ident: t.name for t in threading.enumerate()}
        debug = [
            {
                "loop": _loop_label(lp),
                "debug": lp.get_debug(),
                "slow_callback_duration_s": getattr(lp, "slow_callback_duration", None),
            }
            for lp in loops
        ]
        worst = sorted(seen, key=lambda s: -s[3])[: max(limit, 1)]
        return {
            "loops": debug,
            "measured": any(lp.get_debug() for lp in loops),
            "note": ""
            if any(lp.get_debug() for lp in loops)
            else "no known loop runs in debug mode, so asyncio measures no callback; "
            "use asyncio_lag, or loop.set_debug(True) to measure them",
            "total_seen": slow.total if slow is not None else 0,
            "slowest": [
                {
                    "seconds": round(s, 4),
                    "callback": from_process(handle),
                    "thread": from_process(threads[thread]) if thread in threads else thread,
                    "ago_s": round(time.time() - at, 1),
                }
                for at, thread, handle, s in worst
            ],
        }

    def rules(self) -> Sequence[Rule]:
        return (StuckTasks(), LoopLag(), SlowCallbacks(), TaskGrowth(), PastLoopStalls())


# -- rules for the offline investigator -----------------------------------------------------


class StuckTasks(Rule):
    """User tasks parked on an Event, a future or a lock across two snapshots."""

    name = "stuck_task"
    snapshots_needed = 2
    gap = 3.0
    min_age_s = 2.0

    def wants(self, ev: Evidence) -> Sequence[ProbeCall]:
        if len(ev.snapshots) >= 2 and ev.latest("user_tasks", 0):
            return [ProbeCall("asyncio_stuck", {"min_age_s": self.min_age_s})]
        return []

    def judge(self, ev: Evidence) -> Sequence[Finding]:
        result = ev.result("asyncio_stuck")
        if not isinstance(result, dict) or not result.get("stuck"):
            return []
        findings = []
        # tasks of one coroutine parked at one await are one finding, not one per task
        alike: dict[tuple[Any, ...], list[dict[str, Any]]] = {}
        for task in result["stuck"]:
            key = (task.get("loop"), task["coroutine"], task.get("await_at"), task["awaiting"])
            alike.setdefault(key, []).append(task)
        for same in list(alike.values())[:5]:
            task = same[0]
            code = f" `{task['code']}`" if task.get("code") else ""
            names = ", ".join(repr(t["task"]) for t in same[:3])
            who = (
                f"Task {names}"
                if len(same) == 1
                else f"{len(same)} tasks ({names}{', ...' if len(same) > 3 else ''})"
            )
            findings.append(
                Finding(
                    anomaly_type="stuck_task",
                    severity="warning",
                    context=(
                        f"{result.get('stuck_count')} of {result.get('tasks')} tasks have made no "
                        f"progress for at least {result.get('min_age_s')} s; loop: "
                        f"{task.get('loop')}"
                    ),
                    observation=(
                        f"{who} running coroutine {task['coroutine']} "
                        f"(defined at {task.get('defined_at')}) suspended for "
                        f"{task['same_await_s']} s at {task.get('await_at')}{code}, awaiting "
                        f"{task['awaiting']}."
                    ),
                    hypothesis=(
                        f"{task['coroutine']} waits for a signal ({task['kind']}) that never "
                        "comes: the code that should set or release it failed, never ran, or "
                        "signals another object or another loop. Check the producer, and await "
                        "with a timeout (asyncio.wait_for / asyncio.timeout)."
                    ),
                )
            )
        return findings


class LoopLag(Rule):
    """A loop that answers its heartbeat late, or not at all."""

    name = "event_loop_lag"
    warn_ms = 100.0

    def wants(self, ev: Evidence) -> Sequence[ProbeCall]:
        # a loop of the program runs: one snapshot's heartbeat says little (a blocked loop may
        # have answered between two blocking calls), and measuring costs ~50 ms when healthy
        if ev.latest("app_loops_running", 0):
            return [ProbeCall("asyncio_lag")]
        if ev.latest("loops_running", 0) and (
            ev.latest("loop_unanswered_s", 0.0) >= 0.5
            or ev.latest("loop_lag_ms", 0.0) >= self.warn_ms
            or _REASON_LAG.search(ev.reason)
        ):
            return [ProbeCall("asyncio_lag")]
        return []

    def judge(self, ev: Evidence) -> Sequence[Finding]:
        result = ev.result("asyncio_lag")
        if not isinstance(result, dict):
            return []
        findings = []
        for row in result.get("loops") or []:
            if row.get("blocked_by") == "lensbook":
                continue  # the loop's thread waits for this very investigation
            if row.get("blocked_by") == "cell":
                findings.append(
                    Finding(
                        anomaly_type="kernel_busy",
                        severity="info",
                        context=f"heartbeat of {row['loop']}",
                        observation=(
                            f"The kernel's loop ran no callback for {row['unanswered_after_s']} s "
                            f"while a cell executes: {(row.get('blocked_in') or ['?'])[-1]}."
                        ),
                        hypothesis="Cells run on the kernel's loop; while one runs, widgets and "
                        "comm messages wait. Expected unless the cell should have finished.",
                    )
                )
                continue
            if row.get("unanswered_after_s") is not None:
                where = (row.get("blocked_in") or ["?"])[-1]
                findings.append(
                    Finding(
                        anomaly_type="event_loop_blocked",
                        severity="critical",
                        context=f"heartbeat of {row['loop']}",
                        observation=(
                            f"The loop did not run a callback for {row['unanswered_after_s']} s; "
                            f"its thread is in {where}."
                        ),
                        hypothesis=(
                            "Synchronous code (a blocking call or a long computation) runs on "
                            "the loop's thread, so no task or callback can run: move it to "
                            "asyncio.to_thread / run_in_executor, or use the async variant."
                        ),
                    )
                )
            elif (row.get("median_ms") or 0.0) >= self.warn_ms:
                findings.append(
                    Finding(
                        anomaly_type="event_loop_lag",
                        severity="warning",
                        context=f"{row['answered']} heartbeat(s) of {row['loop']}",
                        observation=(
                            f"Callbacks wait {row['median_ms']} ms (median, max "
                            f"{row['max_ms']} ms) before they run."
                        ),
                        hypothesis=(
                            "Callbacks or task steps hold the loop too long between awaits "
                            "(CPU work or blocking calls in coroutines); see "
                            "asyncio_slow_callbacks with debug mode on."
                        ),
                    )
                )
        return findings


class SlowCallbacks(Rule):
    """asyncio's own slow-callback warnings (debug mode)."""

    name = "slow_callbacks"

    def wants(self, ev: Evidence) -> Sequence[ProbeCall]:
        if ev.latest("slow_callbacks", 0):
            return [ProbeCall("asyncio_slow_callbacks")]
        return []

    def judge(self, ev: Evidence) -> Sequence[Finding]:
        result = ev.result("asyncio_slow_callbacks")
        if not isinstance(result, dict) or not result.get("slowest"):
            return []
        worst = result["slowest"][0]
        return [
            Finding(
                anomaly_type="slow_callbacks",
                severity="warning",
                context=f"{result.get('total_seen')} slow callback(s) logged by asyncio debug mode",
                observation=(
                    f"The slowest held its loop {worst['seconds']} s: {worst['callback']} "
                    f"(thread {worst['thread']!r})."
                ),
                hypothesis=(
                    "That callback or task step blocks the loop: make it await, or move its "
                    "work off the loop."
                ),
            )
        ]


class TaskGrowth(CountGrowth):
    """The program's pending tasks climbing between two snapshots: name the coroutine that
    accumulates and where its tasks wait (tasks created faster than they finish)."""

    name = "task_growth"
    gap = 3.0
    key = "user_tasks"
    #: growth that counts, relative to the tasks the program had, with a floor for small ones
    share = 0.5
    floor = 20
    detail = (ProbeCall("asyncio_tasks", {"limit": 10, "stack_limit": 2}),)

    def judge(self, ev: Evidence) -> Sequence[Finding]:
        result = ev.result("asyncio_tasks")
        if not self.growing(ev) or not isinstance(result, dict):
            return []
        groups = [g for g in result.get("groups") or [] if isinstance(g, dict) and g.get("user")]
        if not groups:
            return []
        lead = max(groups, key=lambda g: int(g.get("count", 0)))
        first, last = int(ev.first("user_tasks", 0)), int(ev.latest("user_tasks", 0))
        code = f" `{lead['code']}`" if lead.get("code") else ""
        return [
            Finding(
                anomaly_type="task_growth",
                severity="warning",
                context=(
                    f"the program's pending tasks grew from {first} to {last} (+{last - first} "
                    f"in {ev.elapsed():.1f} s); loop: {lead.get('loop')}"
                ),
                observation=(
                    f"{lead['count']} tasks of coroutine {lead['coroutine']} (defined at "
                    f"{lead.get('defined_at')}) wait at {lead.get('await_at')}{code}, awaiting "
                    f"{lead.get('awaiting')}"
                ),
                hypothesis=(
                    f"tasks of {lead['coroutine']} are created faster than they finish, so the "
                    "backlog lives as pending tasks (each with its coroutine and arguments): "
                    "take the concurrency limit before creating a task, or let a fixed number "
                    "of workers take jobs from a bounded asyncio.Queue"
                ),
            )
        ]
