"""Heap walks beside a thread that is building a tuple from a generator (`tuple(gen)`).

CPython resizes such a tuple at the end and refuses (SystemError) if anyone else holds a
reference to it then; `gc.get_objects()`/`gc.get_referrers()` hand out exactly such references.
The walks run in a child process: a probe thread and a user thread, as in an investigated
process (a test process full of other tests' threads and objects is not that).
"""

from __future__ import annotations

import gc
import subprocess
import sys
import textwrap
import threading
import time
from typing import Any

import pytest

from lensbook.skills import _heap

_CHILD = textwrap.dedent(
    """
    import gc, sys, threading, time
    from lensbook.skills import _heap

    MARK = object()

    def slow():
        for i in range(40):
            if i % 8 == 0:
                time.sleep(0)  # let the walking thread in while the tuple is half built
            yield MARK

    def beside_a_builder(walk, rounds=150):
        errors = []
        stop = threading.Event()

        def build():
            while not stop.is_set():
                try:
                    tuple(slow())
                except SystemError as exc:
                    errors.append(exc)

        builder = threading.Thread(target=build, daemon=True)
        builder.start()
        try:
            for _ in range(rounds):
                held = walk()
                time.sleep(0.0005)  # what a probe does while it holds its walk: others run
                del held
        finally:
            stop.set()
            builder.join(30)
        return len(errors)

    walks = {
        "raw_objects": gc.get_objects,
        "raw_referrers": lambda: gc.get_referrers(MARK),
        "objects": lambda: _heap.objects().objects,
        "referrers": lambda: _heap.referrers(MARK),
    }
    print(beside_a_builder(walks[sys.argv[1]]))
    """
)


def _broken_tuples(walk: str) -> int:
    done = subprocess.run(
        [sys.executable, "-c", _CHILD, walk], capture_output=True, text=True, timeout=120
    )
    assert done.returncode == 0, done.stderr[-2000:]
    return int(done.stdout.split()[-1])


@pytest.mark.parametrize("walk", ["raw_objects", "raw_referrers"])
def test_raw_walks_break_a_tuple_under_construction(walk: str) -> None:
    # the hazard is real on this interpreter: the test below would fail without _heap
    assert _broken_tuples(walk) > 0


@pytest.mark.parametrize("walk", ["objects", "referrers"])
def test_safe_walks_never_break_it(walk: str) -> None:
    assert _broken_tuples(walk) == 0


_KEPT: list[object] = []


def test_walks_see_what_they_should_and_restore_the_switch_interval() -> None:
    before = sys.getswitchinterval()
    held = object()
    pinned = (held, "in a module-level list")
    _KEPT.append(pinned)  # a tuple a tracked object refers to: found as a referrer
    heap = _heap.objects()
    assert heap.tuples > 0 and not any(type(o) is tuple for o in heap.objects)
    assert any(o is pinned for o in _heap.referrers(held))
    assert sys.getswitchinterval() == before


def test_steps_of_two_threads_take_turns_and_give_the_interval_back() -> None:
    # two probes walking at once used to overlap: the second saved the first's raised interval
    # and restored that, leaving every later GIL hand-off of the process 50x slower
    before = sys.getswitchinterval()
    first_in, release_first = threading.Event(), threading.Event()
    second_trying, second_in = threading.Event(), threading.Event()

    def first() -> None:
        with _heap.exclusive():
            first_in.set()
            release_first.wait(30)  # blocking inside a step is allowed: it hands the GIL over

    def second() -> None:
        second_trying.set()
        with _heap.exclusive():
            second_in.set()

    a = threading.Thread(target=first)
    a.start()
    assert first_in.wait(30)
    b = threading.Thread(target=second)
    b.start()
    assert second_trying.wait(30)
    overlapped = second_in.wait(1.0)  # it must wait for the first step to end
    release_first.set()
    a.join(30)
    b.join(30)
    assert not overlapped and second_in.is_set()
    assert sys.getswitchinterval() == before


def test_no_collection_starts_inside_an_exclusive_step() -> None:
    # one would walk the raw list of every object while every other thread waits, and run
    # finalizers (any code, which may block and hand the GIL over while that list lives)
    before = sys.getswitchinterval()
    inside: list[int] = []
    outside: list[int] = []

    def watch(phase: str, info: dict[str, Any]) -> None:
        if phase == "start":
            # an exclusive step is the only time the switch interval is raised
            (inside if sys.getswitchinterval() != before else outside).append(info["generation"])

    thresholds = gc.get_threshold()
    gc.callbacks.append(watch)
    gc.set_threshold(1)  # every allocation of a tracked object starts a collection
    try:
        heap = _heap.objects()
        found = _heap.referrers(_KEPT)
        del heap, found
        [[] for _ in range(10)]  # outside the steps, collections still start
    finally:
        gc.set_threshold(*thresholds)
        gc.callbacks.remove(watch)
    assert outside and not inside
    assert gc.isenabled()


def test_a_collector_turned_off_by_the_user_stays_off() -> None:
    gc.disable()
    try:
        _heap.objects()
        _heap.referrers(_KEPT)
        assert not gc.isenabled()
    finally:
        gc.enable()


def test_slices_rest_between_slices_and_stop_at_the_deadline() -> None:
    heap = _heap.Heap(list(range(2 * _heap.SLICE + 1)), tuples=0)
    rests: list[int] = []
    sizes = [len(s) for s in heap.slices(time.perf_counter() + 600, lambda: rests.append(1))]
    assert sizes == [_heap.SLICE, _heap.SLICE, 1] and len(rests) == 3 and not heap.partial
    assert list(heap.slices(time.perf_counter() - 1, lambda: None)) == [] and heap.partial


def test_the_raised_interval_outlasts_the_last_step_by_a_margin() -> None:
    # a step longer than the raised interval is asked to let go at its first bytecode after
    # the C pass (on a heap of millions of objects, or under load): the next one is given more
    before = sys.getswitchinterval()
    with _heap.exclusive():
        time.sleep(0.3)  # a long step (blocking inside one is allowed)
    assert _heap.step_interval() >= 4 * 0.3
    with _heap.exclusive():
        inside = sys.getswitchinterval()
    assert inside >= 4 * 0.3
    assert sys.getswitchinterval() == before
