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

from lensbook.skills import _heap, intrusion

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
        "referrers": lambda: _heap.referrers([MARK]),
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


def test_walks_see_what_they_should_and_never_touch_the_switch_interval() -> None:
    # (a list: a tuple of untracked items alone is untracked by the next collection, and
    # gc.get_referrers sees only tracked objects)
    held: list[object] = []
    pinned = (held, "in a module-level list")
    _KEPT.append(pinned)  # a tuple a tracked object refers to: found as a referrer
    seen: set[float] = set()
    done = threading.Event()

    def watch() -> None:  # (a raised interval handed the GIL to a busy thread for 250 ms)
        while not done.is_set():
            seen.add(sys.getswitchinterval())

    watcher = threading.Thread(target=watch, daemon=True)
    watcher.start()
    try:
        heap = _heap.objects()
        found = _heap.referrers([held])
    finally:
        done.set()
        watcher.join(10)
    assert heap.tuples > 0 and not any(type(o) is tuple for o in heap.objects)
    assert any(o is pinned for o in found)
    assert seen == {sys.getswitchinterval()}


def test_many_targets_cost_one_walk_per_step_and_their_list_is_no_referrer() -> None:
    targets: list[Any] = [[] for _ in range(_heap.TARGETS_PER_STEP + 4)]
    holders = [{"held": t} for t in targets]
    # a step whose walk finds a tuple referring to its targets walks the heap a second time
    # for that tuple's holders, and hands them to `_held`: a `referrers(*targets)` call made
    # such a tuple (the call's own arguments), found by every step
    second_walks: list[Any] = []
    with pytest.MonkeyPatch.context() as patch:
        patch.setattr(_heap, "_held", lambda holders, wanted: second_walks.append(wanted) or [])
        found = _heap.referrers(targets)
    assert second_walks == []
    assert {id(h) for h in holders} <= {id(r) for r in found}
    assert not any(r is targets for r in found)


def test_no_list_of_every_object_outlives_its_step() -> None:
    heap = _heap.objects()
    raw_length = len(heap.objects) + heap.tuples  # the raw list had every object, tuples too
    again = gc.get_objects()
    try:
        assert not [o for o in again if type(o) is list and len(o) == raw_length]
    finally:
        del again


def test_a_listing_is_freed_as_soon_as_its_caller_lets_it_go() -> None:
    # nothing the step made may hold it in a cycle (a zip's cached result tuple did: the zip
    # was in the listing it held, so every listing lived until the next full collection)
    gc.disable()
    try:
        heap = _heap.objects()
        length = len(heap.objects)
        del heap
        again = gc.get_objects()
        assert not [o for o in again if type(o) is list and len(o) == length]
        del again
    finally:
        gc.enable()


def test_steps_of_two_threads_take_turns() -> None:
    # the collector's on/off state is one setting of the interpreter: two overlapping steps
    # that each saved and restored it would leave it off for good
    first_in, release_first = threading.Event(), threading.Event()
    second_trying, second_in = threading.Event(), threading.Event()

    def first() -> None:
        with _heap.step():
            first_in.set()
            release_first.wait(30)

    def second() -> None:
        second_trying.set()
        with _heap.step():
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
    assert gc.isenabled()


def test_no_collection_starts_inside_a_step() -> None:
    # one would walk the raw list of every object while every other thread waits, and run
    # finalizers (Python code: a thread switch while that list lives)
    started: list[bool] = []
    inside = threading.Event()

    def watch(phase: str, info: dict[str, Any]) -> None:
        if phase == "start":
            started.append(inside.is_set())

    thresholds = gc.get_threshold()
    gc.callbacks.append(watch)
    gc.set_threshold(1)  # every allocation of a tracked object starts a collection
    try:
        with _heap.step():
            inside.set()
            [[] for _ in range(10)]  # the allocations a step makes
            inside.clear()
        heap = _heap.objects()
        found = _heap.referrers([_KEPT])
        del heap, found
        [[] for _ in range(10)]  # outside the steps, collections still start
    finally:
        gc.set_threshold(*thresholds)
        gc.callbacks.remove(watch)
    assert started and not any(started)
    assert gc.isenabled()


def test_a_step_right_after_another_waits_in_proportion_and_a_lone_one_does_not() -> None:
    with _heap.step():
        time.sleep(0.1)  # a long hold, as a step at a huge heap is
    ended = time.perf_counter()
    with _heap.step():
        began = time.perf_counter()
    # the program had the interpreter for at least STALL_SPACING times the step's length
    assert began - ended >= 0.1 * _heap.STALL_SPACING * 0.9
    with _heap.step():
        time.sleep(0.1)
    time.sleep(0.1 * _heap.STALL_SPACING + 0.05)  # the program ran long enough since
    asked = time.perf_counter()
    with _heap.step():
        lone = time.perf_counter()
    assert lone - asked < 0.05


def test_a_collector_turned_off_by_the_user_stays_off() -> None:
    gc.disable()
    try:
        _heap.objects()
        _heap.referrers([_KEPT])
        assert not gc.isenabled()
    finally:
        gc.enable()


def test_slices_rest_between_slices_and_stop_at_the_deadline() -> None:
    heap = _heap.Heap(list(range(2 * _heap.SLICE + 1)), tuples=0)
    rests: list[int] = []
    sizes = [len(s) for s in heap.slices(time.perf_counter() + 600, lambda: rests.append(1))]
    assert sizes == [_heap.SLICE, _heap.SLICE, 1] and len(rests) == 3 and not heap.partial
    assert list(heap.slices(time.perf_counter() - 1, lambda: None)) == [] and heap.partial


def test_a_tracing_burst_and_a_heap_listing_wait_for_each_other_a_bounded_time() -> None:
    """A burst waits for the listings of the whole heap alive to go (or is skipped), and a
    listing waits for the bursts under way to end: a young collection under tracing would walk
    the whole listing. Each burst ends only its own."""
    heap = _heap.objects()
    assert _heap.burst_begins(wait_s=0.05) is None  # a listing is alive: no burst
    del heap
    young = _heap.objects(generation=0)  # a generation's listing is small: no wait for it
    token = _heap.burst_begins(wait_s=0.05)
    assert token is not None
    _heap.burst_ends(token)
    del young
    first = _heap.burst_begins(wait_s=0.05)
    second = _heap.burst_begins(wait_s=0.05)
    assert first is not None and second is not None and first != second
    try:
        _heap.burst_ends(first)
        _heap.burst_ends(first)  # idempotent: the second burst is still under way
        ended = threading.Timer(0.1, _heap.burst_ends, (second,))
        ended.start()
        started = time.perf_counter()
        heap = _heap.objects()  # waits for the second burst's end
        waited = time.perf_counter() - started
        ended.join()
        assert 0.08 <= waited < _heap.MAX_STEP_WAIT_S + 1.0, waited
        del heap
    finally:
        _heap.burst_ends(first)
        _heap.burst_ends(second)
    # a burst that does not end (a bug, a crashed thread) costs a listing a bounded wait
    stuck = _heap.burst_begins(wait_s=0.0, force=True)
    try:
        started = time.perf_counter()
        del _heap.objects().objects[:]
        assert time.perf_counter() - started < _heap.MAX_STEP_WAIT_S + 1.0
    finally:
        _heap.burst_ends(stuck)
    # the listing above is gone with its Heap (the burst waits the stuck one's spacing)
    token = _heap.burst_begins(wait_s=_heap.MAX_STEP_WAIT_S + 0.5)
    assert token is not None
    _heap.burst_ends(token)


def test_steps_and_bursts_space_each_other_as_one_kind_of_stall() -> None:
    """A step right after a burst, and a burst right after a step, wait in proportion to
    the last stall's length (one budget for all of lensbook's stalls); both are recorded."""
    time.sleep(_heap.MAX_STEP_WAIT_S)  # earlier stalls' spacing has passed
    token = _heap.burst_begins(wait_s=0.05)
    assert token is not None
    time.sleep(0.1)  # a burst of 0.1 s
    _heap.burst_ends(token)
    ended = time.perf_counter()
    with _heap.step():
        began = time.perf_counter()
        time.sleep(0.1)  # a step of 0.1 s
    assert began - ended >= 0.1 * _heap.STALL_SPACING * 0.9
    early = _heap.burst_begins(wait_s=0.02)  # not its turn yet: a window's rests again
    _heap.burst_ends(early)  # (None: nothing; a loaded machine may have reached its turn)
    token = _heap.burst_begins(wait_s=0.5)
    assert token is not None
    _heap.burst_ends(token)
    recent = _heap.stalls()
    steps = [i for i, (kind, _, _) in enumerate(recent) if kind == "step"]
    _, b2, e2 = recent[steps[-1]]
    after = recent[steps[-1] + 1 :]
    assert after and all(kind == "burst" for kind, _, _ in after), recent
    # each burst after the step began no sooner than the step's length after it ended
    assert all(b - e2 >= 0.9 * (e2 - b2) * _heap.STALL_SPACING for _, b, _ in after), recent


def _ledger_hooks() -> list[Any]:
    return [hook for hook in gc.callbacks if hook is _heap._full.hook]


def test_a_watched_full_collection_spaces_the_next_stall_and_an_unwatched_one_does_not() -> None:
    """While a window watches them, the program's full collections are stalls like
    lensbook's: the next burst begins no sooner than the collection's length after it ended.
    Young collections are none; with no watch left the entry is inert, and `lensbook.stop()`
    (the intrusion ledger's session change) takes it out of ``gc.callbacks``."""
    ballast = [[i] for i in range(300_000)]  # a full collection of some length
    first = _heap.watch_collections()
    second = _heap.watch_collections()
    try:
        assert len(_ledger_hooks()) == 1
        gc.collect(0)
        assert _heap._full.last is None  # a young collection is none
        time.sleep(_heap.MAX_STEP_WAIT_S)  # earlier stalls' spacing has passed
        gc.collect()
        assert _heap._full.last is not None
        began, ended = _heap._full.last
        token = _heap.burst_begins(wait_s=1.0)
        asked = time.perf_counter()
        assert token is not None
        _heap.burst_ends(token)
        burst = _heap.stalls()[-1]
        owed = min((ended - began) * _heap.STALL_SPACING, _heap.MAX_STEP_WAIT_S)
        assert burst[0] == "burst" and burst[1] - ended >= 0.9 * owed, (burst, began, ended)
        assert asked - ended >= 0.9 * owed
        first()
        first()  # (a second call does nothing: the other watch still holds)
        assert _heap._full.watchers >= 1 and _heap._full.last is not None
    finally:
        second()
        first()
    assert _heap._full.last is None  # unwatched: no collection spaces anything any more
    gc.collect()
    assert _heap._full.last is None  # the entry left in is inert
    assert len(_ledger_hooks()) == 1
    [change] = [c for c in intrusion.active() if c.name.startswith("gc.callbacks hook (lens")]
    assert change.owner is None  # a session change: stop() and exit undo it
    change.undo("test ended")
    assert _ledger_hooks() == []
    del ballast


def test_no_stall_begins_during_a_watched_full_collection() -> None:
    """A full collection runs Python code (finalizers, the other callbacks), where a thread
    about to start a burst may get the GIL: the burst waits for the collection's end."""
    unwatch = _heap.watch_collections()
    try:
        time.sleep(_heap.MAX_STEP_WAIT_S)  # earlier stalls' spacing has passed
        _heap._full.hook("start", {"generation": 2})  # (as the collector calls it)
        assert _heap.burst_begins(wait_s=0.05) is None
        _heap._full.hook("stop", {"generation": 2, "collected": 0, "uncollectable": 0})
        began, ended = _heap._full.last or (0.0, 0.0)
        assert ended - began >= 0.05
        token = _heap.burst_begins(wait_s=1.0)
        assert token is not None
        _heap.burst_ends(token)
        owed = min((ended - began) * _heap.STALL_SPACING, _heap.MAX_STEP_WAIT_S)
        assert _heap.stalls()[-1][1] - ended >= 0.9 * owed
    finally:
        unwatch()
