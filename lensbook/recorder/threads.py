"""Thread observer: births and deaths, grouped by kind (target function and the code that started
the thread), so growth by kind and silent deaths are answerable afterwards.

Python has no thread-start hook, so two methods of `threading.Thread` are wrapped, each chained
to what was there before and put back by `remove()` (only if still ours):

- ``Thread.start``: in the starting thread, notes the target and the first caller frame in the
  user's code (the user's call to ``executor.submit`` rather than ``concurrent.futures``'s
  ``_adjust_thread_count``), with the first library frame below it as detail (``via``) when a
  library started the thread for the user; without a user frame, the first library frame;
- ``Thread._bootstrap_inner``: runs in the new thread and notes when it ends (a death by
  exception comes from the exceptions observer's ``threading.excepthook``).

Threads started with ``_thread.start_new_thread`` (not through `threading.Thread`) never reach
those methods, so that module function is wrapped too (``threading`` keeps its own reference
to the original, so a `Thread` is never counted twice). The wrapper hands the new thread a
`_RawRun` around the user's function: it notes the end and, since such a thread's exception goes
to ``sys.unraisablehook`` rather than ``threading.excepthook``, a death by exception (then
re-raised, so the unraisable hook prints what it always printed: `_RawRun`'s repr is the
function's). Only callers that look the function up on ``_thread`` at call time are seen; a
reference taken before `install()` (``from _thread import start_new_thread``) is not.

Per thread the hot path is a frame walk of a few steps (whether a code object is the stdlib's is
cached) and a few dict updates, with no lock; a start from a site seen before where the user's
code called ``start()`` itself skips the walk (one lookup by that frame). About a microsecond
with warm caches; in thread churn, where every start runs it cold, the two wrappers and their
observers measure a few µs of CPU next to the 50-80 µs a bare start-and-join costs
(`benchmarks/bench_recorder.py`). A race between two starting threads may lose one count,
never a thread. The first few threads per kind and minute become ``thread_started`` /
``thread_ended`` events; every flush adds one ``thread_growth`` event per kind that started or
ended threads since the last flush, with the number alive.
"""

from __future__ import annotations

import _thread
import re
import sys
import threading
import time
import types
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from lensbook.recorder.event import HistoryEvent, make_event
from lensbook.recorder.frames import callable_name, code_origin, thread_name, where
from lensbook.recorder.ring import HistoryRing

__all__ = ["ThreadObserver"]

_MAX_KINDS = 500
_MAX_TRACKED = 100_000  # threads started and not ended yet that we remember the kind of
_DIGITS = re.compile(r"\d+")
#: worker threads of pools are named "<prefix>-<pool>_<worker>" (ThreadPoolExecutor's scheme)
_POOLED = re.compile(r".*-\d+_\d+$")
_MAX_POOLS = 1000
_KindKey = tuple[int, int, int]  # ids of (target code or type, starter code), starter offset
_GATE_BURST = 5
_GATE_WINDOW_S = 60.0
# module globals: each `types.X` on the path of every thread start is two lookups
_FUNCTION = types.FunctionType
_METHOD = types.MethodType
_BUILTIN = types.BuiltinFunctionType


@dataclass(slots=True)
class _Kind:
    target: str
    started_from: str
    starter_function: str
    name_pattern: str
    started: int = 0
    ended: int = 0
    died: int = 0
    # the totals at the last flush: the flush's window is the difference (the hot path only
    # bumps the totals)
    flushed_started: int = 0
    flushed_ended: int = 0
    flushed_died: int = 0
    # the first `_GATE_BURST` starts and ends per kind and minute become events: the totals
    # when the gate's minute began (moved on by the flush, never on the hot path)
    gate_start: float = 0.0
    gate_started: int = 0
    gate_ended: int = 0
    #: the objects whose ids make the kind's key (kept alive so the ids stay theirs)
    held: Any = None
    #: for pool workers: the distinct pools ("ThreadPoolExecutor-7") their threads belong to;
    #: many pools started from one place is a pool per call, never shut down
    pools: set[str] | None = None
    #: the library frame that started the thread for the user's code ("" when none)
    via: str = ""


#: the name pattern of threads started by ``_thread.start_new_thread`` (they have no name)
RAW_KIND = "_thread"


def _target_key(target: Any, thread: threading.Thread | None) -> Any:
    """What identifies a thread's target in its kind's key: the code of a function or method,
    the class of a `Thread` subclass overriding ``run()``, a class or builtin itself; for any
    other callable (an object, a partial) its type, as ids of instances would be new kinds."""
    tt: type = type(target)
    if tt is _FUNCTION:
        return target.__code__
    if tt is _METHOD and type(target.__func__) is _FUNCTION:
        return target.__func__.__code__
    if target is None:  # a subclass overriding run()
        return type(thread)
    if tt is type or tt is _BUILTIN:
        return target
    return tt


class _RawRun:
    """The function a ``_thread.start_new_thread`` thread runs, with its end and death seen."""

    __slots__ = ("function", "kind", "observer")

    def __init__(self, observer: ThreadObserver, kind: _Kind, function: Any) -> None:
        self.observer, self.kind, self.function = observer, kind, function

    def __call__(self, *args: Any, **kwargs: Any) -> Any:
        try:
            return self.function(*args, **kwargs)
        except SystemExit:  # the documented quiet way out of such a thread
            raise
        except BaseException as exc:
            try:  # noqa: SIM105 (as on every thread's path)
                self.observer.on_raw_death(self.kind, exc)
            except Exception:
                pass
            raise
        finally:
            try:  # noqa: SIM105
                self.observer.on_raw_end(self.kind)
            except Exception:
                pass

    def __repr__(self) -> str:
        # "Exception ignored in thread started by: <repr>" names the user's function, as before
        return repr(self.function)


class ThreadObserver:
    """Wraps `Thread.start`, `Thread._bootstrap_inner` and ``_thread.start_new_thread`` to see
    threads come and go."""

    def __init__(self, ring: HistoryRing) -> None:
        self.ring = ring
        self._lock = threading.Lock()
        self._origins: dict[int, tuple[types.CodeType, str]] = {}
        self._kinds: dict[_KindKey, _Kind] = {}
        # the kinds whose starting code is the very frame that called ``Thread.start`` (the
        # user's code started the thread itself), by that frame's key: a start from such a
        # site needs no walk (a subset of `_kinds`)
        self._direct: dict[_KindKey, _Kind] = {}
        self._overflow = _Kind("<other>", "<other>", "<other>", "<other>")
        # id(thread) -> its kind; removed when the thread ends
        self._live: dict[int, _Kind] = {}
        # id(thread) -> start time, for the threads whose start became an event (few)
        self._born: dict[int, float] = {}
        #: epoch seconds, set by each flush: the rate gates' coarse clock
        self.clock = time.time()
        self._died: set[int] = set()
        self._window_start = time.time()
        self._prev_start: Any = None
        self._prev_bootstrap: Any = None
        self._prev_raw: Any = None
        self._start_wrapper: Any = None
        self._bootstrap_wrapper: Any = None
        self._raw_wrapper: Any = None
        #: records an exception that ended a ``_thread`` thread; returns the event's detail
        #: (set by the recorder to its exceptions observer)
        self.record_raw_death: Callable[[BaseException, str], dict[str, Any] | None] | None = None

    # -- the hooks --------------------------------------------------------------------------

    def install(self) -> None:
        if self._start_wrapper is not None:
            return
        observer = self
        # bound once: each start and end of a thread then makes no attribute lookup for them
        on_start, on_end, getframe = self.on_start, self.on_end, sys._getframe
        prev_start = self._prev_start = threading.Thread.start
        prev_bootstrap = self._prev_bootstrap = threading.Thread._bootstrap_inner  # type: ignore[attr-defined]

        def start(thread: threading.Thread) -> None:
            # only the wrapper installed now records: an older one left in a chain (someone
            # wrapped it after us) passes through
            if observer._start_wrapper is start:
                try:  # noqa: SIM105 (a try costs nothing here; a context manager is a call)
                    on_start(thread, getframe(1))
                except Exception:  # seeing a thread start must never stop it from starting
                    pass
            try:
                prev_start(thread)
            except BaseException:
                observer.on_failed_start(thread)  # "can't start new thread": it never lived
                raise

        def _bootstrap_inner(thread: threading.Thread) -> None:
            try:
                prev_bootstrap(thread)
            finally:
                if observer._bootstrap_wrapper is _bootstrap_inner:
                    try:  # noqa: SIM105 (as above: the path every thread takes)
                        on_end(thread)
                    except Exception:
                        pass

        prev_raw = self._prev_raw = _thread.start_new_thread

        def start_new_thread(function: Any, args: Any, kwargs: Any = None) -> int:
            run = function
            if observer._raw_wrapper is start_new_thread:
                try:  # noqa: SIM105
                    run = observer.on_raw_start(function, sys._getframe(1))
                except Exception:
                    pass
            if kwargs is None:
                return int(prev_raw(run, args))
            return int(prev_raw(run, args, kwargs))

        start.__wrapped__ = prev_start  # type: ignore[attr-defined]
        _bootstrap_inner.__wrapped__ = prev_bootstrap  # type: ignore[attr-defined]
        start_new_thread.__wrapped__ = prev_raw  # type: ignore[attr-defined]
        start_new_thread.__doc__ = prev_raw.__doc__
        self._start_wrapper, self._bootstrap_wrapper = start, _bootstrap_inner
        self._raw_wrapper = start_new_thread
        threading.Thread.start = start  # type: ignore[method-assign,assignment]
        threading.Thread._bootstrap_inner = _bootstrap_inner  # type: ignore[attr-defined]
        _thread.start_new_thread = start_new_thread

    def remove(self) -> None:
        if self._start_wrapper is None:
            return
        if threading.Thread.start is self._start_wrapper:
            threading.Thread.start = self._prev_start  # type: ignore[method-assign]
        if threading.Thread._bootstrap_inner is self._bootstrap_wrapper:  # type: ignore[attr-defined]
            threading.Thread._bootstrap_inner = self._prev_bootstrap  # type: ignore[attr-defined]
        if _thread.start_new_thread is self._raw_wrapper:
            _thread.start_new_thread = self._prev_raw
        self._start_wrapper = self._bootstrap_wrapper = self._raw_wrapper = None
        with self._lock:
            self._live.clear()
            self._born.clear()
            self._died.clear()

    @property
    def installed(self) -> bool:
        return self._start_wrapper is not None

    # -- what they see ----------------------------------------------------------------------

    def _classify(self, code: types.CodeType) -> tuple[types.CodeType, str]:
        """(code, where it comes from: "user", "library", "stdlib", ...), cached by id: hashing
        a code object hashes its constants every time; the entry holds the code, so its id
        cannot be reused while it is there."""
        if len(self._origins) > 4096:
            self._origins.clear()
        found = self._origins[id(code)] = (code, code_origin(code.co_filename))
        return found

    def creator(self, thread: threading.Thread) -> dict[str, str] | None:
        """Who started `thread` (a live one, started while recording): the user's code that
        started it ("file:line"), its function, the library frame between ("" if none) and the
        target. None for threads started before the recorder, or already ended."""
        kind = self._live.get(id(thread))
        if kind is None or kind is self._overflow:
            return None
        return {
            "started_from": kind.started_from,
            "function": kind.starter_function,
            "via": kind.via,
            "target": kind.target,
        }

    def on_start(self, thread: threading.Thread, caller: types.FrameType | None) -> None:
        # the path of every thread start: no lock (a race may lose one count, never a thread),
        # names and texts made once per kind
        target: Any = getattr(thread, "_target", None)
        # (a function target, the most common, without a call)
        tkey = target.__code__ if type(target) is _FUNCTION else _target_key(target, thread)
        kind = None
        if caller is not None:
            # the common case first: the user's code starts the thread itself, from a site seen
            # before; its kind is keyed by that very frame, so no frame walk (about a third of
            # the recorder's cost per thread start, measured in thread churn)
            kind = self._direct.get((id(tkey), id(caller.f_code), caller.f_lasti))
        if kind is None:
            kind = self._kind_of(target, tkey, thread, caller)
        kind.started += 1
        pools = kind.pools
        if pools is not None and len(pools) < _MAX_POOLS:
            pools.add(thread.name.rsplit("_", 1)[0])
        live = self._live
        if len(live) < _MAX_TRACKED:
            live[id(thread)] = kind
        # the gate: one subtraction (its minute is moved on by the flush)
        if kind.started - kind.gate_started <= _GATE_BURST:
            now = time.time()
            if len(self._born) < _MAX_TRACKED:
                self._born[id(thread)] = now
            self._started_event(kind, thread.name, thread.daemon, now)

    def _started_event(self, kind: _Kind, name: str, daemon: bool, now: float) -> None:
        self.ring.add(
            make_event(
                "thread_started",
                name,
                {
                    "thread": name,
                    "target": kind.target,
                    "kind": kind.name_pattern,
                    "started_from": kind.started_from,
                    "function": kind.starter_function,
                    "via": kind.via,
                    "daemon": daemon,
                    "count": kind.started,
                },
                at=now,
            )
        )

    def on_raw_start(self, function: Any, caller: types.FrameType | None) -> _RawRun:
        """A ``_thread.start_new_thread`` call (in the starting thread): count it and return
        what the new thread runs instead of `function`."""
        kind = self._kind_of(function, _target_key(function, None), None, caller)
        kind.started += 1
        if kind.started - kind.gate_started <= _GATE_BURST:
            self._started_event(kind, RAW_KIND, True, time.time())
        return _RawRun(self, kind, function)

    def on_raw_end(self, kind: _Kind) -> None:
        kind.ended += 1
        if kind.ended - kind.gate_ended <= _GATE_BURST:
            name = thread_name()
            detail = {
                "thread": name,
                "target": kind.target,
                "kind": kind.name_pattern,
                "started_from": kind.started_from,
                "died": False,
            }
            self.ring.add(make_event("thread_ended", name, detail))

    def on_raw_death(self, kind: _Kind, exc: BaseException) -> None:
        """An exception is ending a ``_thread`` thread (in that thread)."""
        kind.died += 1
        name = thread_name()
        record = self.record_raw_death
        found = record(exc, name) if record is not None else None
        if found is None:
            return  # not recorded (no exceptions observer, or its gate kept it a count)
        detail = {k: v for k, v in found.items() if k not in ("route", "uncaught")}
        detail.update(
            thread=name, target=kind.target, started_from=kind.started_from, kind=kind.name_pattern
        )
        self.ring.add(make_event("thread_died", name, detail))

    def _kind_of(
        self,
        target: Any,
        tkey: Any,
        thread: threading.Thread | None,
        caller: types.FrameType | None,
    ) -> _Kind:
        """The kind of a thread about to start (`thread` None: a ``_thread`` one): its target
        (`tkey`: `_target_key`'s) and the code that starts it."""
        # the first frame in the user's code: the user's call, not the executor's; the first
        # library frame on the way is kept as detail, and blamed when no user frame is found
        # (inlined: this is the path of every thread start)
        origins = self._origins
        starter = caller
        library: types.FrameType | None = None
        depth = 0
        while starter is not None and depth < 30:
            found = origins.get(id(starter.f_code))
            if found is None:
                found = self._classify(starter.f_code)
            if found[1] == "user":
                break
            if library is None and found[1] == "library":
                library = starter
            starter = starter.f_back
            depth += 1
        if starter is None or depth >= 30:
            starter, library = library or caller, None
        code = starter.f_code if starter is not None else None
        # the call site by instruction offset: a frame's line number is computed from its line
        # table on every read (microseconds in a long function), so only a new kind asks for it
        lasti = starter.f_lasti if starter is not None else -1
        # ids, not the objects: hashing a code object is slow; the kind keeps both alive
        key: _KindKey = (id(tkey), id(code), lasti)
        kind = self._kinds.get(key)
        if kind is None:
            line = (starter.f_lineno or 0) if starter is not None else 0
            name = thread.name if thread is not None else RAW_KIND  # (a property: once a kind)
            kind = self._new_kind(key, thread, name, target, code, line, tkey)
            if library is not None:
                kind.via = where(library.f_code, library.f_lineno)
        if depth == 0 and caller is not None and starter is caller and kind is not self._overflow:
            # the user's code called start() itself: the next start here skips the walk
            self._direct[key] = kind
        return kind

    def _new_kind(
        self,
        key: _KindKey,
        thread: threading.Thread | None,
        name: str,
        target: Any,
        code: types.CodeType | None,
        line: int,
        held: Any,
    ) -> _Kind:
        with self._lock:
            if len(self._kinds) >= _MAX_KINDS:
                return self._overflow
            kind = self._kinds[key] = _Kind(
                callable_name(
                    type(thread).run if target is None and thread is not None else target
                ),
                where(code, line) if code is not None else "?",
                getattr(code, "co_qualname", getattr(code, "co_name", "?")),
                _DIGITS.sub("N", name),
                held=(held, code),
                pools=set() if _POOLED.match(name) else None,
                gate_start=self.clock,
            )
            return kind

    def on_end(self, thread: threading.Thread) -> None:
        found = self._live.pop(id(thread), None)
        if found is None:
            return  # started before we were installed
        died = False
        if self._died:
            died = id(thread) in self._died
            self._died.discard(id(thread))
        kind = found
        kind.ended += 1
        born = self._born.pop(id(thread), None) if self._born else None
        if kind.ended - kind.gate_ended <= _GATE_BURST or died:
            now = time.time()
            detail: dict[str, Any] = {
                "thread": thread.name,
                "target": kind.target,
                "kind": kind.name_pattern,
                "started_from": kind.started_from,
                "died": died,
            }
            if born is not None:  # known for the threads whose start was recorded
                detail["lived_s"] = round(now - born, 3)
            self.ring.add(make_event("thread_ended", thread.name, detail, at=now))

    def on_failed_start(self, thread: threading.Thread) -> None:
        found = self._live.pop(id(thread), None)
        self._born.pop(id(thread), None)
        if found is not None:
            found.started -= 1

    def count_death(self, thread: threading.Thread | None) -> None:
        """A thread is ending by an exception (from ``threading.excepthook``, in that thread)."""
        if thread is None:
            return
        with self._lock:
            self._died.add(id(thread))
            found = self._live.get(id(thread))
            if found is not None:
                found.died += 1

    def on_death(self, thread: threading.Thread | None, exc_detail: dict[str, Any]) -> None:
        """Record a ``thread_died`` event (after `count_death`) with the exception's detail."""
        now = time.time()
        name = thread.name if thread is not None else thread_name()
        kind = self._live.get(id(thread)) if thread is not None else None
        detail = {k: v for k, v in exc_detail.items() if k not in ("route", "uncaught")}
        detail["thread"] = name
        if kind is not None:
            detail.update(
                target=kind.target, started_from=kind.started_from, kind=kind.name_pattern
            )
        elif thread is not None and getattr(thread, "_target", None) is not None:
            detail["target"] = callable_name(thread._target)  # type: ignore[attr-defined]
        self.ring.add(make_event("thread_died", name, detail, at=now))

    def flush(self, now: float) -> list[HistoryEvent]:
        """One ``thread_growth`` event per kind that started or ended threads since last time;
        moves each kind's event gate on to a new minute when its minute is over."""
        self.clock = now
        with self._lock:
            span = max(now - self._window_start, 1.0)
            self._window_start = now
            rows = []
            for kind in [*self._kinds.values(), self._overflow]:
                if now - kind.gate_start >= _GATE_WINDOW_S:
                    kind.gate_start = now
                    kind.gate_started, kind.gate_ended = kind.started, kind.ended
                # read once: the hot path may bump a total meanwhile (counted next time)
                started, ended, died = kind.started, kind.ended, kind.died
                window_started = started - kind.flushed_started
                window_ended = ended - kind.flushed_ended
                window_died = died - kind.flushed_died
                if window_started or window_ended or window_died:
                    kind.flushed_started, kind.flushed_ended = started, ended
                    kind.flushed_died = died
                    rows.append(
                        {
                            "kind": kind.name_pattern,
                            "target": kind.target,
                            "started_from": kind.started_from,
                            "function": kind.starter_function,
                            "via": kind.via,
                            "started": window_started,
                            "ended": window_ended,
                            "died": window_died,
                            "alive": max(started - ended, 0),
                            "started_total": started,
                            "rate_per_s": round(window_started / span, 3),
                            "window_s": round(span, 2),
                            "pools": len(kind.pools) if kind.pools is not None else None,
                        }
                    )
        return [make_event("thread_growth", str(row["kind"]), row, at=now) for row in rows]

    def clear(self) -> None:
        with self._lock:
            self._kinds.clear()
            self._direct.clear()
            self._overflow = _Kind("<other>", "<other>", "<other>", "<other>")
