"""The `tracer` skill: count and time the calls of one named function for a short window.

The function, named ``module.qualname`` (``app.db.Pool.get``, ``urllib.request.urlopen``), is
looked up in modules already loaded (nothing is imported) and replaced, in the module or class
that defines it, by a wrapper that records the duration, caller, thread and exception of each
call. The original object is put back when the window ends, when the call limit is reached, or
when anything fails. Only calls that look the function up by its attribute while the window is
open are seen: a reference taken before (``from m import f``, a stored callback) bypasses the
wrapper, and one taken during the window keeps a pass-through wrapper that records nothing
afterwards.

Why wrap rather than profile: `sys.setprofile` hooks every call of every function (a large
slowdown everywhere) and, before Python 3.12, cannot reach threads that already run; a wrapper
costs ~3 µs on the traced function's calls only.

Doing no harm: a wrapper put on a function that lensbook, the lens loop or the interpreter's own
machinery calls would run inside that machinery (``builtins.len`` deadlocked on the tracer's own
lock, ``time.monotonic`` recursed until the lens-loop thread died). So such targets are refused
(`refusal`): builtins, the modules lensbook and its loop run on, lensbook itself, C accelerator
modules. The wrapper's bookkeeping is also guarded per thread (`_Guard`, a `threading.local`
whose attribute reads are C code that cannot be wrapped): a call made while the same thread is
already recording passes straight through, so no target can recurse into the recorder or wait
on its lock. Its helpers (clock, thread name, random) are bound at import, not looked up by
attribute at call time. Each window is entered in `lensbook.skills.intrusion`, so the run's
end, `lensbook.stop()` and exit put the original back even if the window's thread is stuck.
"""

from __future__ import annotations

import contextlib
import functools
import inspect
import random
import re
import sys
import threading
import time
import types
from collections import Counter
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field
from typing import Any

from lensbook.skills import _history, intrusion
from lensbook.skills._frames import origin as code_origin
from lensbook.skills._frames import short_path
from lensbook.skills.base import Skill, probe
from lensbook.skills.rules import Evidence, Finding, ProbeCall, Rule
from lensbook.skills.untrusted import ProcessText, from_process
from lensbook.types import Severity

__all__ = ["TracerSkill", "active_traces"]


MAX_SECONDS = 10.0
MAX_CALLS = 100_000
_MAX_CALLERS = 200
_RESERVOIR = 2000

#: top-level modules whose functions are never wrapped: lensbook, its lens loop, its
#: dependencies on the probe path and the interpreter's machinery call them (a wrapper there
#: would run inside lensbook's own bookkeeping, or slow every call in the process)
REFUSED_MODULES = frozenset(
    """
    builtins sys time threading asyncio concurrent selectors select socket signal atexit
    functools itertools operator collections heapq bisect random types typing abc inspect
    weakref contextvars queue copy copyreg gc tracemalloc faulthandler traceback linecache
    logging warnings importlib pkgutil zipimport encodings codecs io os posixpath genericpath
    stat re sre_compile sre_parse json enum dataclasses string textwrap reprlib pickle struct
    lensbook pydantic pydantic_core typing_extensions annotated_types psutil re2 anthropic
    openai httpx httpcore h11 anyio sniffio certifi ssl IPython ipykernel jupyter_client zmq
    tornado traitlets comm ipywidgets
    """.split()  # noqa: SIM905 (a word list reads better than 80 quoted strings)
)
#: special methods called implicitly by the interpreter on every attribute access or deletion
_REFUSED_ATTRS = frozenset(
    {"__getattribute__", "__getattr__", "__setattr__", "__delattr__", "__del__", "__hash__"}
)

_now = time.perf_counter
_monotonic = time.monotonic
_getframe = sys._getframe
_current_thread = threading.current_thread
_random = random.Random()


class _Guard(threading.local):
    """Per-thread flag: set while this thread runs the wrapper's own bookkeeping."""

    busy = False


_guard = _Guard()

# -- finding the function -------------------------------------------------------------------


@dataclass(frozen=True)
class _Target:
    name: str
    owner: Any  # the module or class whose __dict__ holds the attribute
    attr: str
    original: Any  # the object found in owner.__dict__ (function, staticmethod, builtin...)
    func: Callable[..., Any]  # what the wrapper calls
    kind: str

    @property
    def key(self) -> tuple[int, str]:
        return (id(self.owner), self.attr)


def _defined_at(func: Any) -> str | None:
    code = getattr(func, "__code__", None)
    if isinstance(code, types.CodeType):
        return f"{short_path(code.co_filename)}:{code.co_firstlineno}"
    return None


def _marked(text: str | None) -> ProcessText | None:
    return from_process(text) if text is not None else None


def resolve_target(name: str) -> _Target:
    """Find ``module.qualname`` among loaded modules; raises `ValueError` saying why not."""
    parts = name.strip().split(".")
    if len(parts) < 2 or not all(p.isidentifier() for p in parts):
        raise ValueError(
            f"{name!r} is not a dotted name: give module.qualname, e.g. app.db.Pool.get"
        )
    module: types.ModuleType | None = None
    split = 0
    for split in range(len(parts) - 1, 0, -1):
        found = sys.modules.get(".".join(parts[:split]))
        if isinstance(found, types.ModuleType):
            module = found
            break
    if module is None:
        raise ValueError(
            f"no loaded module is a prefix of {name!r}; the tracer imports nothing, so name a "
            "function of a module the process has imported"
        )
    owner: Any = module
    for part in parts[split:-1]:
        value = vars(owner).get(part) if isinstance(owner, types.ModuleType) else None
        if isinstance(owner, type):
            value = next((vars(k)[part] for k in owner.__mro__ if part in vars(k)), None)
        if not isinstance(value, type):
            raise ValueError(f"{part!r} in {name!r} is not a class of {owner!r}")
        owner = value
    attr = parts[-1]
    if isinstance(owner, type):
        definer = next((k for k in owner.__mro__ if attr in vars(k)), None)
        if definer is None:
            raise ValueError(f"{owner.__qualname__} has no attribute {attr!r}")
        owner = definer
    if attr not in vars(owner):
        raise ValueError(f"{getattr(owner, '__name__', owner)} has no attribute {attr!r}")
    raw = vars(owner)[attr]
    in_class = isinstance(owner, type)
    if isinstance(raw, staticmethod):
        func, kind = raw.__func__, "staticmethod"
    elif isinstance(raw, classmethod):
        func, kind = raw.__func__, "classmethod"
    elif isinstance(raw, types.FunctionType):
        func, kind = raw, "method" if in_class else "function"
    elif isinstance(raw, types.BuiltinFunctionType) and not in_class:
        func, kind = raw, "builtin function"
    elif isinstance(raw, property):
        raise ValueError(f"{name!r} is a property; trace the function its getter calls")
    else:
        raise ValueError(
            f"{name!r} is a {type(raw).__name__}, not a function or method the tracer can wrap"
        )
    if inspect.iscoroutinefunction(func):
        kind = f"coroutine {kind}"
    elif inspect.isgeneratorfunction(func) or inspect.isasyncgenfunction(func):
        kind = f"generator {kind}"
    return _Target(name=name, owner=owner, attr=attr, original=raw, func=func, kind=kind)


def _top_module(name: object) -> str:
    return name.split(".", 1)[0] if isinstance(name, str) else ""


def refusal(target: _Target) -> str | None:
    """Why the tracer must not wrap `target` (None when it may)."""
    owner = target.owner
    owner_module = owner.__name__ if isinstance(owner, types.ModuleType) else owner.__module__
    for where in (_top_module(owner_module), _top_module(getattr(target.func, "__module__", ""))):
        if where in REFUSED_MODULES or where.startswith("_"):
            return (
                f"{target.name} is refused: {where!r} is part of the machinery lensbook and the "
                "interpreter run on (builtins, time, threading, sys, asyncio, functools, "
                "logging, lensbook itself, C accelerator modules...); wrapping it could hang "
                "or crash the process. Trace a function of the application or of a library "
                "it uses instead"
            )
    if target.attr in _REFUSED_ATTRS:
        return f"{target.name} is refused: the interpreter calls {target.attr} implicitly"
    bound_to = getattr(target.func, "__self__", None)
    if target.kind.startswith("builtin") and isinstance(bound_to, types.ModuleType):
        module = bound_to.__name__
        if _top_module(module) in REFUSED_MODULES or module.startswith("_"):
            return f"{target.name} is refused: it is {module}.{target.func.__name__}"
    return None


# -- one tracing window ---------------------------------------------------------------------


@dataclass
class _Session:
    target: _Target
    max_calls: int
    deadline: float
    active: bool = True
    recorded: int = 0
    finished: int = 0
    not_recorded: int = 0
    total: float = 0.0
    longest: float = 0.0
    shortest: float = float("inf")
    reservoir: list[float] = field(default_factory=list)
    #: (caller's code, line) -> [count, total seconds]; formatted only in the report
    callers: dict[tuple[types.CodeType, int] | None, list[float]] = field(default_factory=dict)
    threads: Counter[str] = field(default_factory=Counter)
    exceptions: Counter[str] = field(default_factory=Counter)
    full: threading.Event = field(default_factory=threading.Event)
    lock: threading.Lock = field(default_factory=threading.Lock)

    def begin(self) -> bool:
        """Whether this call is recorded (the window is open and the limit not reached)."""
        if not self.active or _monotonic() > self.deadline:
            return False
        with self.lock:
            if self.recorded >= self.max_calls:
                self.not_recorded += 1
                self.full.set()
                return False
            self.recorded += 1
            return True

    def end(self, elapsed: float, caller: types.FrameType | None, error: str | None) -> None:
        where = (caller.f_code, caller.f_lineno) if caller is not None else None
        thread = _current_thread().name
        with self.lock:
            self.finished += 1
            self.total += elapsed
            self.longest = max(self.longest, elapsed)
            self.shortest = min(self.shortest, elapsed)
            if len(self.reservoir) < _RESERVOIR:
                self.reservoir.append(elapsed)
            else:  # a uniform sample of all durations
                slot = _random.randrange(self.finished)
                if slot < _RESERVOIR:
                    self.reservoir[slot] = elapsed
            if where not in self.callers and len(self.callers) >= _MAX_CALLERS:
                where = None  # reported as "(other callers)"
            entry = self.callers.setdefault(where, [0, 0.0])
            entry[0] += 1
            entry[1] += elapsed
            self.threads[thread] += 1
            if error is not None:
                self.exceptions[error] += 1


def _wrapper(session: _Session) -> Callable[..., Any]:
    func = session.target.func
    timed = "generator" not in session.target.kind

    if inspect.iscoroutinefunction(func):

        @functools.wraps(func)
        async def traced_coroutine(*args: Any, **kwargs: Any) -> Any:
            if not _begin(session):
                return await func(*args, **kwargs)
            caller = _getframe(1)
            started = _now()
            error = None
            try:
                return await func(*args, **kwargs)
            except BaseException as exc:
                error = type(exc).__name__
                raise
            finally:
                _end(session, _now() - started, caller, error)
                del caller

        return traced_coroutine

    @functools.wraps(func)
    def traced(*args: Any, **kwargs: Any) -> Any:
        if not _begin(session):
            return func(*args, **kwargs)
        caller = _getframe(1)
        started = _now()
        error = None
        try:
            return func(*args, **kwargs)
        except BaseException as exc:
            error = type(exc).__name__
            raise
        finally:
            _end(session, _now() - started if timed else 0.0, caller, error)
            del caller

    return traced


def _begin(session: _Session) -> bool:
    """`session.begin()` unless this thread is already inside the recorder (then: untraced)."""
    if _guard.busy:
        return False
    _guard.busy = True
    try:
        return session.begin()
    finally:
        _guard.busy = False


def _end(
    session: _Session, elapsed: float, caller: types.FrameType | None, error: str | None
) -> None:
    if _guard.busy:  # a call made by the recorder itself; never recorded, never re-entered
        return
    _guard.busy = True
    try:
        session.end(elapsed, caller, error)
    finally:
        _guard.busy = False


_active: dict[tuple[int, str], _Session] = {}
_active_lock = threading.Lock()


def active_traces() -> list[str]:
    """Names of the functions wrapped right now (empty between windows)."""
    with _active_lock:
        return [s.target.name for s in _active.values()]


@contextlib.contextmanager
def _installed(session: _Session) -> Iterator[intrusion.Change]:
    """Put the wrapper in place for the `with` block, and the original back afterwards.

    The wrapping is entered in the intrusion ledger: whoever drains it first (this block's
    end, the run's end, `lensbook.stop()`, exit, the window's time limit) restores the original
    and wakes the window's thread.
    """
    target = session.target
    why = refusal(target)
    if why is not None:
        raise ValueError(why)
    with _active_lock:
        if target.key in _active:
            raise ValueError(f"{target.name} is already being traced; wait for that window")
        _active[target.key] = session
    wrapped: Any = _wrapper(session)
    if target.kind.endswith("staticmethod"):
        wrapped = staticmethod(wrapped)
    elif target.kind.endswith("classmethod"):
        wrapped = classmethod(wrapped)

    def restore() -> None:
        session.active = False
        # put back the very object we found, unless someone replaced ours meanwhile
        if vars(target.owner).get(target.attr) is wrapped:
            setattr(target.owner, target.attr, target.original)
        session.full.set()  # wake the window's thread: the window is over

    try:
        try:
            setattr(target.owner, target.attr, wrapped)
        except (TypeError, AttributeError) as exc:  # an immutable (C) type
            raise ValueError(f"{target.name} cannot be wrapped: {exc}") from None
        change = intrusion.switch_on(
            "tracer",
            restore,
            max_seconds=max(session.deadline - _monotonic(), 0.0) + 1.0,
            detail=target.name,
        )
        try:
            yield change
        finally:
            change.undo("window ended")
    finally:
        with _active_lock:
            _active.pop(target.key, None)


def _where(caller: tuple[types.CodeType, int] | None) -> str:
    if caller is None:
        return "(other callers)"
    code, line = caller
    return f"{short_path(code.co_filename)}:{line} in {getattr(code, 'co_qualname', code.co_name)}"


def _ms(seconds: float) -> float:
    return round(seconds * 1000, 4)


def _report(session: _Session, window: float, stopped_by: str) -> dict[str, Any]:
    target = session.target
    with session.lock:
        durations = sorted(session.reservoir)
        finished = session.finished
        report: dict[str, Any] = {
            "target": target.name,
            "kind": target.kind,
            "defined_at": _marked(_defined_at(target.func)),
            "window_s": round(window, 3),
            "stopped_by": stopped_by,
            "calls": finished,
            "calls_per_s": round(finished / window, 1) if window > 0 else None,
            "calls_not_recorded": session.not_recorded,
            "in_flight_at_end": session.recorded - finished,
            "restored": vars(target.owner).get(target.attr) is target.original,
        }
        if finished and "generator" not in target.kind:
            report.update(
                mean_ms=_ms(session.total / finished),
                p50_ms=_ms(durations[len(durations) // 2]),
                p95_ms=_ms(durations[min(len(durations) - 1, int(len(durations) * 0.95))]),
                max_ms=_ms(session.longest),
                min_ms=_ms(session.shortest),
                total_ms=_ms(session.total),
                busy_share_of_window=round(session.total / window, 3) if window > 0 else None,
            )
        elif "generator" in target.kind:
            report["durations"] = "not measured: a generator function returns at once"
        callers = sorted(session.callers.items(), key=lambda kv: -kv[1][0])[:10]
        # callers' paths and names, thread names and exception type names are the process's text
        report["callers"] = [
            {
                "at": from_process(_where(where)),
                "calls": int(n),
                "mean_ms": _ms(total / n) if n else None,
            }
            for where, (n, total) in callers
        ]
        report["threads"] = {from_process(k): n for k, n in session.threads.most_common(5)}
        report["exceptions"] = {from_process(k): n for k, n in session.exceptions.most_common(5)}
    report["coverage"] = (
        "calls through references taken before the window (from m import f, stored callbacks) "
        "are not seen"
    )
    return report


def _history_detail(report: dict[str, Any]) -> dict[str, Any]:
    """What of a window the flight recorder keeps (a ``trace`` event), so a later run can set
    its own window beside this one: the counts and durations, the three busiest callers."""
    keys = ("target", "kind", "window_s", "stopped_by", "calls", "calls_per_s")
    detail: dict[str, Any] = {k: report.get(k) for k in keys}
    detail["defined_at"] = str(report.get("defined_at") or "")
    for key in ("mean_ms", "p95_ms", "max_ms"):
        if key in report:
            detail[key] = report[key]
    detail["exceptions"] = sum(report.get("exceptions", {}).values())
    detail["callers"] = [
        {"at": str(c["at"]), "calls": c["calls"], "mean_ms": c["mean_ms"]}
        for c in report.get("callers", [])[:3]
    ]
    return detail


# -- the skill ------------------------------------------------------------------------------


class TracerSkill(Skill):
    id = "tracer"
    title = "Call tracer"
    description = "Count and time the calls of one named function for a short window"
    system_prompt = (
        "You are the tracer operator of a live Python process. You can trace one function at a "
        "time, named module.qualname, for a few seconds: how often it is called, how long calls "
        "take (mean, p95, max), who calls it, from which threads, and what it raises. Find the "
        "name first (tracer_find) if you only know part of it. Use short windows: the wrapper "
        "is removed afterwards. Judge durations against what the function should cost, and "
        "name the callers responsible for most calls or most time."
    )
    # what the coordinator and the watcher know of it (see `Skill`)
    counters = frozenset({"traces_run", "calls_traced"})

    def __init__(self) -> None:
        self._runs = 0
        self._calls = 0

    def snapshot(self) -> dict[str, Any]:
        """Cost: microseconds."""
        return {
            "active_traces": len(active_traces()),
            "traces_run": self._runs,
            "calls_traced": self._calls,
        }

    @probe(budget=MAX_SECONDS + 2.0, max_chars=5000, intrusive="wraps one function")
    def trace(self, target: str, seconds: float = 2.0, max_calls: int = 10_000) -> dict[str, Any]:
        """Trace one function for a short window: call count, mean/p95/max duration, callers,
        threads and exceptions. The function is wrapped in place and restored afterwards.

        Args:
            target: module.qualname of a function or method of a loaded module, e.g.
                app.db.Pool.get or urllib.request.urlopen.
            seconds: the window (0.1 to 10); it ends early when max_calls is reached.
            max_calls: calls recorded at most (1 to 100000); later calls run untraced.

        Cost: the window's length in wall time; ~3 µs more per call of the traced function
        only (at most max_calls calls are timed).
        """
        seconds = min(max(seconds, 0.1), MAX_SECONDS)
        max_calls = min(max(max_calls, 1), MAX_CALLS)
        resolved = resolve_target(target)
        session = _Session(resolved, max_calls, time.monotonic() + seconds)
        started = time.monotonic()
        with _installed(session) as change:
            session.full.wait(seconds)
            ended_early = change.undone_by  # the run ended, lensbook stopped, ...
            stopped_by = ended_early or ("max_calls" if session.full.is_set() else "time")
        window = time.monotonic() - started
        self._runs += 1
        self._calls += session.finished
        report = _report(session, window, stopped_by)
        _history.write("trace", resolved.name, _history_detail(report))
        return report

    @probe
    def find(self, name: str, limit: int = 20) -> dict[str, Any]:
        """Functions and methods of loaded modules whose qualified name contains `name`, to
        find the module.qualname to trace. User code first, then libraries, then the stdlib.

        Args:
            name: part of the function's name, case-insensitive (e.g. "dumps", "Pool.get").
            limit: at most this many matches.

        Cost: walks the namespaces of loaded modules and their classes (~20-100 ms), stops
        after 1 s.
        """
        needle = name.strip().lower()
        if not needle:
            raise ValueError("give part of a function name")
        deadline = time.monotonic() + 1.0
        found: dict[str, tuple[int, int, str]] = {}
        rank = {"user": 0, "library": 1, "lensbook": 2, "stdlib": 3}
        modules: list[tuple[str, Any]] = list(sys.modules.items())
        for modname, module in modules:
            if time.monotonic() > deadline:
                break
            if not isinstance(module, types.ModuleType):
                continue
            top = _top_module(modname)
            if top in REFUSED_MODULES or top.startswith("_"):
                continue  # tracer_trace would refuse it: do not offer it
            try:
                items = list(vars(module).items())
            except TypeError:
                continue
            for attr, value in items:
                if getattr(value, "__module__", None) != modname:
                    continue  # imported from elsewhere: listed under its own module
                candidates: list[tuple[str, Any]] = [(attr, value)]
                if isinstance(value, type):
                    candidates = [(f"{attr}.{k}", v) for k, v in list(vars(value).items())]
                for qual, obj in candidates:
                    func = obj.__func__ if isinstance(obj, (staticmethod, classmethod)) else obj
                    if not isinstance(func, (types.FunctionType, types.BuiltinFunctionType)):
                        continue
                    full = f"{modname}.{qual}"
                    lowered = qual.lower()
                    if needle not in lowered or full in found:
                        continue
                    exact = 0 if lowered == needle or lowered.endswith("." + needle) else 1
                    code = getattr(func, "__code__", None)
                    origin = code_origin(code.co_filename) if code is not None else "stdlib"
                    found[full] = (exact, rank.get(origin, 3), _defined_at(func) or "built-in")
        ordered = sorted(found.items(), key=lambda kv: (kv[1][0], kv[1][1], kv[0]))
        return {
            "matches": [
                {"target": from_process(k), "defined_at": from_process(v[2])}
                for k, v in ordered[: max(limit, 1)]
            ],
            "more": max(0, len(ordered) - max(limit, 1)),
        }

    def rules(self) -> Sequence[Rule]:
        return (TraceNamedFunction(),)

    def close(self) -> None:
        """Nothing to undo between windows: every wrapper is removed when its window ends."""


# -- rules for the offline investigator -----------------------------------------------------

_DOTTED = re.compile(r"`?\b([A-Za-z_][A-Za-z0-9_]*(?:\.[A-Za-z_][A-Za-z0-9_]*)+)\b`?")


def target_from(ev: Evidence) -> str | None:
    """The function to trace: the context's "target"/"function", else a dotted name in the
    reason (the first in backquotes, else the first with a dot)."""
    for key in ("target", "function"):
        value = ev.context.get(key)
        if isinstance(value, str) and value.strip():
            return value.strip()
    quoted = re.findall(r"`([A-Za-z_][\w.]*\.[A-Za-z_]\w*)`", ev.reason)
    if quoted:
        return str(quoted[0])
    match = _DOTTED.search(ev.reason)
    return match.group(1) if match else None


class TraceNamedFunction(Rule):
    """Trace the function the investigation is about, and say what its calls cost, beside the
    last earlier window on it that the flight recorder kept (a ``trace`` event)."""

    name = "trace_function"
    seconds = 2.0
    slow_ms = 500.0
    history_kinds = ("trace",)

    def wants(self, ev: Evidence) -> Sequence[ProbeCall]:
        target = target_from(ev)
        if target:
            return [ProbeCall("tracer_trace", {"target": target, "seconds": self.seconds})]
        return []

    def judge(self, ev: Evidence) -> Sequence[Finding]:
        target = target_from(ev)
        if target is None:
            return []
        if "tracer_trace" in ev.errors:
            return [
                Finding(
                    anomaly_type="trace_failed",
                    severity="info",
                    context=f"tracing {target}",
                    observation=ev.errors["tracer_trace"][-1][:500],
                )
            ]
        r = ev.result("tracer_trace")
        if not isinstance(r, dict):
            return []
        if not r.get("calls"):
            return [
                Finding(
                    anomaly_type="no_calls",
                    severity="info",
                    context=f"{r['target']} ({r.get('kind')}) traced for {r.get('window_s')} s",
                    observation=f"No call of {r['target']} was seen in the window.",
                    hypothesis="It is idle now, or it is called through a reference taken "
                    "before tracing began (from m import f, a stored callback).",
                )
            ]
        callers = "; ".join(f"{c['at']} x{c['calls']}" for c in r.get("callers", [])[:3])
        profile = (
            f"{r['calls']} calls in {r['window_s']} s ({r.get('calls_per_s')}/s): mean "
            f"{r.get('mean_ms')} ms, p95 {r.get('p95_ms')} ms, max {r.get('max_ms')} ms; "
            f"callers: {callers}"
        )
        errors = sum(r.get("exceptions", {}).values())
        # every verdict on a traced target names it and where it is defined the same way
        context = f"{r['target']} defined at {r.get('defined_at')}"
        verdicts: list[tuple[str, Severity, str, str | None]] = []
        if (r.get("p95_ms") or 0.0) >= self.slow_ms:
            verdicts.append(
                (
                    "slow_calls",
                    "warning",
                    f"{r['target']} is slow: {profile}.",
                    "Each call waits on something (I/O, a lock) or does too much "
                    "work; look at the slowest caller first.",
                )
            )
        if errors and errors >= 0.5 * r["calls"]:
            verdicts.append(
                (
                    "failing_calls",
                    "warning",
                    f"{errors} of {r['calls']} calls raised: {r.get('exceptions')}.",
                    None,
                )
            )
        if not verdicts:
            verdicts.append(("call_profile", "info", profile + ".", None))
        before, cited = _earlier_window(ev, r)
        return [
            Finding(
                anomaly_type=kind,
                severity=severity,
                context=context,
                observation=obs + before,
                hypothesis=hyp,
                history_ids=cited,
            )
            for kind, severity, obs, hyp in verdicts
        ]


def _earlier_window(ev: Evidence, now: dict[str, Any]) -> tuple[str, tuple[str, ...]]:
    """A sentence on the newest window on the same target that the history holds (from before
    this run: "Earlier, at ...") and its id; ("", ()) when there is none."""
    earlier = [
        e
        for e in ev.history_of("trace")
        if isinstance(e.get("detail"), dict) and e["detail"].get("target") == now.get("target")
    ]
    if not earlier:
        return "", ()
    last = earlier[-1]
    d = last["detail"]
    timing = (
        f", mean {d.get('mean_ms')} ms, p95 {d.get('p95_ms')} ms, max {d.get('max_ms')} ms"
        if d.get("calls") and "p95_ms" in d
        else ""
    )
    text = (
        f" Earlier, at {_history.clock(float(last.get('time') or 0))} UTC, a {d.get('window_s')} s "
        f"window saw {d.get('calls')} calls ({d.get('calls_per_s')}/s){timing}."
    )
    return text, (str(last.get("id")),)
