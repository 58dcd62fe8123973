"""Where what a retention root keeps was allocated: tracebacks grouped by root, not by window.

A tracing burst's snapshot holds whatever was alive at its end, in-flight work included (an
array being copied, a half-built batch), and a short burst rarely covers the one call that
builds what leaks (traced code runs ~10x slower). Once the referrer walk has named the root
that keeps a leak alive (pyplot's figure managers, an ``lru_cache``, a module-global dict),
the question is narrower: where were the objects *that root gained* allocated?

A `Watch` answers it during one short tracing burst of its own (the memory skill's
``memory_retained_sites``, after the investigation's window has closed: its bursts and heap
walks never overlap this one). Right before the burst it notes the root container's length
(and, for a set, which has no order, its members' ids, from `gc.get_referents`: C code, no user
code); the burst lasts until the
container has gained two members (so the first was finished by the user's code: pyplot
registers a figure when it is created, before ``ax.plot`` fills it) or a cap. The new members
of a dict, a list or a deque are its last ones, read from its end in one C call (`_newest`):
a root can hold hundreds of thousands of members, and a pass over all of them while tracing is
on (every int an id() makes is traced) held the GIL for seconds. Before tracing
stops, `retained_traces` walks down from the new members through `gc.get_referents` (never into
classes, modules, functions or frames: what everything shares) and asks
`tracemalloc.get_object_traceback` for each object reached: objects allocated during the burst
have one and are counted, the others (allocated before it, or invisible to tracemalloc: free-
list lists and dicts, and before Python 3.12 instances of Python classes) are only walked
through. A pyplot figure is ~2,000 such objects. Sizes come from ``__sizeof__`` only when it is
the interpreter's or an extension's (a class's own Python ``__sizeof__`` is user code, never
called: the basic object size is used instead). The walk is bounded by a count of objects and a
deadline.

The result is a list of raw traces in tracemalloc's own shape (domain, size, frames most
recent first, total frames), so the memory skill groups them like any snapshot: by the first
user frame, with the library frames as detail.

A pending `Watch` must not keep the process's root alive once the program lets it go. It holds
the container by a weak reference where the type takes one (sets, deques, ``OrderedDict``,
subclasses of ``dict`` and ``list`` written in Python); a plain ``dict`` or ``list`` takes none,
so those are held strongly, and `release` drops the hold: the memory skill calls it on every end
of the burst, and `close()` and the next referrer walk drop a watch still pending. What is held
is one container per memory skill, a root the walk found reachable from a module, a class or a
registry (alive for as long as its owner keeps it anyway).
"""

from __future__ import annotations

import _tracemalloc
import gc
import itertools
import time
import tracemalloc
import types
import weakref
from collections import deque
from collections.abc import Callable
from dataclasses import InitVar, dataclass, field
from typing import Any

from lensbook.skills._roots import is_tooling, known_root
from lensbook.skills._static import container_base, stored_len, stored_size

__all__ = ["Watch", "container_of", "retained_traces"]

RawTrace = tuple[int, int, tuple[tuple[str, int], ...], int]

_CONTAINERS = (dict, list, set, deque)
#: what the walk never descends into: code and namespaces shared by everything
_OPAQUE = (
    type,
    types.ModuleType,
    types.FunctionType,
    types.BuiltinFunctionType,
    types.CodeType,
    types.FrameType,
    types.MethodType,
)


def container_of(holder: Any, held: Any) -> Any | None:
    """The container a root keeps its members in: the holder when it is a well-known registry
    (pyplot's ``Gcf.figs``, IPython's ``Out``), else the held object when it is one (a module
    global's or a class attribute's dict, an ``lru_cache``'s cache), else None (a root that
    holds one object: nothing to watch). Types and identities only: no user code runs."""
    if _is_container(holder) and known_root(holder, held) is not None:
        return holder
    if _is_container(held):
        return held
    return None


def _is_container(obj: Any) -> bool:
    return container_base(type(obj)) in _CONTAINERS


class _Strong:
    """A strong hold on a container that takes no weak reference, called like a weakref."""

    __slots__ = ("_obj",)

    def __init__(self, obj: Any) -> None:
        self._obj = obj

    def __call__(self) -> Any:
        return self._obj


def _hold(container: Any) -> Callable[[], Any]:
    """A weak reference to `container` where its type takes one, else a strong hold."""
    try:
        return weakref.ref(container)
    except TypeError:  # dict, list, defaultdict: no weak references
        return _Strong(container)


def _released() -> None:
    return None


@dataclass
class Watch:
    """A root container to attribute during the next burst of a tracing window."""

    root: str
    container: InitVar[Any]
    #: the burst ends once the container gained this many members, or after `max_s`
    members_wanted: int = 2
    max_s: float = 1.5
    before: set[int] = field(default_factory=set)
    length: int = 0
    began: float | None = None
    traces: list[RawTrace] = field(default_factory=list)
    new_members: int = 0
    walked: int = 0
    partial: bool = False
    _held: Callable[[], Any] = field(init=False, repr=False)

    def __post_init__(self, container: Any) -> None:
        self._held = _hold(container)

    @property
    def weak(self) -> bool:
        """Whether the container is held by a weak reference."""
        return isinstance(self._held, weakref.ref)

    def target(self) -> Any | None:
        """The container, or None once the program freed it (or the watch was released)."""
        return self._held()

    def release(self) -> None:
        """Drop the hold on the container (idempotent)."""
        self._held = _released

    def begin(self) -> None:
        """Note the length now, and a set's members (called right before tracing starts: the
        ids of a huge set would all be traced)."""
        container = self.target()
        if container is not None:
            if not _ordered(container):
                self.before = set(map(id, gc.get_referents(container)))
            self.length = stored_len(container) or 0
        self.began = time.perf_counter()

    def finished(self) -> bool:
        """Whether the container gained enough members, or the burst reached its cap (or the
        container is gone)."""
        assert self.began is not None
        container = self.target()
        if container is None:
            return True
        gained = (stored_len(container) or 0) - self.length
        return gained >= self.members_wanted or time.perf_counter() - self.began >= self.max_s

    def collect(self, deadline: float, limit: int = 20_000) -> None:
        """Walk what the new members reach and keep its traces (tracing must still be on)."""
        container = self.target()
        if container is None:
            return
        self.new_members = (stored_len(container) or 0) - self.length
        if _ordered(container):
            members = _newest(container, self.new_members)
        else:
            members = [m for m in gc.get_referents(container) if id(m) not in self.before]
        del container
        self.traces, self.walked, self.partial = retained_traces(members, deadline, limit)
        del members


#: new members of an ordered container taken from its end at most (the walk below them is
#: bounded by a count of objects anyway)
_NEWEST_MAX = 1000


def _ordered(container: Any) -> bool:
    """Whether new members go to the end: a dict (insertion order), a list or a deque (a leak
    appends). Judged by type, never isinstance (which may ask the object)."""
    return issubclass(type(container), (dict, list, deque))


def _newest(container: Any, count: int) -> list[Any]:
    """The last `count` members of an ordered container (a dict's keys and values), oldest
    first, copied in C-level calls through the base type's own methods (no user code runs);
    none if another thread changed its size while it was read."""
    count = min(max(count, 0), _NEWEST_MAX)
    if not count:
        return []
    try:
        if issubclass(type(container), dict):
            pairs = list(itertools.islice(reversed(dict.items(container)), count))
            pairs.reverse()
            return [member for pair in pairs for member in pair]
        if issubclass(type(container), list):
            return list.__getitem__(container, slice(-count, None))
        tail = list(itertools.islice(deque.__reversed__(container), count))
        tail.reverse()
        return tail
    except RuntimeError:  # "changed size during iteration": another thread grew it meanwhile
        return []


def retained_traces(
    roots: list[Any], deadline: float, limit: int = 20_000
) -> tuple[list[RawTrace], int, bool]:
    """Raw traces (tracemalloc's shape) of the objects reachable from `roots` that were
    allocated while tracing was on; how many objects were looked at; whether a bound stopped
    the walk. Each root in turn, breadth first, so what a member holds directly is seen before
    what it shares with others. Runs no user code."""
    frame_limit = tracemalloc.get_traceback_limit()
    seen: set[int] = set()
    found: list[RawTrace] = []
    queue: deque[Any] = deque()
    pending = deque(roots)  # one member after the other: the first new one is complete
    partial = False
    # (not paced: tracing is on while it runs, and a rest would keep every allocation of the
    # program's threads traced for longer; its deadline is short instead)
    while queue or pending:
        if len(seen) >= limit or time.perf_counter() > deadline:
            partial = True
            break
        obj = queue.popleft() if queue else pending.popleft()
        if id(obj) in seen:
            continue
        seen.add(id(obj))
        if issubclass(type(obj), _OPAQUE) or is_tooling(obj):
            continue
        frames = _object_frames(obj)
        if frames is not None:
            total = len(frames) + 1 if len(frames) >= frame_limit else len(frames)
            found.append((0, stored_size(obj), frames, total))
        # untraced objects are walked too: lists and dicts come from free lists and, before
        # Python 3.12, instances of Python classes are invisible to get_object_traceback
        queue.extend(gc.get_referents(obj))
    queue.clear()
    pending.clear()
    return found, len(seen), partial


def _public_frames(obj: Any) -> tuple[tuple[str, int], ...] | None:
    traceback = tracemalloc.get_object_traceback(obj)
    if traceback is None:
        return None
    return tuple((f.filename, f.lineno) for f in reversed(traceback))


#: where tracemalloc allocated an object, as its raw frames (most recent first): the private
#: function behind `tracemalloc.get_object_traceback`, which builds a Frame object per frame
#: (most of the walk's time); the public one where the private one is missing
_object_frames: Callable[[Any], tuple[tuple[str, int], ...] | None] = getattr(
    _tracemalloc, "_get_object_traceback", _public_frames
)
