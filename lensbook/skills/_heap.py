"""Heap walks that cannot break the user's threads: the one way probes list the heap.

`gc.get_objects()` and `gc.get_referrers()` hand back every object the collector tracks,
tuples that another thread is still building included: `tuple(iterable)` allocates a tuple,
runs the iterator (Python code, where the interpreter may switch threads), then resizes the
tuple, and the resize fails with ``SystemError: bad argument to internal function`` in *that*
thread if anyone else holds a reference at that moment. A probe thread holding a list of every
object while the user's thread resumes is exactly that reference (seen as operator crashes,
and once a segfault, in the hostile-model suite).

So the raw list never lives while another thread can run: it is taken and stripped of exact
tuples with the interpreter's switch interval raised (no other Python thread is handed the GIL
unless this one blocks, and nothing here blocks) and automatic collection put off, and both
are put back at once. What callers get is walked in slices (`Heap.slices`), with rests.

What one walk costs the user's threads, per million tracked objects (measured on a 2-core
machine; `benchmarks/bench_host_cost.py` prints the step at its heap):

- the exclusive step: one GIL hold of ~80 ms (`gc.get_objects` ~15 ms, the C-level filter,
  which reads every object's type, the rest); a `referrers` step ~15-20 ms. Nothing else runs
  inside: no collection (put off), no Python loop over the heap, no finalizer. It grows with
  the heap, so a step past the raised interval (250 ms, ~3 million objects) is no longer
  exclusive: waiters then ask for the GIL back, and may get it, mid-step;
- right after, the next young collections (generation 0, then 1), which run on whichever
  thread allocates, walk the list the caller holds: ~20 ms each;
- then the caller's slices: C-level passes of `SLICE` objects (a few ms of GIL each),
  paced so the walk takes at most about a third of the interpreter (the caller's `pace`).

When the main thread is busy, the step's thread waits up to the raised interval to get the
GIL back at the start of each step (the main thread runs alone meanwhile), so two steps
never come back to back.

A tuple still being built is referred to by nothing the collector sees (only its builder's C
stack: the resize requires that), so `referrers` keeps every tuple that some tracked object
refers to, found in the same exclusive step: a chain through a closure's cells or an
`lru_cache` key still reaches its root. `objects` leaves tuples out (censuses count them, in
`Heap.tuples`): checking a million tuples that way would cost a heap walk each.

Exclusive steps are taken one at a time across threads (a lock): the switch interval is one
setting of the whole interpreter, and two overlapping steps that each saved and restored it
would leave it raised for good (the second saves the first's raised value and restores that
last), after which every GIL hand-off of the user's own threads would wait 250 ms instead of
5 ms. Taking them in turn also keeps two probes' heap walks from stalling the user twice over.
"""

from __future__ import annotations

import gc
import operator
import sys
import threading
import time
import types
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from functools import partial
from itertools import compress
from typing import Any

__all__ = [
    "TARGETS_PER_STEP",
    "Heap",
    "Pacer",
    "exclusive",
    "objects",
    "referrers",
    "step_interval",
]

#: how long another thread may wait for the GIL during one exclusive step (instead of the
#: 5 ms default), at the least: past a C-speed pass over a million objects under load, short
#: enough for a main thread
_EXCLUSIVE_INTERVAL_S = 0.25
#: the interval is also at least this many times what a step is expected to take: a step that
#: outlasts it loses its protection (a waiter's request to let go is honoured at the first
#: bytecode after the C pass, while the raw list lives)
_STEP_MARGIN = 4.0
#: a step's expected length per block the allocator holds (`sys.getallocatedblocks`, O(1)
#: enough): a pass costs 75-150 ns per tracked object (PERFORMANCE-NOTES.md, under load)
_STEP_S_PER_BLOCK = 50e-9
# how long the last step took (read and written under `_exclusive_lock`)
_last_step_s = 0.0

#: objects per slice of a listing (`Heap.slices`): one C-level pass over a slice holds the GIL
#: for ~2-5 ms (about as long as the interpreter's own 5 ms switch interval lets a thread run)
SLICE = 32768

# one exclusive step at a time in the whole process (re-entrant: a step may nest another)
_exclusive_lock = threading.RLock()


@contextmanager
def exclusive() -> Iterator[None]:
    """No other Python thread is handed the GIL inside (unless this thread blocks), and no
    automatic collection starts.

    A thread waiting for the GIL asks the holder to let go once the switch interval has passed
    since it began to wait, so raising the interval alone leaves waiters that began with the
    old one: giving the GIL up once (`time.sleep(0)`) and taking it back restarts every
    woken waiter's wait with the raised interval. On the way out the interval is put back
    (in ``finally``: even an exception cannot leave it raised) and the GIL handed straight
    back to whoever waited through the step. Steps of several threads are taken in turn, so
    the interval each one saves is the user's, never another step's raised one. The raised
    interval outlasts the step by a margin (`step_interval`): one that ran past it would be
    asked to let go at its first bytecode after the C pass, with the raw list alive.

    A collection the step's own allocations would start is put off until just after it: in
    the step it would walk the raw list of every object (~20 ms per million) while all other
    threads wait, and run finalizers, any code, which may block and so hand the GIL over
    while that list lives. Put off, it runs at the next allocation after the step, as it
    would have. A collector the user turned off stays off.
    """
    global _last_step_s
    with _exclusive_lock:
        previous = sys.getswitchinterval()
        sys.setswitchinterval(max(previous, step_interval()))
        collecting = False
        try:
            time.sleep(0)
            collecting = gc.isenabled()
            gc.disable()
            started = time.perf_counter()
            try:
                yield
            finally:
                _last_step_s = time.perf_counter() - started
        finally:
            if collecting:
                gc.enable()
            sys.setswitchinterval(previous)
    time.sleep(0)  # outside the lock: the GIL goes to whoever waited through the step


def step_interval() -> float:
    """The switch interval for the next exclusive step: 250 ms, or more where the heap makes
    a step longer (`_STEP_MARGIN` times the last step, or times the allocator's block count
    at a pessimistic cost per block, for a first step on a heap of millions of objects)."""
    expected = max(_last_step_s, sys.getallocatedblocks() * _STEP_S_PER_BLOCK)
    return max(_EXCLUSIVE_INTERVAL_S, _STEP_MARGIN * expected)


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
            pace()  # the first rest follows the exclusive step, the longest stretch of work
            if time.perf_counter() > deadline:
                self.partial = True
                return
            chunk = self.objects[start : start + SLICE]
            yield chunk
            del chunk


def objects(generation: int | None = None) -> Heap:
    """Every object the collector tracks (of one generation if given), tuples left out."""
    with exclusive():
        raw = gc.get_objects() if generation is None else gc.get_objects(generation)
        kept = _without_tuples(raw)
        tuples = len(raw) - len(kept)
        del raw
    return Heap(kept, tuples)


_IS_TUPLE = partial(operator.is_, tuple)
_NOT_TUPLE = partial(operator.is_not, tuple)


def _without_tuples(raw: list[Any]) -> list[Any]:
    """`raw` without exact tuples, in one C-level pass: no bytecode runs inside it, so the
    interpreter never checks for a thread switch there (a Python loop would, at every turn)."""
    return list(compress(raw, map(_NOT_TUPLE, map(type, raw))))


#: targets per exclusive step of `referrers`: `gc.get_referrers` compares every reference it
#: visits with each target in turn, so one step costs the heap's references times the targets
#: (at 640k tracked objects, measured: ~55 ms for 1 target, ~95 ms for 8, ~850 ms for 256, all
#: of it with every other thread waiting); more targets are looked up 8 at a time, the GIL
#: handed over between steps
TARGETS_PER_STEP = 8


def referrers(*targets: Any, deadline: float | None = None) -> list[Any]:
    """`gc.get_referrers(*targets)` without the tuples that may still be under construction,
    each referrer once, in exclusive steps of at most `TARGETS_PER_STEP` targets; past
    `deadline` (a `time.perf_counter()` value) no further step starts, and the referrers of the
    targets not reached are left out (each step walks the whole heap: many targets are many
    walks)."""
    if len(targets) <= TARGETS_PER_STEP:
        return _referrers_step(targets)
    found: dict[int, Any] = {}
    for start in range(0, len(targets), TARGETS_PER_STEP):
        if start and deadline is not None and time.perf_counter() > deadline:
            break
        part = _referrers_step(targets[start : start + TARGETS_PER_STEP])
        for ref in part:
            if ref is not found:  # what the steps so far found refers to the targets found
                found.setdefault(id(ref), ref)
        del part
    kept = list(found.values())
    found.clear()
    return kept


def _referrers_step(targets: tuple[Any, ...]) -> list[Any]:
    """One exclusive step of `referrers`."""
    with exclusive():
        raw = gc.get_referrers(*targets)
        kept = list(compress(raw, map(_NOT_TUPLE, map(type, raw))))
        # the tuples' own holders are looked up in this step too, at the same cost per tuple:
        # past `TARGETS_PER_STEP` of them (a class in thousands of bases tuples), the rest are
        # left out rather than hold every thread for seconds (a chain may then end sooner)
        tuples = list(compress(raw, map(_IS_TUPLE, map(type, raw))))[:TARGETS_PER_STEP]
        del raw
        if tuples:
            # what refers to them, tuples left out (one being filled refers to its items);
            # only ids are kept of the candidates, so no Python loop runs while they are held
            holders = gc.get_referrers(*tuples)
            holders = list(compress(holders, map(_NOT_TUPLE, map(type, holders))))
            wanted = set(map(id, tuples))
            ours = id(tuples)  # the list of candidates refers to them all: not a holder
            tuples.clear()  # `holders` holds that list: emptied, it holds no tuple any more
            del tuples
            kept.extend(_held(holders, wanted, ours))
            del holders
        else:
            del tuples
    return kept


def _held(holders: list[Any], wanted: set[int], ours: int) -> list[Any]:
    """The tuples among `holders`' referents whose ids are `wanted` (each referred to by a
    tracked object other than a tuple, so none of them is being built)."""
    mine = (referrers.__code__, _referrers_step.__code__, _held.__code__)
    found: dict[int, Any] = {}
    for holder in holders:
        if id(holder) == ours or (type(holder) is types.FrameType and holder.f_code in mine):
            continue
        for item in gc.get_referents(holder):
            if type(item) is tuple and id(item) in wanted:
                found[id(item)] = item
    return list(found.values())
