"""Heap walks beside a thread that is building a tuple from a generator (`tuple(gen)`).

CPython resizes such a tuple at the end and refuses (SystemError) if anyone else holds a
reference to it then; `gc.get_objects()`/`gc.get_referrers()` hand out exactly such references.
"""

from __future__ import annotations

import gc
import sys
import threading
import time
from collections.abc import Callable, Iterator
from typing import Any

from lensbook.skills import _heap

_KEPT: list[Any] = []


def _slow() -> Iterator[int]:
    for i in range(40):
        if i % 8 == 0:
            time.sleep(0)  # let the walking thread in while the tuple is half built
        yield i


def _walk_beside_a_builder(walk: Callable[[], Any], rounds: int = 200) -> int:
    errors: list[BaseException] = []
    stop = threading.Event()

    def build() -> None:
        while not stop.is_set():
            try:
                tuple(_slow())
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


def test_raw_walks_break_a_tuple_under_construction() -> None:
    # the hazard is real on this interpreter: the tests below would fail without _heap
    assert _walk_beside_a_builder(gc.get_objects) > 0


def test_safe_walks_never_break_it() -> None:
    assert _walk_beside_a_builder(lambda: _heap.objects().objects) == 0
    assert _walk_beside_a_builder(lambda: _heap.referrers(3)) == 0


def test_walks_see_what_they_should_and_restore_the_switch_interval() -> None:
    before = sys.getswitchinterval()
    held = object()
    pinned = (held, "in a module-level list")
    _KEPT.append(pinned)  # a tuple a tracked object refers to: found as a referrer
    heap = _heap.objects()
    assert heap.tuples > 0 and not any(type(o) is tuple for o in heap.objects)
    assert any(o is pinned for o in _heap.referrers(held))
    assert sys.getswitchinterval() == before
