"""Exceptions observer: uncaught ones (main thread, threads, asyncio tasks and callbacks, IPython
cells) and, through the log observer, logged ones.

Hooks, each chained to what was installed before and put back by `remove()` only if nobody
replaced it since (then ours just goes quiet):

- ``sys.excepthook`` (route "main") and ``threading.excepthook`` (route "thread": the thread
  died; the threads observer is told, and a ``thread_died`` event is recorded);
- the exception handler of each event loop lensbook knows (route "task" for a task whose
  exception was never retrieved, "callback" otherwise), added as loops are found;
- an IPython ``post_run_cell`` callback (route "cell") when a shell exists.

Listeners (`listeners`: the exceptions skill's log) are told of every occurrence by every route
before any grouping or gating, with the route and, for asyncio, the handler's message (also for
a context that carries no exception), so the skill needs no hooks of its own.

Occurrences are grouped by signature (type, innermost file:line). Each occurrence is counted;
the first few per signature and minute become events of their own (full detail), and every flush
adds one ``exception_rate`` event per signature seen since the last flush (count, rate, first
and last time). So a storm costs a counter increment per exception, and is still answerable as
a burst an hour later.
"""

from __future__ import annotations

import asyncio
import contextlib
import sys
import threading
import time
import types
import weakref
from collections import deque
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from typing import Any

from lensbook.recorder.event import HistoryEvent, make_event
from lensbook.recorder.frames import exception_detail, short_path, thread_name
from lensbook.recorder.ring import HistoryRing, RateGate
from lensbook.skills._stacks import qualname as code_qualname

__all__ = ["ExceptionObserver"]

#: exception sites counted one by one (past this, new sites are only in the history events)
_MAX_SIGNATURES = 500
_SAME_MOMENT_S = 1.0
_Signature = tuple[str, str, int]  # (type qualname, file, line)


@dataclass
class _Counts:
    type_name: str
    where: str
    function: str
    uncaught: bool
    routes: dict[str, int]
    total: int = 0
    window: int = 0
    first: float = 0.0
    last: float = 0.0


def _signature(exc: BaseException) -> tuple[_Signature, types.CodeType | None]:
    """The exception's site (type, file, line of the innermost frame) and that frame's code."""
    tb = exc.__traceback__
    last: types.TracebackType | None = None
    while tb is not None:  # innermost frame, cheaply: no frame summaries, no source lines
        last, tb = tb, tb.tb_next
    tp = type(exc)
    if last is None:
        return (tp.__qualname__, "?", 0), None
    code = last.tb_frame.f_code
    return (tp.__qualname__, code.co_filename, last.tb_lineno), code


class ExceptionObserver:
    """Sees exceptions by every route and records them into the history ring."""

    def __init__(
        self,
        ring: HistoryRing,
        count_thread_death: Callable[[Any], None],
        on_thread_death: Callable[[Any, dict[str, Any]], None],
    ) -> None:
        self.ring = ring
        self.count_thread_death = count_thread_death
        self.on_thread_death = on_thread_death
        self.gate = RateGate(burst=5, window_s=60.0)
        # thread deaths matter one by one: many more of them are kept whole
        self.death_gate = RateGate(burst=50, window_s=60.0)
        self._lock = threading.RLock()
        self._counts: dict[_Signature, _Counts] = {}
        self._window_start = time.time()
        # exceptions just recorded by an uncaught route: asyncio's default handler then logs the
        # same object, which must not count twice. Exceptions take no weak references and ids
        # are reused once an object dies, so an entry matches only the same id, signature and
        # a moment later (the log call follows within the same handler call).
        self._recent: deque[tuple[int, _Signature, float]] = deque(maxlen=32)
        self._active = False
        self._prev_excepthook: Any = None
        self._prev_threadhook: Any = None
        self._excepthook: Any = None
        self._threadhook: Any = None
        self._loops: weakref.WeakKeyDictionary[asyncio.AbstractEventLoop, tuple[Any, Any]] = (
            weakref.WeakKeyDictionary()
        )
        self._shell: Any = None
        #: told of every occurrence: (exception or None, route, asyncio message)
        self.listeners: list[Callable[[BaseException | None, str, str], None]] = []

    # -- recording ------------------------------------------------------------------------

    def record(
        self,
        exc: BaseException,
        route: str,
        *,
        uncaught: bool,
        source: str | None = None,
        extra: dict[str, Any] | None = None,
        tell: bool = True,
    ) -> HistoryEvent | None:
        """Count one exception; return its event if the gate let it become one. The listeners
        are told first (unless `tell` is False: the caller told them)."""
        if tell and self.listeners:
            self.tell(exc, route)
        now = time.time()
        sig, code = _signature(exc)
        if uncaught:
            self._recent.append((id(exc), sig, now))
        elif self._recent and any(
            i == id(exc) and s == sig and now - t < _SAME_MOMENT_S for i, s, t in self._recent
        ):
            return None
        with self._lock:
            counts = self._counts.get(sig)
            if counts is None and len(self._counts) < _MAX_SIGNATURES:
                where = f"{short_path(sig[1])}:{sig[2]}" if sig[1] != "?" else "?"
                # named now, not when the gate lets an event through: a flush in between would
                # put out a rate event "in ?", and a burst is described by its first event
                function = code_qualname(code) if code is not None else "?"
                counts = self._counts[sig] = _Counts(sig[0], where, function, uncaught, {})
            if counts is not None:
                counts.total += 1
                counts.window += 1
                counts.first = counts.first if counts.window > 1 else now
                counts.last = now
                counts.routes[route] = counts.routes.get(route, 0) + 1
                counts.uncaught = counts.uncaught or uncaught
            total = counts.total if counts is not None else 1
        gate = self.death_gate if route == "thread" else self.gate
        if not gate.allow(sig, now):
            return None  # counted above; the exception_rate events carry it
        detail = exception_detail(exc)
        if counts is not None and counts.function == "?":
            counts.function = str(detail.get("function", "?"))
        detail.update(route=route, uncaught=uncaught, count=total)
        if extra:
            detail.update(extra)
        kind = "exception" if uncaught else "logged_exception"
        event = make_event(kind, source or str(detail.get("thread", "")), detail, at=now)
        self.ring.add(event)
        return event

    def tell(self, exc: BaseException | None, route: str, message: str = "") -> None:
        """Tell the listeners of one occurrence (they must be quick; a failing one is skipped)."""
        for listener in list(self.listeners):
            with contextlib.suppress(Exception):
                listener(exc, route, message)

    def flush(self, now: float) -> list[HistoryEvent]:
        """One ``exception_rate`` event per signature seen since the last flush."""
        with self._lock:
            span = max(now - self._window_start, 1.0)
            self._window_start = now
            seen = [c for c in self._counts.values() if c.window]
            rows = [
                (
                    c.type_name,
                    c.where,
                    c.function,
                    c.uncaught,
                    dict(c.routes),
                    c.window,
                    c.total,
                    c.first,
                    c.last,
                )
                for c in seen
            ]
            for c in seen:
                c.window = 0
                c.routes = {}
        return [
            make_event(
                "exception_rate",
                where,
                {
                    "type": tp,
                    "where": where,
                    "function": function,
                    "uncaught": uncaught,
                    "routes": routes,
                    "count": n,
                    "total": total,
                    "rate_per_s": round(n / span, 3),
                    "window_s": round(span, 2),
                    "first": first,
                    "last": last,
                },
                at=now,
            )
            for tp, where, function, uncaught, routes, n, total, first, last in rows
        ]

    # -- hooks ----------------------------------------------------------------------------

    def install(self, shell: Any = None) -> None:
        if self._active:
            self.hook_shell(shell)
            return
        self._active = True
        # new hook functions at every install, each with its own previous hook: one left in
        # someone's chain at the last stop (they had wrapped it) only passes through, and a
        # chain can never loop back on itself
        prev_hook: Any = sys.excepthook
        prev_thread: Any = threading.excepthook

        def excepthook(
            tp: type[BaseException], value: BaseException, tb: types.TracebackType | None
        ) -> None:
            if self._excepthook is excepthook and not issubclass(
                tp, (KeyboardInterrupt, SystemExit)
            ):
                # recording must never hide the traceback the user expects
                with contextlib.suppress(Exception):
                    self.record(value, "main", uncaught=True)
            (prev_hook or sys.__excepthook__)(tp, value, tb)

        def threadhook(args: Any) -> None:
            if (
                self._threadhook is threadhook
                and args.exc_value is not None
                and not issubclass(args.exc_type, SystemExit)
            ):
                try:
                    thread = args.thread
                    name = thread.name if thread is not None else thread_name()
                    self.count_thread_death(thread)
                    event = self.record(args.exc_value, "thread", uncaught=True, source=name)
                    if event is not None:
                        self.on_thread_death(thread, event.detail)
                except Exception:
                    pass
            (prev_thread or threading.__excepthook__)(args)

        self._excepthook, self._prev_excepthook = excepthook, prev_hook
        self._threadhook, self._prev_threadhook = threadhook, prev_thread
        sys.excepthook = excepthook
        threading.excepthook = threadhook
        self.hook_shell(shell)

    def hook_loops(self, loops: Iterable[asyncio.AbstractEventLoop]) -> None:
        """Chain an exception handler onto every loop not hooked yet."""
        if not self._active:
            return
        for loop in loops:
            if loop in self._loops or loop.is_closed():
                continue
            previous = loop.get_exception_handler()
            handler = self._loop_handler(previous)
            loop.set_exception_handler(handler)
            self._loops[loop] = (handler, previous)

    def _loop_handler(
        self, previous: Any
    ) -> Callable[[asyncio.AbstractEventLoop, dict[str, Any]], None]:
        def handler(loop: asyncio.AbstractEventLoop, context: dict[str, Any]) -> None:
            exc = context.get("exception")
            current = self._loops.get(loop)
            # an older handler of ours left in a chain passes through: only the current records
            ours = current is not None and current[0] is handler
            route = (
                "task"
                if isinstance(context.get("task") or context.get("future"), asyncio.Future)
                else "callback"
            )
            message = str(context.get("message", ""))
            if ours and isinstance(exc, BaseException):
                extra: dict[str, Any] = {"asyncio_message": message[:200]}
                task = context.get("task") or context.get("future")
                if isinstance(task, asyncio.Task):
                    extra["task"] = task.get_name()
                self.tell(exc, route, message)  # with the message, so not by `record`
                with contextlib.suppress(Exception):
                    self.record(
                        exc,
                        route,
                        uncaught=True,
                        source=f"loop@{id(loop):#x}",
                        extra=extra,
                        tell=False,
                    )
            elif ours:
                self.tell(None, route, message)  # an error report without an exception
            if previous is not None:
                previous(loop, context)
            else:
                loop.default_exception_handler(context)

        return handler

    def hook_shell(self, shell: Any) -> None:
        if shell is None or self._shell is not None or not self._active:
            return
        events = getattr(shell, "events", None)
        if events is None:
            return
        events.register("post_run_cell", self._post_run_cell)
        self._shell = shell

    def _post_run_cell(self, result: Any) -> None:
        if not self._active:
            return
        count = getattr(result, "execution_count", None)
        extra = {"execution_count": count} if isinstance(count, int) else None
        for attr in ("error_before_exec", "error_in_exec"):  # a SyntaxError, or a raise
            exc = getattr(result, attr, None)
            if isinstance(exc, BaseException) and not isinstance(exc, KeyboardInterrupt):
                with contextlib.suppress(Exception):
                    self.record(exc, "cell", uncaught=True, source="ipython cell", extra=extra)

    def hooks_state(self) -> dict[str, Any]:
        """Which hooks are in and whether each is still first in line (not wrapped since)."""
        return {
            "sys_excepthook": "first" if sys.excepthook is self._excepthook else "wrapped",
            "threading_excepthook": (
                "first" if threading.excepthook is self._threadhook else "wrapped"
            ),
            "asyncio_loops": len(self._loops),
            "ipython_cells": self._shell is not None,
        }

    def remove(self) -> None:
        """Put every hook back as it was (ours stays, quiet, where someone chained after us)."""
        if not self._active:
            return
        self._active = False
        if sys.excepthook is self._excepthook:
            sys.excepthook = self._prev_excepthook
        if threading.excepthook is self._threadhook:
            threading.excepthook = self._prev_threadhook
        self._excepthook = self._threadhook = None  # a hook left in a chain passes through
        for loop, (handler, previous) in list(self._loops.items()):
            if not loop.is_closed() and loop.get_exception_handler() is handler:
                loop.set_exception_handler(previous)
        self._loops = weakref.WeakKeyDictionary()
        if self._shell is not None:
            with contextlib.suppress(ValueError):
                self._shell.events.unregister("post_run_cell", self._post_run_cell)
            self._shell = None

    def clear(self) -> None:
        self._recent.clear()
        with self._lock:
            self._counts.clear()
        self.gate.clear()
        self.death_gate.clear()
