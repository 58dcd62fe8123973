"""The `exceptions` skill: exceptions the process raised and did not handle, or logged.

The skill installs no hooks of its own: the flight recorder's exceptions observer
(`lensbook.recorder.exceptions`) is the one set, chained to whatever was there before. On
first use (a snapshot or a probe) the skill starts the recorder as an owner ("exceptions",
so a recorder already running keeps its hooks and gains none) and listens to every occurrence
it sees; `ExceptionsSkill.close()` stops listening and drops that owner, which takes the hooks
out exactly as they were when no other owner is left. The routes, named here as sources:

- ``sys.excepthook`` ("excepthook"): uncaught exceptions of the main thread;
- ``threading.excepthook`` and ``_thread`` threads ("thread"): exceptions that ended a thread;
- asyncio exception handlers of the loops lensbook knows ("asyncio": the lens loop, and loops
  registered with the asyncio skill): "Task exception was never retrieved", failing callbacks;
- logged tracebacks ("logging"): records with ``exc_info`` (``log.exception``);
- IPython cells that raised ("cell", a ``post_run_cell`` callback), when a shell exists.

One exception seen by two routes (asyncio's default handler logs what it handles) counts once.
"""

from __future__ import annotations

import contextlib
import linecache
import threading
import time
import traceback
import types
from collections import deque
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any, ClassVar

from lensbook.recorder.loops import known_loops
from lensbook.skills import intrusion
from lensbook.skills._frames import exception_type_name as _type_name
from lensbook.skills._frames import origin
from lensbook.skills._frames import short_path as _short_path
from lensbook.skills._ipython import shell as _ipython_shell
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


#: the recorder's routes as this skill names its sources
_SOURCES = {
    "main": "excepthook",
    "thread": "thread",
    "task": "asyncio",
    "callback": "asyncio",
    "logged": "logging",
    "cell": "cell",
}
#: the owner name the skill starts the recorder as
OWNER = "exceptions"


@dataclass
class _Listening:
    """The skill's listener on the recorder, to take off again."""

    listener: Callable[[BaseException | None, str, str], None]
    change: intrusion.Change | None = None
    active: bool = True


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
        self._hooks: _Listening | None = None
        self._lock = threading.Lock()
        self._loops_checked = -1e9

    # -- hooks (the recorder's) -----------------------------------------------------------

    def install(self) -> _ExceptionLog:
        """Listen to the recorder, starting it (idempotent; loops and a shell that appeared
        later are hooked by it)."""
        from lensbook.recorder.api import recorder

        with self._lock:
            if self._log is None or self._hooks is None:
                self._log = _ExceptionLog(self.max_records)
                self._hooks = self._listen(self._log)
            now = time.monotonic()
            # finding loops walks every thread's stack: look again every few seconds only
            if now - self._loops_checked >= 5.0:
                self._loops_checked = now
                recorder.exceptions.hook_loops(known_loops())
                recorder.exceptions.hook_shell(_ipython_shell())
            return self._log

    def _listen(self, log: _ExceptionLog) -> _Listening:
        from lensbook.recorder.api import recorder

        def listener(exc: BaseException | None, route: str, message: str) -> None:
            if hooks.active:
                log.record(exc, _SOURCES.get(route, route), message)

        hooks = _Listening(listener)
        recorder.exceptions.listeners.append(listener)
        recorder.start(OWNER, sample_interval=None)
        # removed by lensbook.stop() and at exit
        hooks.change = intrusion.switch_on(
            "exception hooks", self.close, max_seconds=None, session=True
        )
        return hooks

    def close(self) -> None:
        """Stop listening and drop the skill's hold on the recorder (its hooks go when no
        other owner is left; one someone else wrapped since is made a pass-through)."""
        from lensbook.recorder.api import recorder

        with self._lock:
            hooks, self._hooks, self._log = self._hooks, None, None
            self._loops_checked = -1e9
        if hooks is None:
            return
        hooks.active = False
        if hooks.change is not None:
            hooks.change.forget()
        with contextlib.suppress(ValueError):
            recorder.exceptions.listeners.remove(hooks.listener)
        recorder.stop(OWNER)

    def hooked(self) -> dict[str, Any]:
        """Which hooks are in place now (the recorder's, and whether still first in line)."""
        from lensbook.recorder.api import recorder

        if self._hooks is None:
            return {"installed": False}
        return {"installed": True, **recorder.exceptions.hooks_state()}

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


class _FromDetails(Rule):
    """A rule judged from the summary and top groups, asked for once exceptions were seen."""

    snapshots_needed = 2
    gap = 2.0

    def wants(self, ev: Evidence) -> Sequence[ProbeCall]:
        return _wants_details(ev)


class UncaughtExceptions(_FromDetails):
    """Exceptions nobody handled: a thread that died, an uncaught error, a failed task."""

    name = "uncaught_exceptions"

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


class ExceptionBurst(_FromDetails):
    """One exception raised (and logged or handled) many times a second."""

    name = "exception_burst"

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
