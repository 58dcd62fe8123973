"""Thread observer: births and deaths, grouped by kind (target function and the code that started
the thread), so growth by kind and silent deaths are answerable afterwards.

Python has no thread-start hook, so ``Thread.start`` is wrapped, chained to what was there
before and put back by `remove()` (only if still ours). In the starting thread it notes the
target and the first caller frame in the user's code (the user's call to ``executor.submit``
rather than ``concurrent.futures``'s ``_adjust_thread_count``), with the first library frame
below it as detail (``via``) when a library started the thread for the user; without a user
frame, the first library frame.

Ends are noticed later, off the ending thread's path (nothing runs in the new thread) and off
the starting thread's too: the starting thread gives the `Thread` object one private attribute,
``_lensbook_kind`` (its kind: the only thing lensbook writes on it; nothing of the thread is
kept by lensbook, and the attribute goes with the object), and `settle()` (run by every flush,
so before every read of the history) derives each kind's ends: its starts less its threads
still in ``threading.enumerate()`` (a started thread is there until it has finished), read by
that attribute. Ends are a difference, never a count of notices, so none is lost; the settle
reads the totals before the threads alive, so a start racing with it can only make an estimate
low, never high, and the total kept never goes down (the next settle catches up). The
attribute is written past any ``__setattr__`` of a subclass (no user code runs) and read the
same way.
The threads whose start became an event, and those that died, are also kept by weak reference
(few: the event gate's) so their ends become ``thread_ended`` events with their names; such an
end is timed when it is noticed (at most a flush interval late), and ``lived_s`` is an upper
bound. A death by exception stays exact: it comes from the exceptions observer's
``threading.excepthook``, in the dying thread.

Threads started with ``_thread.start_new_thread`` (not through `threading.Thread`) never reach
that method, so that module function is wrapped too (``threading`` keeps its own reference
to the original, so a `Thread` is never counted twice). The wrapper hands the new thread a
`_RawRun` around the user's function: it counts the end (in that thread: there is no `Thread`
to look for) and, since such a thread's exception goes to ``sys.unraisablehook`` rather than
``threading.excepthook``, a death by exception (then re-raised, so the unraisable hook prints
what it always printed: `_RawRun`'s repr is the function's). Only callers that look the
function up on ``_thread`` at call time are seen; a reference taken before `install()`
(``from _thread import start_new_thread``) is not.

Threads already alive when the hooks go in were started unseen: `install` notes each one's
target (read from the Thread's attributes, or the ``run`` its class defines; no user code runs)
and the frame of the user's code it was in then (from ``sys._current_frames()``), so `creator`
answers "started before lensbook loaded; runs fn at file:line" for them instead of nothing.

Per thread start the hot path is a frame walk of a few steps (whether a code object is the stdlib's
is cached) and a few dict updates, with no lock. Most starts take a shortcut past it: the user's
code starting, from a call site seen before, a target of the same code (a function, a closure or a
bound method's function, by its code's id; a class, by itself) as last time, once its kind's starts
are no events: one dict lookup, the call site's code and offset compared (on every start: a rarely
used site, such as a retry path that leaks threads, is never counted as a busy one), and the
attribute. A shortcut start costs about 3,000 instructions next to the ~98,000 of a bare
start-and-join (`benchmarks/bench_recorder_instructions.py`); in thread churn every start runs with
cold caches, where each of its steps costs tenths of a microsecond (`benchmarks/bench_recorder.py`).
A race between two starting threads may lose one count, never a thread. The first few threads per
kind and minute become ``thread_started`` events, and their ends (and those of the threads that
died) ``thread_ended`` events; every flush adds one ``thread_growth`` event per kind that started or
ended threads since the last flush, with the number alive.
"""

from __future__ import annotations

import _thread
import functools
import re
import sys
import threading
import time
import types
import weakref
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from lensbook.recorder.event import HistoryEvent, make_event
from lensbook.recorder.frames import callable_name, code_origin, thread_name, where
from lensbook.recorder.ring import HistoryRing
from lensbook.skills._frames import code_site, first_user_frame
from lensbook.skills._stacks import current_frames, describe_frame, qualname
from lensbook.skills._static import stored_attr

__all__ = ["ThreadObserver"]

_MAX_KINDS = 500
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
_IS_ALIVE = threading.Thread.is_alive
_THREAD = threading.Thread
#: the attribute a started `Thread` carries: its kind (see the module's docstring)
_KIND_ATTR = "_lensbook_kind"
_SETATTR = object.__setattr__
_GETATTRIBUTE = object.__getattribute__
_MAX_NOTED = 10_000  # threads whose end becomes an event (their start did, or they died)


@dataclass(slots=True)
class _Noted:
    """A thread whose end becomes an event: a weak reference to it (nothing of it is kept)."""

    ref: weakref.ref[threading.Thread]
    kind: _Kind
    name: str
    born: float | None  # when its start was recorded (None: noted for its death)
    died: bool = False


@dataclass(slots=True)
class _Kind:
    target: str
    started_from: str
    starter_function: str
    name_pattern: str
    started: int = 0
    #: derived by each settle for `Thread` starts (never lower than before); ``_thread`` ends
    #: are counted in `raw_ended` and added
    ended: int = 0
    died: int = 0
    #: of `started`: those by ``_thread.start_new_thread`` (their ends are counted)
    raw_started: int = 0
    raw_ended: int = 0
    # the totals at the last flush: the flush's window is the difference (the hot path only
    # bumps the totals)
    flushed_started: int = 0
    flushed_ended: int = 0
    flushed_died: int = 0
    # the first `_GATE_BURST` starts (and ``_thread`` ends) per kind and minute become events:
    # the totals when the gate's minute began (moved on by the flush, never on the hot path)
    gate_start: float = 0.0
    gate_started: int = 0
    gate_ended: int = 0
    #: the objects whose ids make the kind's key (kept alive so the ids stay theirs): the
    #: target's key and the starting code (two fields: a tuple of them costs 64 bytes a kind)
    held: Any = None
    held_code: Any = None
    #: for pool workers: the distinct pools ("ThreadPoolExecutor-7") their threads belong to;
    #: many pools started from one place is a pool per call, never shut down
    pools: set[str] | None = None
    #: the library frame that started the thread for the user's code ("" when none)
    via: str = ""
    #: the instruction offset of the user's call to ``start()`` in `held_code`, when the
    #: user's code started the thread itself (-1 when a library did): with `held_code`, the
    #: call site the start wrapper's shortcut compares (see `ThreadObserver._direct`)
    site_lasti: int = -1
    #: what the shortcut looks the kind up by (see `_shortcut_key`): the id of its target's
    #: code (a function's, closures' and bound methods' alike; the code is `held`), or the class
    shortcut_key: Any = None


#: the name pattern of threads started by ``_thread.start_new_thread`` (they have no name)
RAW_KIND = "_thread"


def _target_key(target: Any, thread: threading.Thread | None) -> Any:
    """What identifies a thread's target in its kind's key: the code of a function or method,
    the class of a `Thread` subclass overriding ``run()``, a class or a module's builtin
    itself, a C method bound to an object by its type and name; for any other callable (an
    object, a partial) its type, as ids of instances would be new kinds (and hold them)."""
    tt: type = type(target)
    if tt is _FUNCTION:
        return target.__code__
    if tt is _METHOD and type(target.__func__) is _FUNCTION:
        return target.__func__.__code__
    if target is None:  # a subclass overriding run()
        return type(thread)
    if tt is _BUILTIN:
        owner = target.__self__
        if owner is None or type(owner) is types.ModuleType:
            return target  # a module's function: one object for good
        # a C method bound to an object (``sock.sendall``): a new object per access, holding
        # the object; its kind is its type's method, so holding the key keeps no object alive
        return _builtin_key(type(owner), target.__name__)
    if tt is type:
        return target
    return tt


#: canonical keys of C methods bound to objects, by (id of the type, method name): the type
#: held in the key (see `_target_key`); bounded, past which such targets share their type's key
_BUILTIN_KEYS: dict[tuple[int, str], tuple[type, str]] = {}
_MAX_BUILTIN_KEYS = 500


def _builtin_key(owner: type, name: str) -> Any:
    found = _BUILTIN_KEYS.get((id(owner), name))
    if found is not None and found[0] is owner:
        return found
    if len(_BUILTIN_KEYS) >= _MAX_BUILTIN_KEYS:
        return owner
    found = _BUILTIN_KEYS[(id(owner), name)] = (owner, name)
    return found


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


def _shortcut_key(target: Any, thread: threading.Thread) -> Any:
    """What the start wrapper's shortcut looks `target` up by, as it reads it (a bound method's
    function, a subclass's class when there is no target), standing for the kind's target key
    (see `_target_key`): for a function (a closure, a bound method's, one made anew per start
    alike) the id of its code, which the kind holds (`held`), so the id names that code as long
    as the entry is there and the table holds no function (whose globals could keep an exec
    namespace alive); a class whose metaclass is `type` (hashed by identity: no user code) that
    is its module's own (see `_module_level`). None (no shortcut) for anything else: partials,
    callable objects, C functions."""
    if type(target) is _METHOD:
        target = target.__func__
    elif target is None:
        target = type(thread)
    tt = type(target)
    if tt is _FUNCTION:
        return id(target.__code__)
    return target if tt is type and _module_level(target) else None


def _module_level(obj: Any) -> bool:
    """Whether `obj` (a function or a class) is what its module holds under its qualified name,
    found through the module's and classes' own dicts (no attribute lookup that could run the
    program's code)."""
    try:
        qualname = obj.__qualname__
        module = sys.modules.get(obj.__module__) if isinstance(obj.__module__, str) else None
        if not isinstance(qualname, str) or "<locals>" in qualname or module is None:
            return False
        found: Any = module
        for part in qualname.split("."):
            # only through modules and classes, whose dicts are there anyway (an instance's
            # would be materialised: see `lensbook.skills._static`)
            if not issubclass(type(found), (types.ModuleType, type)):  # (no __class__ read)
                return False
            space = _GETATTRIBUTE(found, "__dict__")
            found = space.get(part) if isinstance(space, (dict, types.MappingProxyType)) else None
            if found is None:
                return False
        return found is obj
    except Exception:
        return False


def _kind_attr(thread: threading.Thread) -> _Kind | None:
    """The kind a started thread carries (see the module's docstring), read past any
    ``__getattribute__``/``__getattr__`` of a subclass (no user code runs)."""
    found = stored_attr(thread, _KIND_ATTR)
    return found if type(found) is _Kind else None


def _code_run_by(thread: threading.Thread) -> types.CodeType | None:
    """The code a thread runs: its target's (a function, a bound method or a partial of
    one), else the ``run`` its class overrides. Read from attributes, never calling them."""
    target: Any = stored_attr(thread, "_target")
    while type(target) is functools.partial:
        target = target.func
    if type(target) is _METHOD:
        target = target.__func__
    if target is None:
        for klass in type(thread).__mro__:
            if klass is threading.Thread:
                break
            target = vars(klass).get("run")
            if target is not None:
                break
    return target.__code__ if type(target) is _FUNCTION else None


class ThreadObserver:
    """Wraps `Thread.start` and ``_thread.start_new_thread`` to see threads come, and settles
    the ends of the threads it saw start (`settle`)."""

    def __init__(self, ring: HistoryRing) -> None:
        self.ring = ring
        self._lock = threading.RLock()
        self._origins: dict[int, tuple[types.CodeType, str]] = {}
        self._kinds: dict[_KindKey, _Kind] = {}
        # the start wrapper's shortcut: by its target's code's id or its class (see
        # `_shortcut_key`: no user code hashes or compares them), the kind last started
        # with it from a call site where the user's code called ``start()`` itself; a start
        # takes it when the call site is that very one (code and offset). Only kinds whose
        # starts are no events now are in it: a kind's gate opening takes it out (the flush),
        # `on_start` puts it back once the gate has closed (a subset of `_kinds`)
        self._direct: dict[Any, _Kind] = {}
        self._overflow = _Kind("<other>", "<other>", "<other>", "<other>")
        # id(thread) -> what its end's event needs, for the threads whose start became an event
        # or that died (few)
        self._noted: dict[int, _Noted] = {}
        #: epoch seconds, set by each flush: the rate gates' coarse clock
        self.clock = time.time()
        self._window_start = time.time()
        self._prev_start: Any = None
        self._prev_raw: Any = None
        self._start_wrapper: Any = None
        self._raw_wrapper: Any = None
        #: records an exception that ended a ``_thread`` thread; returns the event's detail
        #: (set by the recorder to its exceptions observer)
        self.record_raw_death: Callable[[BaseException, str], dict[str, Any] | None] | None = None
        #: id(thread) -> (a weak reference to it, what it runs): the threads alive when the
        #: hooks went in, whose starts were not seen (a weak reference tells a reused id)
        self._unseen: dict[int, tuple[weakref.ref[threading.Thread], dict[str, str]]] = {}
        self._installs = 0

    # -- the hooks --------------------------------------------------------------------------

    def install(self) -> None:
        if self._start_wrapper is not None:
            return
        observer = self
        getframe = sys._getframe
        direct = self._direct
        prev_start = self._prev_start = threading.Thread.start

        def start(thread: threading.Thread) -> None:
            try:
                # `on_start`'s common case inlined, in as few steps as can be (each costs 15-30
                # instructions, a C call more): a start of the target object started last
                # from the call site of a kind whose starts are no events now. This wrapper's
                # `direct` is emptied when it is taken out: one left in someone's chain then
                # finds nothing here, and passes through (the check below)
                target = thread._target  # type: ignore[attr-defined]
                tt = type(target)
                # by the id of a function's code (closures too), or by a class (hashed by
                # identity where its metaclass is `type`): no user code (see `_shortcut_key`)
                if tt is _FUNCTION:
                    kind = direct.get(id(target.__code__))
                elif tt is type:
                    kind = direct.get(target)
                else:  # by a bound method's function; by the class, when run() is the class's
                    if tt is _METHOD:
                        target = target.__func__
                    elif target is None:
                        target = type(thread)
                    tt = type(target)
                    if tt is _FUNCTION:
                        kind = direct.get(id(target.__code__))
                    else:
                        kind = direct.get(target) if tt is type else None
                # the call site, compared on every start (a third of this path's cost): a
                # rare site (a retry path that leaks) must never be counted as the busy one's
                if (
                    kind is not None
                    and kind.held_code is (caller := getframe(1)).f_code
                    and kind.site_lasti == caller.f_lasti
                ):
                    if type(thread) is _THREAD:  # (no subclass: no __setattr__ of theirs)
                        thread._lensbook_kind = kind  # type: ignore[attr-defined]
                    else:
                        _SETATTR(thread, _KIND_ATTR, kind)
                # only the wrapper installed now records: an older one left in a chain
                # (someone wrapped it after us) passes through
                elif observer._start_wrapper is start:
                    kind = observer.on_start(thread, getframe(1))
                else:
                    kind = None
            except Exception:  # seeing a thread start must never stop it from starting
                kind = None
            try:
                prev_start(thread)
            except BaseException:
                observer.on_failed_start(thread, kind)  # "can't start new thread": never lived
                raise
            if kind is not None:
                # counted once started, so a settle never counts a start it may not see alive
                # yet (see there); noted before, so its death is known even if it dies before
                # start() returns here
                kind.started += 1

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
        start_new_thread.__wrapped__ = prev_raw  # type: ignore[attr-defined]
        start_new_thread.__doc__ = prev_raw.__doc__
        self._start_wrapper, self._raw_wrapper = start, start_new_thread
        threading.Thread.start = start  # type: ignore[method-assign,assignment]
        _thread.start_new_thread = start_new_thread
        self._installs += 1
        self._note_unseen()

    def _note_unseen(self) -> None:
        """Note the threads alive now (but the main thread and lensbook's): their starts
        happened before the hooks, so `creator` says what they run and where they were."""
        since = "before lensbook loaded" if self._installs == 1 else "while lensbook was off"
        self._unseen = {k: v for k, v in self._unseen.items() if v[0]() is not None}
        frames = current_frames()
        try:
            for thread in threading.enumerate():
                name = str(stored_attr(thread, "_name", ""))
                if thread is threading.main_thread() or name.startswith("lensbook"):
                    continue
                known = self._unseen.get(id(thread))
                if known is not None and known[0]() is thread:
                    continue
                code = _code_run_by(thread)
                note = {"since": since, "target": "", "defined_at": "", "seen_at": ""}
                if code is not None:
                    note["target"], note["defined_at"] = qualname(code), code_site(code)
                frame = frames.get(thread.ident) if thread.ident is not None else None
                if frame is not None:
                    note["seen_at"] = describe_frame(first_user_frame(frame) or frame)
                self._unseen[id(thread)] = (weakref.ref(thread), note)
        finally:
            frames.clear()  # frames hold every caller's locals

    def remove(self) -> None:
        if self._start_wrapper is None:
            return
        if threading.Thread.start is self._start_wrapper:
            threading.Thread.start = self._prev_start  # type: ignore[method-assign]
        if _thread.start_new_thread is self._raw_wrapper:
            _thread.start_new_thread = self._prev_raw
        # the ends until now are counted; then the counts stay as they are until a settle of
        # a new install (the threads alive keep their kind)
        self.settle()
        self._start_wrapper = self._raw_wrapper = None
        # the shortcut's table goes with its wrapper (see there); a new install starts its own
        dead, self._direct = self._direct, {}
        dead.clear()
        with self._lock:
            self._noted.clear()

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
        target. For a thread already alive when the hooks went in: ``since`` ("before lensbook
        loaded"), its target, where that is defined and the frame it was seen in then. None for
        threads not seen either way, or already ended."""
        kind = self._kind_of_thread(thread)
        if kind is None:
            unseen = self._unseen.get(id(thread))
            if unseen is not None and unseen[0]() is thread:
                return {"started_from": "", "function": "", "via": "", **unseen[1]}
        if kind is None or kind is self._overflow:
            return None
        return {
            "started_from": kind.started_from,
            "function": kind.starter_function,
            "via": kind.via,
            "target": kind.target,
        }

    def on_start(self, thread: threading.Thread, caller: types.FrameType | None) -> _Kind:
        """A thread is about to start (in the starting thread): note it; returns its kind,
        which the wrapper counts once it has started."""
        # the path of every thread start: no lock (a race may lose one count, never a thread),
        # names and texts made once per kind
        target: Any = thread._target  # type: ignore[attr-defined]
        # (a function target, the most common, without a call)
        tkey = target.__code__ if type(target) is _FUNCTION else _target_key(target, thread)
        kind = self._kind_of(target, tkey, thread, caller)
        # the gate: one subtraction (its minute is moved on by the flush); this start is not
        # counted yet
        if kind.pools is not None or kind.started - kind.gate_started < _GATE_BURST:
            self._start_seen(kind, thread)
        _SETATTR(thread, _KIND_ATTR, kind)
        if (
            kind.site_lasti >= 0
            and kind.pools is None
            and kind.started + 1 - kind.gate_started >= _GATE_BURST
        ):
            static = _shortcut_key(target, thread)
            direct = self._direct
            if static is not None and direct.get(static) is not kind:
                # the next start of this target from this site takes the shortcut; one entry
                # per kind (a function made anew for each start replaces its last)
                if kind.shortcut_key is not None and direct.get(kind.shortcut_key) is kind:
                    direct.pop(kind.shortcut_key, None)  # (a flush may have taken it)
                kind.shortcut_key = static
                direct[static] = kind
                if self._direct is not direct:  # taken out meanwhile: its table stays empty
                    direct.pop(static, None)
        return kind

    def _start_seen(self, kind: _Kind, thread: threading.Thread) -> None:
        """A start of a pool's worker, or one that becomes an event (few per kind and minute)."""
        name = thread.name
        pools = kind.pools
        if pools is not None and len(pools) < _MAX_POOLS:
            pools.add(name.rsplit("_", 1)[0])
        if kind.started - kind.gate_started < _GATE_BURST:
            now = time.time()
            self._note(thread, kind, name, now)
            self._started_event(kind, name, thread.daemon, now, kind.started + 1)

    def _started_event(self, kind: _Kind, name: str, daemon: bool, now: float, count: int) -> None:
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
                    "count": count,
                },
                at=now,
            )
        )

    def on_raw_start(self, function: Any, caller: types.FrameType | None) -> _RawRun:
        """A ``_thread.start_new_thread`` call (in the starting thread): count it and return
        what the new thread runs instead of `function`."""
        kind = self._kind_of(function, _target_key(function, None), None, caller)
        # (in this order: a settle reads `started` first, see there)
        kind.raw_started += 1
        kind.started += 1
        if kind.started - kind.gate_started <= _GATE_BURST:
            self._started_event(kind, RAW_KIND, True, time.time(), kind.started)
        return _RawRun(self, kind, function)

    def on_raw_end(self, kind: _Kind) -> None:
        kind.raw_ended += 1
        kind.ended += 1
        if kind.raw_ended - kind.gate_ended <= _GATE_BURST:
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
            # the user's code called start() itself: a site for the wrapper's shortcut
            kind.site_lasti = lasti
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
                held=held,
                held_code=code,
                pools=set() if _POOLED.match(name) else None,
                gate_start=self.clock,
            )
            return kind

    def _note(self, thread: threading.Thread, kind: _Kind, name: str, born: float | None) -> None:
        """Keep what `thread`'s end event needs (its start became an event, or it is dying)."""
        tid = id(thread)
        noted = self._noted.get(tid)
        if noted is not None:
            if noted.ref() is thread:
                return
            # the thread that had this id is over (its object is gone): its end first
            self._noted.pop(tid, None)
            self._noted_end(noted, None, time.time())
        if len(self._noted) < _MAX_NOTED:
            self._noted[tid] = _Noted(weakref.ref(thread), kind, name, born)

    def settle(self) -> None:
        """Derive each kind's ends until now and record the ends of the noted threads. Run by
        each flush, in whichever thread flushes; nothing to do when not installed."""
        if self._start_wrapper is None:
            return
        now = time.time()
        # the totals first, then the threads alive. A start counted in a total read here had
        # started (the wrapper counts once `start()` returned), so it is alive unless over; a
        # start not counted yet adds nothing, or one alive thread, which makes the estimate
        # low (the next settle catches up), never high. (A thread is in
        # ``threading.enumerate()`` from its `start()` until it has finished.)
        kinds = [*self._kinds.values(), self._overflow]
        totals = [(kind, kind.started, kind.raw_started) for kind in kinds]
        still: dict[int, int] = {}  # id(kind) -> its threads alive
        for alive in threading.enumerate():
            carried = _kind_attr(alive)
            if carried is not None:
                still[id(carried)] = still.get(id(carried), 0) + 1
        for kind, started, raw_started in totals:
            ended = started - raw_started - still.get(id(kind), 0) + kind.raw_ended
            if ended > kind.ended:
                kind.ended = ended
        if self._noted:
            settled = 0
            for tid, noted in list(self._noted.items()):
                thread = noted.ref()
                if thread is not None and (
                    not thread._started.is_set()  # type: ignore[attr-defined]
                    or _IS_ALIVE(thread)  # (the class's: no override in user code runs)
                ):
                    continue  # alive, or its start is under way
                if self._noted.get(tid) is noted:
                    self._noted.pop(tid, None)
                    self._noted_end(noted, thread, now)
                    settled += 1
            if settled > len(self._noted):
                # a dict keeps its table when emptied: made anew (a note made meanwhile may be
                # lost, and with it one end's event, never a count)
                self._noted = dict(self._noted)

    def _noted_end(self, noted: _Noted, thread: threading.Thread | None, now: float) -> None:
        """A ``thread_ended`` event for a noted thread that is over."""
        kind = noted.kind
        name = thread.name if thread is not None else noted.name
        detail: dict[str, Any] = {
            "thread": name,
            "target": kind.target,
            "kind": kind.name_pattern,
            "started_from": kind.started_from,
            "died": noted.died,
        }
        if noted.born is not None:  # known for the threads whose start was recorded
            detail["lived_s"] = round(now - noted.born, 3)  # (until its end was noticed)
        self.ring.add(make_event("thread_ended", name, detail, at=now))

    def _kind_of_thread(self, thread: threading.Thread) -> _Kind | None:
        """The kind of a thread started while recording (one of this observer's kinds)."""
        kind = _kind_attr(thread)
        if kind is None or kind is self._overflow:
            return kind
        # (one of this observer's, not one of before a `clear()`: by identity)
        return kind if any(k is kind for k in list(self._kinds.values())) else None

    def on_failed_start(self, thread: threading.Thread, kind: _Kind | None) -> None:
        """`thread` never started (not counted, never in ``threading.enumerate()``): its note
        for an end event goes."""
        noted = self._noted.get(id(thread))
        if noted is not None and noted.ref() is thread:
            self._noted.pop(id(thread), None)

    def count_death(self, thread: threading.Thread | None) -> None:
        """A thread is ending by an exception (from ``threading.excepthook``, in that thread)."""
        if thread is None:
            return
        with self._lock:
            found = self._kind_of_thread(thread)
            if found is None:
                return
            found.died += 1
            noted = self._noted.get(id(thread))
            if noted is None or noted.ref() is not thread:
                self._note(thread, found, thread.name, None)  # its end becomes an event
                noted = self._noted.get(id(thread))
            if noted is not None:
                noted.died = True

    def on_death(self, thread: threading.Thread | None, exc_detail: dict[str, Any]) -> None:
        """Record a ``thread_died`` event (after `count_death`) with the exception's detail."""
        now = time.time()
        name = thread.name if thread is not None else thread_name()
        kind = self._kind_of_thread(thread) if thread is not None else None
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
        moves each kind's event gate on to a new minute when its minute is over. The ends that
        happened until now are settled first."""
        self.settle()
        self.clock = now
        with self._lock:
            span = max(now - self._window_start, 1.0)
            self._window_start = now
            rows = []
            for kind in [*self._kinds.values(), self._overflow]:
                if now - kind.gate_start >= _GATE_WINDOW_S:
                    kind.gate_start = now
                    kind.gate_started, kind.gate_ended = kind.started, kind.raw_ended
                    if (
                        kind.shortcut_key is not None
                        and self._direct.get(kind.shortcut_key) is kind
                    ):
                        # its next starts are events again: through `on_start`
                        self._direct.pop(kind.shortcut_key, None)
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
