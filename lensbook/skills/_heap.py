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
unless this one blocks, and nothing here blocks), and the interval is put back at once. The
step costs what a C-speed pass over the heap costs (~20 ms for `gc.get_objects` plus ~25 ms
for the filter per million objects, PERFORMANCE-NOTES.md), the time a heap walk already holds
the GIL for. What callers get may be walked in chunks, with rests, at leisure.

A tuple still being built is referred to by nothing the collector sees (only its builder's C
stack: the resize requires that), so `referrers` keeps every tuple that some tracked object
refers to, found in the same exclusive step: a chain through a closure's cells or an
`lru_cache` key still reaches its root. `objects` leaves tuples out (censuses count them, in
`Heap.tuples`): checking a million tuples that way would cost a heap walk each.
"""

from __future__ import annotations

import gc
import sys
import types
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Any

__all__ = ["Heap", "exclusive", "objects", "referrers"]

#: long enough that no waiting thread asks for the GIL during one C-speed pass
_EXCLUSIVE_INTERVAL_S = 10.0


@contextmanager
def exclusive() -> Iterator[None]:
    """No other Python thread is handed the GIL inside (unless this thread blocks).

    The switch interval is process-wide, so it is raised only around C-speed steps and put
    back in ``finally``: even an exception cannot leave it raised.
    """
    previous = sys.getswitchinterval()
    sys.setswitchinterval(_EXCLUSIVE_INTERVAL_S)
    try:
        yield
    finally:
        sys.setswitchinterval(previous)


@dataclass
class Heap:
    """The tracked objects but exact tuples, and how many tuples were left out."""

    objects: list[Any]
    tuples: int

    def __len__(self) -> int:
        return len(self.objects) + self.tuples


def objects(generation: int | None = None) -> Heap:
    """Every object the collector tracks (of one generation if given), tuples left out."""
    with exclusive():
        raw = gc.get_objects() if generation is None else gc.get_objects(generation)
        kept = [o for o in raw if type(o) is not tuple]
        tuples = len(raw) - len(kept)
        del raw
    return Heap(kept, tuples)


def referrers(*targets: Any) -> list[Any]:
    """`gc.get_referrers(*targets)` without the tuples that may still be under construction."""
    with exclusive():
        raw = gc.get_referrers(*targets)
        tuples = [o for o in raw if type(o) is tuple]
        kept = [o for o in raw if type(o) is not tuple]
        del raw
        if tuples:
            kept.extend(_published(tuples))
        del tuples
    return kept


def _published(tuples: list[Any]) -> list[Any]:
    """The tuples that some tracked object refers to (so none of them is being built).

    Runs inside `exclusive()`: the holders list may hold a tuple under construction (one being
    filled refers to its items) and is dropped before the caller lets other threads run.
    """
    index = {id(t): t for t in tuples}
    holders = gc.get_referrers(*tuples)
    own = {id(tuples), id(index), id(holders)}
    mine = (_published.__code__, referrers.__code__)
    found: dict[int, Any] = {}
    for holder in holders:
        if id(holder) in own:
            continue
        if type(holder) is types.FrameType and holder.f_code in mine:
            continue
        for item in gc.get_referents(holder):
            if id(item) in index:
                found[id(item)] = index[id(item)]
    del holders
    return list(found.values())
