"""Heap walks that cannot break the user's threads: the one way probes list the heap.

`gc.get_objects()` and `gc.get_referrers()` hand back every object the collector tracks,
tuples that another thread is still building included: `tuple(iterable)` allocates a tuple,
runs the iterator (Python code, where the interpreter may switch threads), then resizes the
tuple, and the resize fails with ``SystemError: bad argument to internal function`` in *that*
thread if anyone else holds a reference at that moment. A probe thread holding a list of every
object while the user's thread resumes is exactly that reference (seen as operator crashes,
and once a segfault, in the hostile-model suite).

So the raw list never lives while another thread can run. It is taken, stripped of exact
tuples and let go inside one call of a chain of C iterators (a "pipeline": `map`, `compress`,
`islice`, `starmap`, built lazily first and driven by one `next`): no bytecode runs while it
lives, and the interpreter hands the GIL to another thread only between bytecodes or when a C
call blocks (nothing in it does). Automatic collection is put off meanwhile (a collection runs
finalizers, Python code). What callers get is walked in slices (`Heap.slices`), with rests.

The switch interval is never touched. An earlier design raised it for each step and handed
the GIL over once to make the waiting threads see the raised value: whichever thread took it
then, a busy thread of the program included, kept it for the whole raised interval (250 ms
and more) while the main thread waited. `benchmarks/bench_host_cost.py` prints the main
thread's longest gap while steps are taken, alone and next to such a busy thread.

What one walk costs the user's threads, per million tracked objects (measured on a 2-core
machine; `benchmarks/bench_host_cost.py` prints the step at its heap):

- the step: one GIL hold of ~80 ms (`gc.get_objects` ~15 ms, the C-level filter, which reads
  every object's type, the rest); a `referrers` step ~15-20 ms. Nothing else runs inside: no
  collection (put off), no Python loop over the heap, no finalizer. It grows with the heap;
- right after, the next young collections (generation 0, then 1), which run on whichever
  thread allocates, walk the list the caller holds: ~20 ms each;
- then the caller's slices: C-level passes of `SLICE` objects (a few ms of GIL each),
  paced so the walk takes at most about a third of the interpreter (the caller's `Pacer`);
- between two stalls (steps, and lensbook's tracing bursts), from any thread: the next one
  starts no sooner than `STALL_SPACING` times the last one's length after it ended. A
  referrer climb takes steps hop after hop; without the spacing the program got ~5 ms
  between two 40 ms steps (a busy main thread's 100 ms of work took 1.5 s), with it about
  half of the interpreter (less for a stall longer than `MAX_STEP_WAIT_S`, and less the
  climb's own work between steps). A lone step waits for nothing. While a tracing window
  is open, the program's own full collections count as stalls too (`watch_collections`): a
  burst right after a 200 ms one would stack a second stall on the same stretch of work.

One gap is the program's own: `gc.get_referrers` raises an audit event, so an audit hook
written in Python (`sys.addaudithook`) runs inside the pipeline, with the candidate tuples as
the event's arguments, and a hook that blocks or does I/O lets other threads run meanwhile.
Nothing here can keep the interpreter from calling it.

A tuple still being built is referred to by nothing the collector sees (only its builder's C
stack: the resize requires that), so `referrers` keeps every tuple that some tracked object
refers to, found in the same pipeline: a chain through a closure's cells or an `lru_cache`
key still reaches its root. `objects` leaves tuples out (censuses count them, in
`Heap.tuples`): checking a million tuples that way would cost a heap walk each.

Steps are taken one at a time across threads (a lock): the collector's on/off state is one
setting of the whole interpreter, and two overlapping steps that each saved and restored it
would leave it off for good. Taking them in turn also keeps two probes' heap walks from
stalling the user twice over.
"""

from __future__ import annotations

import gc
import operator
import os
import threading
import time
import types
import weakref
from collections import deque
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from functools import partial
from itertools import chain, compress, filterfalse, islice, repeat, starmap
from typing import Any

from lensbook.skills import intrusion

__all__ = [
    "TARGETS_PER_STEP",
    "Heap",
    "Pacer",
    "burst_begins",
    "burst_ends",
    "collections_off",
    "collector_enabled",
    "objects",
    "referrers",
    "step",
    "until_turn",
    "watch_collections",
]

# one step at a time in the whole process (re-entrant): the collector's on/off state is one
# setting of the interpreter, and two overlapping steps that each saved and restored it would
# leave it off for good (the second saves the first's "off" and restores that last)
_step_lock = threading.RLock()

#: objects per slice of a listing (`Heap.slices`): one C-level pass over a slice holds the GIL
#: for ~2-5 ms (about as long as the interpreter's own 5 ms switch interval lets a thread run)
SLICE = 32768


#: a stall of the program (a step holds every thread of it for its whole length; a tracing
#: burst makes every allocation of it ~20x dearer): the next stall, of either kind and from
#: any thread, starts no sooner than this many times the last one's length after it ended, so
#: stalls taken back to back (a referrer climb, hop after hop; a step right after a burst)
#: leave the program about half of the interpreter, while a lone one waits for nothing
STALL_SPACING = 1.0
#: the longest a step waits for its turn (for the bursts under way to end and the spacing
#: after the last stall: a retention burst traces 0.1 s, its walk 0.05 s); a step of more than
#: this is a huge heap's, whose walk is already cut by its deadline...
MAX_STEP_WAIT_S = 0.3
#: ...and the longest a tracing burst waits for the listings alive to go and for its turn (a
#: window's burst then rests again, keeping its duty; a retention burst starts anyway)
MAX_LISTING_WAIT_S = 0.2


@dataclass
class _Quiet:
    """lensbook's stalls of the program: listings of the whole heap alive, tracing bursts
    under way, and when the last stall ended and how long it held (under `_quiet`).

    Listings and bursts are kept apart, each waiting a bounded time for the other: a young
    collection while tracing is on walks a listing a probe holds (at 337k objects: a 131 ms
    collection in the window's thread and a 150 ms snapshot, every allocation of the
    program's threads traced meanwhile: a busy main thread's 100 ms of work took 425 ms). And
    every stall (a step, a burst) waits its turn: `STALL_SPACING` times the last one's length
    after it ended. Without that, a listing waiting for a burst's end took its step at once
    and a window's burst waiting for that listing to go began at once: three stalls in one
    chunk of the program's work.
    """

    listings: int = 0
    #: when each burst under way began, by token (each burst ends its own)
    bursts: dict[int, float] = field(default_factory=dict)
    issued: int = 0
    stepping: bool = False
    ended: float = 0.0
    held: float = 0.0
    #: the last stalls (kind, began, ended: ``time.perf_counter()``), for benchmarks and tests
    recent: deque[tuple[str, float, float]] = field(default_factory=lambda: deque(maxlen=256))

    def own_turn(self) -> float:
        """When the spacing after lensbook's own last stall ends."""
        return self.ended + min(self.held * STALL_SPACING, MAX_STEP_WAIT_S)

    def turn(self) -> float:
        """When the next stall may begin (the spacing's part: bursts under way aside): after
        lensbook's last stall and, while they are watched, the program's last full collection
        (and not during one)."""
        due = self.own_turn()
        last = _full.last
        if last is not None:
            began, ended = last
            due = max(due, ended + min((ended - began) * STALL_SPACING, MAX_STEP_WAIT_S))
        began = _full.began
        now = time.perf_counter()
        if began and 0.0 < now - began < _COLLECTION_MAX_S:
            # one under way (its finalizers and the other callbacks run Python code, where a
            # waiting thread may get the GIL): not before it ends, then its spacing
            due = max(due, now + _COLLECTION_POLL_S)
        return due

    def record(self, kind: str, began: float, ended: float) -> None:
        """A stall that ended; the spacing owed is the later of its own and the one lensbook
        owed already (a short stall, a burst that never traced, cancels none of a longer
        one's; a full collection's spacing is kept apart, and goes when no window watches)."""
        self.recent.append((kind, began, ended))
        if ended + min((ended - began) * STALL_SPACING, MAX_STEP_WAIT_S) >= self.own_turn():
            self.ended, self.held = ended, ended - began


class _FullCollections:
    """The program's full collections (generation 2), seen by a ``gc.callbacks`` entry while a
    tracing window watches them (`watch_collections`).

    The entry is put in once, at the first watch, and stays (inert while nothing watches)
    until `lensbook.stop()` or exit, as the gc skill's does: CPython walks ``gc.callbacks``
    by index while a collection calls them, and the callbacks are Python code where another
    thread may get the GIL, so adding or removing an entry at each window's open and close
    could call one of the program's callbacks twice or skip one.

    A full collection holds every thread of the program (50-200 ms and more in a large heap),
    as a stall of lensbook's does: a burst or a step right after one stacks a second stall
    on the same stretch of the program's work. So the next stall waits its turn after the
    program's last full collection too, and not during one (`_Quiet.turn`). The callback runs
    inside any allocation of any thread, maybe one made under `_quiet`: it takes no lock, only
    reads the clock and sets attributes (atomic under the GIL); a young collection costs it a
    call and a comparison.
    """

    def __init__(self) -> None:
        self.began = 0.0
        #: the last full collection seen (began, ended: ``time.perf_counter()``)
        self.last: tuple[float, float] | None = None
        #: the windows watching (under `_quiet`)
        self.watchers = 0
        #: whether the entry is in ``gc.callbacks`` (under `_quiet`)
        self.installed = False
        # one bound method, kept: the entry put in ``gc.callbacks`` and found there by identity
        self.hook = self._seen

    def _seen(self, phase: str, info: dict[str, Any]) -> None:
        if not self.watchers or info["generation"] != 2:
            return
        now = time.perf_counter()
        if phase == "start":
            self.began = now
        elif self.began:
            self.last, self.began = (self.began, now), 0.0

    def remove(self) -> None:
        """Take the entry out of ``gc.callbacks`` (by identity: whatever others added stays);
        `lensbook.stop()` and exit call it, through the intrusion ledger."""
        with _quiet:
            for i, found in enumerate(gc.callbacks):
                if found is self.hook:
                    del gc.callbacks[i]
                    break
            self.installed = False
            self.began, self.last = 0.0, None


_full = _FullCollections()
#: how often a stall waiting for a full collection under way looks again...
_COLLECTION_POLL_S = 0.005
#: ...for one that began this recently (a start whose stop was never seen holds nothing up)
_COLLECTION_MAX_S = 5.0
_quiet = threading.Condition()
_quiet_state = _Quiet()

# sections with automatic collection put off (`collections_off`), from any threads: how many are
# inside, and whether the collector was on when the first of them began
_off_lock = threading.RLock()  # (re-entrant: a signal handler may read frames inside one)
_off_sections = 0
_off_restore = False


@contextmanager
def collections_off() -> Iterator[None]:
    """No automatic collection starts inside, in any thread (re-entrant, from any threads).

    The collector's on/off state is one setting of the whole interpreter, so the sections that
    overlap are counted: the first turns it off, the last puts it back as the first found it
    (each saving and restoring it would turn it back on under a step still under way, or leave
    it off for good). A collector the user turned off stays off; one the user turns on or off
    inside a section is as the first section found it once the last ends. Nothing here waits:
    a section is for a short read (a step, another thread's frames) that no collection may
    interrupt, since a collection runs Python code (gc.callbacks, finalizers) at whose first
    bytecode the interpreter may hand the GIL to another thread. A Ctrl-C cannot split the
    count from the collector's state (the count is taken first, with no call between, and the
    last section's end turns it back on with no call before), and a forked child starts with
    no section open (`_after_fork`).
    """
    global _off_sections, _off_restore
    counted = False
    try:
        with _off_lock:
            _off_sections += 1
            counted = True
            if _off_sections == 1:
                _off_restore = gc.isenabled()
                gc.disable()
        yield
    finally:
        if counted:
            _off_sections -= 1
            if not _off_sections and _off_restore:
                _off_restore = False
                gc.enable()


def collector_enabled() -> bool:
    """Whether automatic collection is on, as the program set it: lensbook's own short
    sections without it (`collections_off`) do not count (a probe must not report them)."""
    return _off_restore if _off_sections else gc.isenabled()


def _after_fork() -> None:
    """In a forked child: no section of the parent's threads is open any more."""
    global _off_lock, _off_sections, _off_restore
    _off_lock = threading.RLock()
    if _off_sections and _off_restore:
        gc.enable()
    _off_sections, _off_restore = 0, False


os.register_at_fork(after_in_child=_after_fork)


# the re-entrant depth of `step` in the thread that holds `_step_lock`
_depth = 0


def _wait_turn(free: Callable[[], bool], wait_s: float) -> bool:
    """Under `_quiet`: wait up to `wait_s` until `free()` holds and the last stall's spacing
    has passed; whether both held in time."""
    deadline = time.perf_counter() + wait_s
    while True:
        now = time.perf_counter()
        ready = free()
        due = _quiet_state.turn() - now
        if ready and due <= 0:
            return True
        left = deadline - now
        if left <= 0:
            return False
        # a notify (a burst ended, a listing went) or the spacing's end, whichever first
        _quiet.wait(min(left, due) if ready else left)


def watch_collections() -> Callable[[], None]:
    """Count the program's full collections among the stalls that space lensbook's (see
    `_FullCollections`) until the function returned is called (once: later calls do nothing).
    Watches nest. The first puts the ``gc.callbacks`` entry in, for the session (undone by
    `lensbook.stop()` and at exit); with no watch left it does nothing."""
    ended = [False]
    with _quiet:
        install = not _full.installed
        if install:
            gc.callbacks.append(_full.hook)  # (appended: entries already called stay put)
            _full.installed = True
        _full.watchers += 1

    def unwatch() -> None:
        with _quiet:
            if ended[0]:
                return
            ended[0] = True
            _full.watchers -= 1
            if not _full.watchers:
                _full.began, _full.last = 0.0, None

    try:
        if install:
            intrusion.switch_on(
                "gc.callbacks hook (lensbook's stall ledger)",
                _full.remove,
                max_seconds=None,
                session=True,
            )
    except BaseException:
        _full.remove()
        unwatch()
        raise
    return unwatch


def until_turn() -> float:
    """Seconds until the next stall's turn (0.0 when it has come): what a window's first
    burst rests first, so re-opening windows cannot chain bursts back to back."""
    with _quiet:
        return max(_quiet_state.turn() - time.perf_counter(), 0.0)


def stalls() -> list[tuple[str, float, float]]:
    """The last stalls lensbook made (kind, began, ended: ``time.perf_counter()``), oldest
    first: what a benchmark lays next to its slowest chunks."""
    with _quiet:
        return list(_quiet_state.recent)


@contextmanager
def step() -> Iterator[None]:
    """No automatic collection starts inside, steps of several threads are taken in turn, and
    a step waits its turn among lensbook's stalls (see `_Quiet`: the bursts under way end, then
    `STALL_SPACING` times the last stall's length passes; `MAX_STEP_WAIT_S` at most).

    A collection the step's own allocations would start is put off until just after it: in
    the step it would walk the raw list of every object (~20 ms per million) and run
    finalizers, Python code, at whose first bytecode the interpreter may hand the GIL to
    another thread while that list lives. Put off, it runs at the next allocation after the
    step, as it would have. A collector the user turned off stays off. The wait before a step
    counts against its caller's deadline (a walk of many steps is cut sooner).
    """
    global _depth
    with _step_lock:
        outer = _depth == 0
        started = 0.0
        try:  # (from here: a Ctrl-C while waiting leaves no step marked under way)
            _depth += 1
            if outer:
                with _quiet:
                    _wait_turn(lambda: not _quiet_state.bursts, MAX_STEP_WAIT_S)
                    _quiet_state.stepping = True
            with collections_off():
                started = time.perf_counter()
                yield
        finally:
            _depth = 0 if outer else _depth - 1
            if outer:
                with _quiet:
                    _quiet_state.stepping = False
                    if started:
                        _quiet_state.record("step", started, time.perf_counter())
                    _quiet.notify_all()


def _listing_gone() -> None:
    with _quiet:
        _quiet_state.listings -= 1
        _quiet.notify_all()


def burst_begins(wait_s: float = MAX_LISTING_WAIT_S, force: bool = False) -> int | None:
    """Called right before lensbook starts a tracing burst: waits up to `wait_s` until no
    listing of the whole heap is alive, no step is under way and the last stall's spacing has
    passed. The burst's token (for `burst_ends`), or None when that did not come in time and
    the burst should not start (with `force`, a token anyway). Steps wait for the burst to end
    meanwhile (`MAX_STEP_WAIT_S` at most)."""
    with _quiet:
        free = _wait_turn(lambda: _quiet_state.listings == 0 and not _quiet_state.stepping, wait_s)
        if not (free or force):
            return None
        _quiet_state.issued += 1
        _quiet_state.bursts[_quiet_state.issued] = time.perf_counter()
        return _quiet_state.issued


def burst_ends(token: int | None) -> None:
    """Called once the burst of `token` has stopped tracing (idempotent; None is nothing)."""
    if token is None:
        return
    with _quiet:
        began = _quiet_state.bursts.pop(token, None)
        if began is not None:
            _quiet_state.record("burst", began, time.perf_counter())
        _quiet.notify_all()


class Pacer:
    """Hands the GIL back during a heap walk, so a busy main thread keeps most of its pace.

    Used where the walk holds no list of every object while it rests (tracemalloc traces, the
    referrer climb between its gc.get_referrers calls). A walk on a probe thread would
    otherwise share the interpreter 50/50 with the main thread
    (both ask for the GIL every 5 ms switch interval), or hold it for a whole C call. Called
    between chunks, the pacer rests `rest` times as long as the walk worked since its last
    rest, once that passes `slice_s`: with the default the walk takes at most a third of the
    interpreter, in short slices, and its wall time triples (deadlines account for it: results
    are partial sooner on huge heaps).
    """

    def __init__(self, slice_s: float = 0.01, rest: float = 2.0) -> None:
        self.slice_s = slice_s
        self.rest = rest
        # CPU time of this thread: time spent waiting for the GIL is not work to rest from
        self.mark = time.thread_time()

    def __call__(self) -> None:
        worked = time.thread_time() - self.mark
        if worked >= self.slice_s:
            time.sleep(min(worked * self.rest, 0.2))
            self.mark = time.thread_time()


@dataclass
class Heap:
    """The tracked objects but exact tuples, and how many tuples were left out."""

    objects: list[Any]
    tuples: int
    #: whether a walk by `slices` stopped at its deadline before the end
    partial: bool = field(default=False, init=False)

    def __len__(self) -> int:
        return len(self.objects) + self.tuples

    def slices(self, deadline: float, pace: Callable[[], None]) -> Iterator[list[Any]]:
        """`objects` in slices of `SLICE`, until `deadline` (``time.perf_counter()``) passes.

        The caller works on each slice with C-level passes (`map`, `compress`, `Counter`),
        so a slice holds the GIL for a few milliseconds; `pace` runs between slices (a
        rest in proportion to the work, so the walk takes a bounded share of the interpreter).
        Resting while the list lives is safe: it holds no tuple under construction.
        """
        for start in range(0, len(self.objects), SLICE):
            pace()
            if time.perf_counter() > deadline:
                self.partial = True
                return
            chunk = self.objects[start : start + SLICE]
            yield chunk
            del chunk

    def of_types(
        self, select: Callable[[type], bool], deadline: float, pace: Callable[[], None]
    ) -> Iterator[list[Any]]:
        """`objects` whose type `select` accepts, a list per slice (see `slices`) that has any.

        `select` is asked once per type; types are told apart by id, never hashed or compared
        (a metaclass's ``__hash__``/``__eq__`` is the program's code)."""
        verdicts: dict[int, bool] = {}
        for chunk in self.slices(deadline, pace):
            kinds = list(map(type, chunk))  # (once: an object's class can be reassigned)
            ids = list(map(id, kinds))
            new = set(ids).difference(verdicts)
            if new:
                by_id = dict(zip(ids, kinds, strict=True))
                for key in new:
                    verdicts[key] = select(by_id[key])
                del by_id
            hits = list(compress(chunk, map(verdicts.__getitem__, ids)))
            del chunk, kinds, ids
            if hits:
                yield hits
            del hits


def objects(generation: int | None = None) -> Heap:
    """Every object the collector tracks (of one generation if given), tuples left out."""
    if generation == 0:  # the young generation's listing is small: no young collection is
        return _listed(partial(gc.get_objects, 0))  # slowed by it, no burst waits for it
    fetch = gc.get_objects if generation is None else partial(gc.get_objects, generation)
    with _quiet:
        # from now on no burst starts (see `_Quiet`); the step waits for those under way
        _quiet_state.listings += 1
    try:
        heap = _listed(fetch)
    except BaseException:
        _listing_gone()
        raise
    weakref.finalize(heap, _listing_gone)  # the listing lives as long as the Heap
    return heap


def _listed(fetch: Callable[[], list[Any]]) -> Heap:
    spill: list[deque[Any]] = []
    with step():
        raw = _split(_once(fetch), 3, spill)
        kept = map(list, map(compress, raw[0], _by_type(_NOT_TUPLE, raw[1])))
        listing, total = _run(spill, kept, map(len, raw[2]))
    return Heap(listing, total - len(listing))


# -- C-only pipelines ---------------------------------------------------------------------------
#
# A pipeline is a chain of lazy C iterators (map, compress, islice, starmap, chain) built
# before anything runs, then driven by one call (`next`). Whatever it hands between its
# stages lives only inside that call, so no bytecode runs while it lives: the interpreter only
# hands the GIL to another thread between bytecodes (or when a C call blocks, and nothing here
# blocks). A value a stage needs twice (a list and the types of its items) is fetched once and
# split (`_split`): kept in a deque until each of its users pops it. No iterator used here
# keeps the last value it handed on. Everything made before the call is in the listing the
# call makes, so none of it may keep a result (`_run`).


def _run(spill: list[deque[Any]], *pipelines: Iterator[Any]) -> list[Any]:
    """Drive `pipelines` in turn in one C call (the only one that runs them: no bytecode
    between its first C call and the last reference to a raw list going away) and hand back
    what each yielded.

    The results come through a deque emptied here: a container made before the call (a zip's
    reused result tuple, the list `list(...)` makes before it pulls) is listed by it and would
    hold the listing, a cycle that keeps every object alive in it until a full collection.
    If a stage raises (a MemoryError), the deques of `spill` (`_split`'s) are emptied in one
    C call before anything else runs: they may still hold a raw list."""
    out: deque[Any] = deque()
    try:
        deque(map(out.append, chain(*pipelines)), maxlen=0)
    except BaseException:
        deque(map(deque.clear, spill), maxlen=0)
        raise
    return [out.popleft() for _ in range(len(out))]


def _once(fetch: Callable[[], Any]) -> Iterator[Any]:
    """`fetch()` when first pulled, lazily."""
    return starmap(fetch, repeat((), 1))


def _split(source: Iterator[Any], users: int, spill: list[deque[Any]]) -> list[Iterator[Any]]:
    """`users` iterators each yielding `source`'s one value once. The first pulled pulls
    `source` and keeps the value for the others in a deque, from which each takes it (so the
    deque holds it no more once all have: every one of them must be pulled); the deque is
    added to `spill`, for `_run` to empty if a stage raises."""
    held: deque[Any] = deque()
    spill.append(held)
    fill = map(held.extend, map(repeat, source, repeat(users)))
    return [filterfalse(_IS_NONE, chain(fill, _once(held.popleft))) for _ in range(users)]


def _by_type(test: Callable[[type], bool], values: Iterator[Any]) -> Iterator[Iterator[bool]]:
    """For the list `values` yields: `test` of each item's type, lazily."""
    return map(map, repeat(test), map(partial(map, type), values))


_IS_NONE = partial(operator.is_, None)
_IS_TUPLE = partial(operator.is_, tuple)
_NOT_TUPLE = partial(operator.is_not, tuple)


#: targets per step of `referrers`: `gc.get_referrers` compares every reference it
#: visits with each target in turn, so one step costs the heap's references times the targets
#: (at 640k tracked objects, measured: ~55 ms for 1 target, ~95 ms for 8, ~850 ms for 256, all
#: of it with every other thread waiting); more targets are looked up 8 at a time, the GIL
#: handed over between steps
TARGETS_PER_STEP = 8


def referrers(targets: list[Any], deadline: float | None = None) -> list[Any]:
    """`gc.get_referrers` of the objects in `targets` without the tuples that may still be
    under construction, each referrer once, in steps of at most `TARGETS_PER_STEP` targets;
    past `deadline` (a `time.perf_counter()` value) no further step starts, and the referrers
    of the targets not reached are left out (each step walks the whole heap: many targets are
    many walks).

    `targets` is a list, left out of the answer: each step's targets are a fresh tuple that
    only that step's call holds (a tuple of them held anywhere else, such as the one a
    ``f(*targets)`` call makes, would be a tuple referrer, whose holders cost a second walk)."""
    found: dict[int, Any] = {}
    for start in range(0, len(targets), TARGETS_PER_STEP):
        if start and deadline is not None and time.perf_counter() > deadline:
            break
        part = _referrers_step(tuple(targets[start : start + TARGETS_PER_STEP]))
        for ref in part:
            # (what the steps so far found refers to the targets found)
            if ref is not found and ref is not targets:
                found.setdefault(id(ref), ref)
        del part
    kept = list(found.values())
    found.clear()
    return kept


def _referrers_step(targets: tuple[Any, ...]) -> list[Any]:
    """One step of `referrers`: one pipeline run."""
    with step():
        # (called with `targets` itself as its arguments, which gc.get_referrers leaves out: a
        # copy of them, a partial's, would be one more tuple referrer to look up)
        spill: list[deque[Any]] = []
        raw = _split(starmap(gc.get_referrers, repeat(targets, 1)), 4, spill)
        kept = map(list, map(compress, raw[0], _by_type(_NOT_TUPLE, raw[1])))
        # the tuples' own holders are looked up in this step too, at the same cost per tuple:
        # past `TARGETS_PER_STEP` of them (a class in thousands of bases tuples), the rest are
        # left out rather than hold every thread for seconds (a chain may then end sooner)
        tuples = map(compress, raw[2], _by_type(_IS_TUPLE, raw[3]))
        first = _split(map(list, map(islice, tuples, repeat(TARGETS_PER_STEP))), 2, spill)
        # their ids, and what refers to them, tuples left out (one being filled refers to its
        # items); the list of them is gone before that lookup (starmap makes the call's
        # arguments from it and lets it go), so it is no holder; with none, no lookup (with no
        # arguments, gc.get_referrers would still walk the heap) and no holders
        wanted = map(set, map(partial(map, id), first[0]))
        looked_up = starmap(gc.get_referrers, filter(None, first[1]))
        holders = _split(chain(looked_up, repeat([], 1)), 2, spill)
        others = map(list, map(compress, holders[0], _by_type(_NOT_TUPLE, holders[1])))
        found: list[Any]
        ids: set[int]
        found, ids, held_by = _run(spill, kept, wanted, others)
    if ids:
        found.extend(_held(held_by, ids))
    return found


def _held(holders: list[Any], wanted: set[int]) -> list[Any]:
    """The tuples among `holders`' referents whose ids are `wanted` (each referred to by a
    tracked object other than a tuple, so none of them is being built)."""
    mine = (referrers.__code__, _referrers_step.__code__, _held.__code__)
    found: dict[int, Any] = {}
    for holder in holders:
        if type(holder) is types.FrameType and holder.f_code in mine:
            continue
        for item in gc.get_referents(holder):
            if type(item) is tuple and id(item) in wanted:
                found[id(item)] = item
    return list(found.values())
