"""The `exceptions` skill: exceptions the process raised and did not handle, or logged.

Sources, hooked on first use of the skill (a snapshot or a probe), each chained to whatever was
there before and undone by `ExceptionsSkill.close()`:

- ``sys.excepthook``: uncaught exceptions of the main thread;
- ``threading.excepthook``: exceptions that ended a thread;
- asyncio exception handlers of the loops lensbook knows (the lens loop, and loops registered
  with the asyncio skill): "Task exception was never retrieved", failing callbacks;
- logged tracebacks: records with ``exc_info`` reaching the root logger (``log.exception``);
- IPython cells that raised (a ``post_run_cell`` callback), when a shell exists.

One exception seen by two routes (asyncio's default handler logs what it handles) counts once.
"""

from __future__ import annotations

import asyncio
import contextlib
import importlib
import linecache
import logging
import sys
import threading
import time
import traceback
import types
import weakref
from collections import deque
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field
from typing import Any, ClassVar

from lensbook.skills import intrusion
from lensbook.skills._frames import origin
from lensbook.skills._frames import short_path as _short_path
from lensbook.skills._ipython import shell as _ipython_shell
from lensbook.skills._observers import ObserverHandler
from lensbook.skills.base import Skill, probe
from lensbook.skills.history_rules import PastExceptionBursts, PastUncaught
from lensbook.skills.redact import clip
from lensbook.skills.rules import Evidence, Finding, ProbeCall, Rule
from lensbook.skills.untrusted import ProcessText, from_process
from lensbook.types import Severity

__all__ = ["ExceptionsSkill"]

_MAX_FRAMES = 12
_MESSAGE_CHARS = 300
_MAX_SIGNATURES = 1000
#: sources of exceptions nobody handled (as opposed to logged or shown in a cell)
UNCAUGHT = ("excepthook", "thread", "asyncio")


def _type_name(tp: type[BaseException]) -> str:
    module = getattr(tp, "__module__", "builtins")
    return tp.__qualname__ if module in ("builtins", "__main__") else f"{module}.{tp.__qualname__}"


def _short(text: str, limit: int = _MESSAGE_CHARS) -> ProcessText:
    return from_process(clip(text, limit))


def _kept(text: str, limit: int = 4000) -> str:
    """The text an exception is kept with: cut (after redaction) only when it is long."""
    return text if len(text) <= limit else clip(text, limit, marker="")


def _frames(tb: types.TracebackType | None) -> list[tuple[str, int, str]]:
    """(file, line, function) of the innermost frames, outermost first; no frames are kept."""
    found: deque[tuple[str, int, str]] = deque(maxlen=_MAX_FRAMES)
    for frame, lineno in traceback.walk_tb(tb):
        found.append((frame.f_code.co_filename, lineno, frame.f_code.co_name))
    return list(found)


def _where(frame: tuple[str, int, str]) -> str:
    filename, lineno, func = frame
    return f"{_short_path(filename)}:{lineno} in {func}"


@dataclass
class _Seen:
    """One exception as kept: text and locations only (no frames, no exception object)."""

    at: float
    source: str
    type_name: str
    message: str
    thread: str
    frames: list[tuple[str, int, str]]
    line: str
    chain: list[str]
    sources: set[str] = field(default_factory=set)
    #: str() of the exception, without any prefix a route added
    raw: str = ""

    @property
    def signature(self) -> tuple[str, str]:
        return (self.type_name, _where(self.frames[-1]) if self.frames else "?")

    def shown(self, now: float, frames: int) -> dict[str, Any]:
        kept = self.frames[-frames:] if frames > 0 else []
        out: dict[str, Any] = {
            "ago_s": round(now - self.at, 2),
            "type": self.type_name,
            "message": _short(self.message),
            "sources": sorted(self.sources),
            "thread": from_process(self.thread),
            "where": self.signature[1],
            "traceback": [_where(f) for f in kept],
        }
        user = next((f for f in reversed(self.frames) if origin(f[0]) == "user"), None)
        if user is not None and user != self.frames[-1]:
            # raised inside a library or the stdlib: the user's line that called it
            out["user_where"] = _where(user)
        if len(self.frames) > len(kept):
            out["frames_omitted"] = len(self.frames) - len(kept)
        if self.line:
            out["line"] = _short(self.line, 160)
        if self.chain:
            out["caused_by"] = self.chain
        return out


@dataclass
class _Signature:
    type_name: str
    where: str
    count: int = 0
    first: float = 0.0
    last: float = 0.0
    sources: dict[str, int] = field(default_factory=dict)
    threads: set[str] = field(default_factory=set)
    example: _Seen | None = None


class _ExceptionLog:
    """A bounded ring of recent exceptions and exact counters since the hooks went in."""

    def __init__(self, max_records: int) -> None:
        self.lock = threading.Lock()
        self.installed_at = time.time()
        self.ring: deque[_Seen] = deque(maxlen=max_records)
        self.total = 0
        self.by_source: dict[str, int] = {}
        self.by_type: dict[str, int] = {}
        self.signatures: dict[tuple[str, str], _Signature] = {}
        # the newest few, to count once an exception seen by two routes (asyncio's default
        # handler logs the exception it handles; a logged exception may be re-raised). Object
        # identity cannot be used: exceptions take no weak references and ids are reused.
        self._newest: deque[_Seen] = deque(maxlen=32)

    def record(self, exc: BaseException | None, source: str, message: str = "") -> None:
        """Note one exception (or a bare error message, as asyncio may report)."""
        now = time.time()
        seen = self._capture(exc, source, message, now)
        with self.lock:
            twin = self._twin(seen)
            if twin is not None:
                twin.sources.add(source)
                sig = self.signatures.get(twin.signature)
                if sig is not None:
                    sig.sources[source] = sig.sources.get(source, 0) + 1
                return
            self.total += 1
            self.by_source[source] = self.by_source.get(source, 0) + 1
            self.by_type[seen.type_name] = self.by_type.get(seen.type_name, 0) + 1
            key = seen.signature
            sig = self.signatures.get(key)
            if sig is None and len(self.signatures) < _MAX_SIGNATURES:
                sig = self.signatures[key] = _Signature(key[0], key[1], first=now)
            if sig is not None:
                sig.count += 1
                sig.last = now
                sig.sources[source] = sig.sources.get(source, 0) + 1
                if len(sig.threads) < 5:
                    sig.threads.add(seen.thread)
                sig.example = seen
            self.ring.append(seen)
            self._newest.append(seen)

    def _twin(self, seen: _Seen) -> _Seen | None:
        """The same exception recorded moments ago by another route, if any."""
        if not seen.frames:
            return None
        for other in reversed(self._newest):
            if seen.at - other.at > 5.0:
                break
            if (
                seen.source not in other.sources
                and other.type_name == seen.type_name
                and other.raw == seen.raw
                and other.frames
                and other.frames[-1] == seen.frames[-1]
            ):
                return other
        return None

    @staticmethod
    def _capture(exc: BaseException | None, source: str, message: str, now: float) -> _Seen:
        thread = threading.current_thread().name
        if exc is None:
            return _Seen(now, source, "(no exception)", message, thread, [], "", [], {source})
        try:
            text = str(exc)
        except Exception:
            text = "<str() failed>"
        raw = _kept(text)
        if message and source == "asyncio":
            text = f"{message}: {text}" if text else message
        frames = _frames(exc.__traceback__)
        line = ""
        if frames:
            line = linecache.getline(frames[-1][0], frames[-1][1]).strip()
        chain: list[str] = []
        cause = exc.__cause__ or exc.__context__
        while cause is not None and len(chain) < 3:
            chain.append(_type_name(type(cause)))
            cause = cause.__cause__ or cause.__context__
        return _Seen(
            now,
            source,
            _type_name(type(exc)),
            _kept(text),
            thread,
            frames,
            line,
            chain,
            {source},
            raw,
        )

    def window(self, seconds: float) -> tuple[list[_Seen], float]:
        """Exceptions of the last `seconds` (from the ring) and the span it covers."""
        now = time.time()
        start = max(now - seconds, self.installed_at)
        with self.lock:
            items = [s for s in self.ring if s.at >= start]
        return items, max(now - start, 0.0)


class _LoggedTracebacks(ObserverHandler):
    """Sees log records carrying an exception (``log.exception(...)``, ``exc_info=True``)."""

    def __init__(self, log: _ExceptionLog) -> None:
        super().__init__()
        self.log = log

    def observe(self, record: logging.LogRecord) -> None:
        if record.exc_info and record.exc_info[1] is not None:
            self.log.record(record.exc_info[1], "logging")


@dataclass
class _Hooks:
    """What was installed, to chain to and to undo."""

    excepthook: Callable[..., Any] | None = None
    prev_excepthook: Callable[..., Any] | None = None
    threadhook: Callable[..., Any] | None = None
    prev_threadhook: Callable[..., Any] | None = None
    handler: _LoggedTracebacks | None = None
    # loop -> (our handler, the previous handler)
    loops: weakref.WeakKeyDictionary[asyncio.AbstractEventLoop, tuple[Any, Any]] = field(
        default_factory=weakref.WeakKeyDictionary
    )
    shell: Any = None
    change: intrusion.Change | None = None
    cell_callback: Callable[..., Any] | None = None
    active: bool = True


def known_loops() -> list[asyncio.AbstractEventLoop]:
    """Event loops lensbook knows: the lens loop, and those the asyncio skill registered."""
    found: list[asyncio.AbstractEventLoop] = []
    from lensbook import _loop

    lens = getattr(_loop, "_loop", None)
    if _loop.is_running() and isinstance(lens, asyncio.AbstractEventLoop):
        found.append(lens)
    try:  # the asyncio skill (another module) may keep a registry of loops
        aio = importlib.import_module("lensbook.skills.aio")
    except Exception:
        aio = None
    if aio is not None:
        for attr in ("known_loops", "registered_loops", "loops"):
            registry = getattr(aio, attr, None)
            try:
                extra: Iterable[Any] = registry() if callable(registry) else (registry or ())
                for loop in list(extra):
                    if isinstance(loop, asyncio.AbstractEventLoop) and loop not in found:
                        found.append(loop)
            except Exception:
                continue
    return [loop for loop in found if not loop.is_closed()]


class ExceptionsSkill(Skill):
    id = "exceptions"
    title = "Exceptions"
    description = "Uncaught, thread, asyncio, logged and cell exceptions: counts, rates, tracebacks"
    system_prompt = (
        "You are the exceptions operator of a live Python process. You see exceptions that "
        "reached sys.excepthook (uncaught in the main thread), threading.excepthook (a thread "
        "died), the asyncio exception handlers of the known event loops (tasks whose exception "
        "was never retrieved, failing callbacks), log records carrying a traceback, and "
        "IPython cells that raised. Exceptions are grouped by type and the innermost frame. "
        "Look for threads that died (their work silently stopped), bursts of one exception, and "
        "new exception types. Name the type, the message, where it was raised (file:line in "
        "function), the thread and the rate. The hooks only see exceptions raised after the "
        "first use of this skill."
    )
    # what the coordinator and the watcher know of it (see `Skill`)
    keywords = ("exception", "traceback", "crash", "raise", "fail")
    families: ClassVar[dict[str, tuple[str, ...]]] = {
        "errors": ("exception_burst", "uncaught_exception", "thread_died")
    }
    investigates = ("errors",)
    counters = frozenset({"thread_deaths", "cell_errors"})
    unwatched = frozenset({"observed_s", "exception_types"})
    watched = True

    def __init__(self, max_records: int = 500) -> None:
        self.max_records = max_records
        self._log: _ExceptionLog | None = None
        self._hooks: _Hooks | None = None
        self._lock = threading.Lock()
        self._loops_checked = -1e9

    # -- hooks --------------------------------------------------------------------------

    def install(self) -> _ExceptionLog:
        """Install the hooks (idempotent; loops and a shell that appeared later are added)."""
        with self._lock:
            if self._log is None or self._hooks is None:
                self._log = _ExceptionLog(self.max_records)
                self._hooks = self._install_hooks(self._log)
            now = time.monotonic()
            # finding loops walks every thread's stack: look again every few seconds only
            if now - self._loops_checked >= 5.0:
                self._loops_checked = now
                self._hook_loops(self._log, self._hooks)
                self._hook_shell(self._log, self._hooks)
            return self._log

    def _install_hooks(self, log: _ExceptionLog) -> _Hooks:
        hooks = _Hooks()

        def excepthook(
            tp: type[BaseException], value: BaseException, tb: types.TracebackType | None
        ) -> None:
            if hooks.active and not issubclass(tp, (KeyboardInterrupt, SystemExit)):
                log.record(value, "excepthook")
            previous = hooks.prev_excepthook or sys.__excepthook__
            previous(tp, value, tb)

        def threadhook(args: Any) -> None:
            if hooks.active and not issubclass(args.exc_type, SystemExit):
                log.record(args.exc_value, "thread")
            previous = hooks.prev_threadhook or threading.__excepthook__
            previous(args)

        hooks.prev_excepthook, hooks.excepthook = sys.excepthook, excepthook
        sys.excepthook = excepthook
        hooks.prev_threadhook, hooks.threadhook = threading.excepthook, threadhook
        threading.excepthook = threadhook
        hooks.handler = _LoggedTracebacks(log)
        logging.root.addHandler(hooks.handler)
        # removed by lensbook.stop() and at exit
        hooks.change = intrusion.switch_on(
            "exception hooks", self.close, max_seconds=None, session=True
        )
        return hooks

    @staticmethod
    def _hook_loops(log: _ExceptionLog, hooks: _Hooks) -> None:
        for loop in known_loops():
            if loop in hooks.loops:
                continue
            previous = loop.get_exception_handler()

            def handler(
                loop: asyncio.AbstractEventLoop,
                context: dict[str, Any],
                previous: Any = previous,
            ) -> None:
                if hooks.active:
                    exc = context.get("exception")
                    log.record(
                        exc if isinstance(exc, BaseException) else None,
                        "asyncio",
                        str(context.get("message", "")),
                    )
                if previous is not None:
                    previous(loop, context)
                else:
                    loop.default_exception_handler(context)

            loop.set_exception_handler(handler)
            hooks.loops[loop] = (handler, previous)

    @staticmethod
    def _hook_shell(log: _ExceptionLog, hooks: _Hooks) -> None:
        if hooks.shell is not None:
            return
        shell = _ipython_shell()
        if shell is None:
            return

        def post_run_cell(result: Any) -> None:
            if not hooks.active:
                return
            for attr in ("error_before_exec", "error_in_exec"):
                exc = getattr(result, attr, None)
                if isinstance(exc, BaseException) and not isinstance(exc, KeyboardInterrupt):
                    log.record(exc, "cell")

        shell.events.register("post_run_cell", post_run_cell)
        hooks.shell, hooks.cell_callback = shell, post_run_cell

    def close(self) -> None:
        """Remove every hook (a hook someone else wrapped since is made a pass-through)."""
        with self._lock:
            hooks, self._hooks, self._log = self._hooks, None, None
            self._loops_checked = -1e9
        if hooks is None:
            return
        hooks.active = False
        if hooks.change is not None:
            hooks.change.forget()
        if sys.excepthook is hooks.excepthook and hooks.prev_excepthook is not None:
            sys.excepthook = hooks.prev_excepthook
        if threading.excepthook is hooks.threadhook and hooks.prev_threadhook is not None:
            threading.excepthook = hooks.prev_threadhook
        if hooks.handler is not None:
            logging.root.removeHandler(hooks.handler)
        for loop, (ours, previous) in list(hooks.loops.items()):
            if not loop.is_closed() and loop.get_exception_handler() is ours:
                loop.set_exception_handler(previous)
        if hooks.shell is not None and hooks.cell_callback is not None:
            with contextlib.suppress(ValueError):
                hooks.shell.events.unregister("post_run_cell", hooks.cell_callback)

    def hooked(self) -> dict[str, Any]:
        """Which hooks are in place now (and still first in line)."""
        hooks = self._hooks
        if hooks is None:
            return {"installed": False}
        return {
            "installed": True,
            "sys_excepthook": "first" if sys.excepthook is hooks.excepthook else "wrapped",
            "threading_excepthook": (
                "first" if threading.excepthook is hooks.threadhook else "wrapped"
            ),
            "logging_handler": hooks.handler in logging.root.handlers,
            "asyncio_loops": len(hooks.loops),
            "ipython_cells": hooks.shell is not None,
        }

    # -- snapshot and probes --------------------------------------------------------------

    def snapshot(self) -> dict[str, Any]:
        """Cost: ~2 µs plus one pass over the ring (≤ 500 entries); installs hooks on first use.

        Every 5 s it also looks for new event loops to hook (a walk of every thread's stack).
        """
        log = self.install()
        recent, span = log.window(60.0)
        with log.lock:
            by_source = dict(log.by_source)
            total, types_seen = log.total, len(log.by_type)
        return {
            "exceptions_total": total,
            "uncaught_total": sum(by_source.get(s, 0) for s in UNCAUGHT),
            "thread_deaths": by_source.get("thread", 0),
            "logged_total": by_source.get("logging", 0),
            "cell_errors": by_source.get("cell", 0),
            "exceptions_last_min": len(recent),
            "exceptions_per_s": round(len(recent) / span, 3) if span >= 1.0 else 0.0,
            "exception_types": types_seen,
            "observed_s": round(time.time() - log.installed_at, 1),
        }

    @probe
    def summary(self, top: int = 8) -> dict[str, Any]:
        """Counts by source and by type since the hooks went in, rates, and the hooks in place.

        Cost: O(types seen + ring of ≤ 500), well under a millisecond.

        Args:
            top: how many exception types to list, most frequent first.
        """
        log = self.install()
        now = time.time()
        recent10, span10 = log.window(10.0)
        recent60, span60 = log.window(60.0)
        with log.lock:
            by_type = sorted(log.by_type.items(), key=lambda kv: -kv[1])
            by_source = dict(log.by_source)
            total = log.total
        return {
            "observing_since_s": round(now - log.installed_at, 1),
            "exceptions_total": total,
            "by_source": by_source,
            "by_type": [{"type": t, "count": n} for t, n in by_type[: max(top, 0)]],
            "types_seen": len(by_type),
            "last_10s": {
                "count": len(recent10),
                "per_s": round(len(recent10) / span10, 3) if span10 >= 1.0 else None,
            },
            "last_60s": {
                "count": len(recent60),
                "per_s": round(len(recent60) / span60, 3) if span60 >= 1.0 else None,
                "per_min": round(len(recent60) / span60 * 60, 1) if span60 >= 1.0 else None,
            },
            "hooks": self.hooked(),
        }

    @probe(max_chars=10_000)
    def recent(self, limit: int = 8, type_name: str = "", frames: int = 6) -> dict[str, Any]:
        """The newest exceptions, newest first, each with a bounded traceback (innermost last).

        Cost: one pass over the ring (≤ 500 entries), ~1.3 ms when full.

        Args:
            limit: how many exceptions (at most 50).
            type_name: only exceptions whose type name contains this text (e.g. "KeyError").
            frames: how many innermost frames of each traceback to show (at most 12).
        """
        log = self.install()
        now = time.time()
        with log.lock:
            items = list(log.ring)
        chosen = [s for s in reversed(items) if type_name.lower() in s.type_name.lower()]
        depth = min(max(frames, 0), _MAX_FRAMES)
        return {
            "matched": len(chosen),
            "exceptions": [s.shown(now, depth) for s in chosen[: min(max(limit, 0), 50)]],
        }

    @probe(max_chars=10_000)
    def top(self, limit: int = 6, frames: int = 6, window_s: float = 60.0) -> dict[str, Any]:
        """The most frequent exceptions, grouped by type and the innermost frame.

        Each group has its count since the hooks went in, its count and rate in the recent
        window, its sources and threads, and the traceback of its latest occurrence.

        Cost: O(groups, at most 1,000) plus one pass over the ring, ~1 ms.

        Args:
            limit: how many groups (at most 30).
            frames: innermost frames shown for each group's example.
            window_s: the recent window for rates, in seconds.
        """
        log = self.install()
        now = time.time()
        recent, span = log.window(max(window_s, 1.0))
        in_window: dict[tuple[str, str], int] = {}
        for s in recent:
            in_window[s.signature] = in_window.get(s.signature, 0) + 1
        with log.lock:
            groups = [
                (
                    key,
                    sig.count,
                    sig.first,
                    sig.last,
                    dict(sig.sources),
                    set(sig.threads),
                    sig.example,
                )
                for key, sig in log.signatures.items()
            ]
        groups.sort(key=lambda g: (-in_window.get(g[0], 0), -g[1]))
        depth = min(max(frames, 0), _MAX_FRAMES)
        shown = []
        for key, count, first, last, sources, threads, example in groups[: min(max(limit, 0), 30)]:
            n = in_window.get(key, 0)
            shown.append(
                {
                    "type": key[0],
                    "where": key[1],
                    "count": count,
                    "in_window": n,
                    "per_s": round(n / span, 3) if span >= 1.0 else None,
                    "first_seen_ago_s": round(now - first, 1),
                    "last_seen_ago_s": round(now - last, 1),
                    "sources": sources,
                    "threads": [from_process(t) for t in sorted(threads)],
                    "latest": example.shown(now, depth) if example is not None else None,
                }
            )
        return {"window_s": round(span, 2), "groups_total": len(groups), "groups": shown}

    def rules(self) -> Sequence[Rule]:
        return (UncaughtExceptions(), ExceptionBurst(), PastUncaught(), PastExceptionBursts())


# -- rules ------------------------------------------------------------------------------------

#: exceptions per second (all sources) that make a burst, and a critical one
BURST_RATE = 1.0
BURST_MIN = 10
CRITICAL_RATE = 50.0


def _wants_details(ev: Evidence) -> list[ProbeCall]:
    if len(ev.snapshots) < 2 or not ev.latest("exceptions_total", 0):
        return []
    return [ProbeCall("exceptions_summary"), ProbeCall("exceptions_top", {"limit": 5})]


def _top_groups(ev: Evidence) -> list[dict[str, Any]]:
    top = ev.result("exceptions_top")
    return (
        [g for g in top.get("groups", []) if isinstance(g, dict)] if isinstance(top, dict) else []
    )


def _describe(group: dict[str, Any]) -> str:
    latest = group.get("latest") or {}
    message = latest.get("message") or ""
    threads = ", ".join(repr(t) for t in group.get("threads", [])[:3])
    return (
        f"{group['type']}({message!r}) raised at {group['where']} "
        f"(thread {threads or '?'}; seen {group['count']} time(s), sources "
        f"{', '.join(f'{k} {v}' for k, v in group.get('sources', {}).items())})"
    )


class UncaughtExceptions(Rule):
    """Exceptions nobody handled: a thread that died, an uncaught error, a failed task."""

    name = "uncaught_exceptions"
    snapshots_needed = 2
    gap = 2.0

    def wants(self, ev: Evidence) -> Sequence[ProbeCall]:
        return _wants_details(ev)

    def judge(self, ev: Evidence) -> Sequence[Finding]:
        groups = [
            g
            for g in _top_groups(ev)
            if any(s in UNCAUGHT for s in g.get("sources", {})) and g.get("in_window")
        ]
        if not groups:
            return []
        lead = groups[0]
        deaths = sum(g.get("sources", {}).get("thread", 0) for g in groups)
        latest = lead.get("latest") or {}
        trace = " <- ".join(reversed(latest.get("traceback", [])[-4:]))
        return [
            Finding(
                anomaly_type="thread_died" if deaths else "uncaught_exception",
                severity="warning",
                context=(
                    f"{sum(g['in_window'] for g in groups)} unhandled exception(s) in the last "
                    f"minute across {len(groups)} place(s); "
                    f"{deaths} thread(s) ended by an exception"
                ),
                observation=_describe(lead)
                + (f"; traceback (innermost first): {trace}" if trace else ""),
                hypothesis=(
                    "the work done by that thread or task stopped silently when it raised; nothing "
                    f"caught {lead['type']} at {lead['where']}"
                ),
            )
        ]


class ExceptionBurst(Rule):
    """One exception raised (and logged or handled) many times a second."""

    name = "exception_burst"
    snapshots_needed = 2
    gap = 2.0

    def wants(self, ev: Evidence) -> Sequence[ProbeCall]:
        return _wants_details(ev)

    def judge(self, ev: Evidence) -> Sequence[Finding]:
        summary = ev.result("exceptions_summary")
        if not isinstance(summary, dict):
            return []
        window = summary.get("last_10s") or {}
        rate, count = window.get("per_s"), int(window.get("count") or 0)
        if rate is None or rate < BURST_RATE or count < BURST_MIN:
            return []
        groups = [g for g in _top_groups(ev) if g.get("in_window")]
        if not groups:
            return []
        lead = groups[0]
        severity: Severity = "critical" if rate >= CRITICAL_RATE else "warning"
        return [
            Finding(
                anomaly_type="exception_burst",
                severity=severity,
                context=(
                    f"{count} exceptions in the last 10 s ({rate:.1f}/s); "
                    f"{summary.get('exceptions_total')} since the hooks went in "
                    f"{summary.get('observing_since_s')} s ago"
                ),
                observation=(
                    f"{_describe(lead)} at {lead.get('per_s') or 0:.1f}/s over the last "
                    f"{ev.result('exceptions_top', {}).get('window_s')} s"
                ),
                hypothesis=(
                    f"a failure repeating in a loop: {lead['type']} at {lead['where']} is raised "
                    "again and again (a retry without backoff, or bad input replayed)"
                ),
            )
        ]
