"""Where what a retention root keeps was allocated: tracebacks grouped by root, not by window.

A tracing burst's snapshot holds whatever was alive at its end, in-flight work included (an
array being copied, a half-built batch), and a short burst rarely covers the one call that
builds what leaks (traced code runs ~10x slower). Once the referrer walk has named the root
that keeps a leak alive (pyplot's figure managers, an ``lru_cache``, a module-global dict),
the question is narrower: where were the objects *that root gained* allocated?

A `Watch` answers it during short tracing bursts of its own (the memory skill's
``memory_retained_sites``, after the investigation's window has closed; no window opens while
its bursts go on). Right before each burst it notes the root container's length (and, for a
set, which has no order, its members' ids, from `gc.get_referents`: C code, no user code); a
burst lasts until the container has gained two members (so the first was finished by the
user's code) or a short cap, and a root that grows slowly is sampled in several bursts. The
new members of a dict, a list or a deque are its last ones, read from its end in one C call
(`_newest`), with, in the first burst, the member before them: one still being filled when
tracing began (pyplot registers a figure when it is created, before ``ax.plot`` fills it). A
root can hold hundreds of thousands of members, and a pass over all of them while tracing is
on (every int an id() makes is traced) held the GIL for seconds. Before tracing stops,
`Reached.walk` goes down from those members through `gc.get_referents` (never into classes,
modules, functions or frames: what everything shares) in C-level passes and reads each
object's traceback (`_tracemalloc._get_object_traceback`): objects allocated during the burst
have one and are counted, the others (allocated before it, or invisible to tracemalloc: free-
list lists and dicts, and before Python 3.12 instances of Python classes) are only walked
through. A pyplot figure is ~2,000 such objects. Sizes are taken after tracing stopped, from
``__sizeof__`` only when it is the interpreter's or an extension's (a class's own Python
``__sizeof__`` is user code, never called: the basic object size is used instead). The walk is
bounded by a count of objects looked at (a string or a number met twice counts twice) and a
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
import linecache
import operator
import time
import tracemalloc
import types
import weakref
from collections import deque
from collections.abc import Callable, Iterator
from dataclasses import InitVar, dataclass, field
from typing import Any

from lensbook.skills._roots import is_tooling_type, known_root
from lensbook.skills._static import container_base, stored_len, stored_size

__all__ = ["Reached", "Watch", "container_of"]

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
    """A root container to attribute during the retention bursts of a later call."""

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
    _reached: Reached | None = field(default=None, init=False, repr=False)

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
        """Drop the hold on the container and on what `collect` reached (idempotent)."""
        self._held = _released
        self._reached = None

    def begin(self) -> None:
        """Note the length now, and a set's members (called right before each burst's tracing
        starts: the ids of a huge set would all be traced)."""
        container = self.target()
        if container is not None:
            if not _ordered(container):
                self.before = set(map(id, gc.get_referents(container)))
            self.length = stored_len(container) or 0
        self.began = time.perf_counter()

    def gained(self) -> int:
        """How many members the container gained since `begin` (0 once it is gone)."""
        container = self.target()
        return 0 if container is None else (stored_len(container) or 0) - self.length

    def finished(self) -> bool:
        """Whether the container gained enough members, or the burst reached its cap (or the
        container is gone)."""
        assert self.began is not None
        if self.target() is None:
            return True
        enough = self.gained() >= self.members_wanted
        return enough or time.perf_counter() - self.began >= self.max_s

    def collect(self, deadline: float, limit: int = 20_000, with_last: bool = False) -> None:
        """Walk what the members the burst added reach and read their tracebacks (tracing
        must still be on); `settle` makes the traces once tracing has stopped. `with_last`
        walks the member before them too (a container with an order): one still being filled
        when the burst began (pyplot registers a figure before it is drawn) holds what the
        root gains as much as a new one."""
        container = self.target()
        if container is None:
            return
        gained = max(self.gained(), 0)
        self.new_members += gained
        if _ordered(container):
            members = _newest(container, gained + 1 if with_last else gained)
        else:
            # C-level passes (tracing is on): the members whose ids were not there before
            held = gc.get_referents(container)
            by_id = dict(zip(map(id, held), held, strict=True))
            members = list(map(by_id.__getitem__, by_id.keys() - self.before))
            del held, by_id
        del container
        self._reached = Reached.walk(members, deadline, limit)
        self.walked += self._reached.walked
        self.partial = self.partial or self._reached.partial
        del members

    def settle(self) -> None:
        """Add the traces of what `collect` reached to `traces` (tracing may be off by now),
        and let the objects it reached go."""
        reached, self._reached = self._reached, None
        if reached is not None:
            self.traces += reached.traces()


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


#: objects the walk takes in one pass (C-level calls on a slice of a level; ~3 ms of work with
#: 16 frames traced), between two looks at its deadline
_PASS = 256


#: types whose objects refer to nothing (exact types: a subclass may have a ``__dict__``)
_LEAVES = (str, int, float, bool, type(None), bytes, complex)


def _leaf_mask(kinds: list[type]) -> Iterator[bool]:
    """Whether each type is one of `_LEAVES`, by identity in C-level passes: no hashing or
    comparing of the program's classes (a metaclass's ``__eq__`` is the program's code)."""
    mask: Iterator[bool] = map(operator.is_, kinds, itertools.repeat(_LEAVES[0]))
    for leaf in _LEAVES[1:]:
        mask = map(operator.or_, mask, map(operator.is_, kinds, itertools.repeat(leaf)))
    return mask


@dataclass
class Reached:
    """What the new members of a root reach, with each object's raw tracemalloc frames.

    `walk` runs while tracing is still on, so it does as little as it can per object: every
    allocation of every thread is traced meanwhile (16 frames in a retention burst), its own
    included, and the program's threads run many times slower until tracing stops. It goes
    breadth first in C-level passes, one level at a time (ids, a set difference, one
    `gc.get_referents` per level) and judges each *type* met once, not each object. Sizes
    and the traces come after tracing has stopped (`traces`). Runs no user code.
    """

    objects: list[Any]
    frames: list[tuple[tuple[str, int], ...] | None]
    frame_limit: int
    walked: int
    partial: bool
    #: strings and numbers tracing saw, as met (the same one may come twice), and their frames
    leaves: list[Any] = field(default_factory=list)
    leaf_frames: list[tuple[tuple[str, int], ...]] = field(default_factory=list)

    @classmethod
    def walk(cls, roots: list[Any], deadline: float, limit: int = 20_000) -> Reached:
        """Breadth first from all roots at once, a level at a time, so what the members hold
        directly is seen before what they share with others (and a walk cut short has seen
        some of every member); never into classes, modules, functions or frames, nor the
        tooling's objects (counted as walked, never as found)."""
        seen: set[int] = {id(linecache.cache)}
        judged: dict[int, bool] = {}  # id of a type -> whether the walk skips its objects
        objects: list[Any] = []
        frames: list[tuple[tuple[str, int], ...] | None] = []
        traced_leaves: list[Any] = []
        traced_leaf_frames: list[tuple[tuple[str, int], ...]] = []
        looked = 0
        partial = False
        # (not paced: tracing is on while it runs, and a rest would keep every allocation of
        # the program's threads traced for longer; its deadline is short instead)
        level: list[Any] = list(roots)
        below: list[Any] = []  # the next level, as it is found
        at = 0
        while True:
            if at >= len(level):
                if not below:
                    break
                level, below, at = below, [], 0
            room = limit + 1 - len(seen) - looked
            if room <= 0 or time.perf_counter() > deadline:
                partial = True
                break
            # a level is taken a pass at a time (a level under a big shared object, a module's
            # namespace or a cache, is the whole of it), so the deadline is checked often
            part = level[at : at + min(_PASS, room)]
            at += len(part)
            # strings and numbers (most of what a dict or an instance holds, its keys shared
            # by all) hold nothing: their tracebacks are read without taking their ids, and
            # those tracing saw are told apart after it stopped (`traces`)
            leafy = list(_leaf_mask(list(map(type, part))))
            leaves = list(itertools.compress(part, leafy))
            looked += len(leaves)
            leaf_frames = list(map(_object_frames, leaves))
            traced_leaves += itertools.compress(leaves, leaf_frames)
            traced_leaf_frames += filter(None, leaf_frames)
            del leaves, leaf_frames
            part = list(itertools.compress(part, map(operator.not_, leafy)))
            by_id = dict(zip(map(id, part), part, strict=True))
            fresh_ids = by_id.keys() - seen
            seen |= fresh_ids
            fresh = list(map(by_id.__getitem__, fresh_ids))
            del by_id, part
            kinds = list(map(type, fresh))
            kind_ids = list(map(id, kinds))
            for kind_id, kind in dict(zip(kind_ids, kinds, strict=True)).items():
                if kind_id not in judged:
                    judged[kind_id] = issubclass(kind, _OPAQUE) or is_tooling_type(kind)
            kept = list(
                itertools.compress(fresh, map(operator.not_, map(judged.__getitem__, kind_ids)))
            )
            del fresh, kinds, kind_ids
            objects += kept
            frames += map(_object_frames, kept)
            # untraced objects are walked too: lists and dicts come from free lists and, before
            # Python 3.12, instances of Python classes are invisible to get_object_traceback
            below += gc.get_referents(*kept)
            del kept
        level.clear()
        below.clear()
        frame_limit = tracemalloc.get_traceback_limit()
        walked = len(seen) - 1 + looked
        return cls(objects, frames, frame_limit, walked, partial, traced_leaves, traced_leaf_frames)

    def traces(self) -> list[RawTrace]:
        """The traced objects' raw traces with their sizes (once tracing has stopped: sizes
        and tuples built here are not traced), and the objects let go."""
        found: list[RawTrace] = []
        limit = self.frame_limit
        leaves: dict[int, tuple[Any, tuple[tuple[str, int], ...]]] = {}
        for leaf, leaf_frames in zip(self.leaves, self.leaf_frames, strict=True):
            leaves[id(leaf)] = (leaf, leaf_frames)  # met more than once: counted once
        pairs = itertools.chain(zip(self.objects, self.frames, strict=True), leaves.values())
        for obj, frames in pairs:
            if frames is not None:
                total = len(frames) + 1 if len(frames) >= limit else len(frames)
                found.append((0, stored_size(obj), frames, total))
        self.objects, self.frames, self.leaves, self.leaf_frames = [], [], [], []
        return found


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
