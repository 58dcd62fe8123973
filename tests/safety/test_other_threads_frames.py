"""Reading other threads' stacks (and a running frame's locals, a running coroutine's frames)
must not break those threads, whenever a collection starts in the reading thread.

A frame that runs has no frame object until one is asked for, and CPython (3.11, 3.12) makes it
in two moves: the allocation (which can start a collection, whose gc.callbacks and finalizers
are Python code, at whose first bytecode the GIL may go to the frame's own thread) and the link.
A thread that returned from the frame meanwhile leaves the link made with memory it let go of,
or reused for another frame: ``f_back`` then hands back an int, a collection crashes in another
thread, the process segfaults (the likely cause of the hostile-model suite's rare crash in
CI: at its heap every full collection a probe thread starts hands the GIL over at lensbook's own
gc.callbacks).

The child makes that hand-over happen at every collection of the reading thread (a hook that
sleeps a millisecond) and starts collections often, so the race comes within a second or two
instead of once in a few CI runs.
"""

from __future__ import annotations

import gc
import os
import subprocess
import sys
import textwrap
import threading
from typing import Any

import pytest

from lensbook.skills import _heap
from lensbook.skills._stacks import current_frames, frame_locals

_CHILD = textwrap.dedent(
    """
    import asyncio, gc, random, sys, threading, time
    from lensbook.recorder.loops import known_loops
    from lensbook.skills import resolve_skill

    probes = {t.name: t for s in ("threads", "asyncio") for t in resolve_skill(s).probes()}
    reads = [
        lambda: probes["threads_list"].fn(),
        lambda: probes["threads_deadlocks"].fn(),
        lambda: probes["threads_stack"].fn(thread="MainThread"),
        resolve_skill("threads").snapshot,
        known_loops,
        lambda: probes["asyncio_tasks"].fn(),
    ]

    def a(n):
        x = [n]
        return b(n - 1) if n else sum(v for v in x)

    def b(n, p=1, q=2, r=3, s=4, u=5):
        y = z = w = n
        return c(n - 1, y, z) if n else [i for i in range(5)][0]

    def c(n, *rest):
        return a(n - 1) if n > 0 else len(rest)

    async def nested(n):
        a(n)
        if n:
            await nested(n - 1)
        await asyncio.sleep(0)

    async def app():
        rnd = random.Random(2)
        while not stop.is_set():
            await asyncio.gather(*(nested(rnd.randrange(8)) for _ in range(3)))

    stop = threading.Event()
    app_thread = threading.Thread(target=asyncio.run, args=(app(),), daemon=True)
    app_thread.start()

    reader = []
    def hand_over(phase, info):
        # a collection in the reading thread lets the other threads run before it ends, as a
        # full collection in a large heap does at its first bytecode (gc.callbacks, finalizers)
        if phase == "stop" and threading.get_ident() in reader:
            time.sleep(0.001)

    failed, done = [], [0]
    def read():
        reader.append(threading.get_ident())
        while not stop.is_set():
            for r in reads:
                try:
                    r()
                except Exception as exc:  # a "frame" that is an int: the linkage is broken
                    failed.append(repr(exc))
                    stop.set()
                    return
                done[0] += 1

    gc.callbacks.append(hand_over)
    gc.set_threshold(10, 10, 10)
    reading = threading.Thread(target=read, daemon=True)
    reading.start()
    end = time.monotonic() + float(sys.argv[1])
    rnd = random.Random(1)
    while time.monotonic() < end and not stop.is_set():
        a(rnd.randrange(30))  # stacks of frames of several sizes, returned from all the time
    stop.set()
    reading.join(10)
    print(failed[0] if failed else f"ok after {done[0]} reads", flush=True)
    """
)


@pytest.mark.slow
def test_reading_other_threads_frames_survives_collections_that_hand_the_gil_over() -> None:
    done = subprocess.run(
        [sys.executable, "-X", "faulthandler", "-c", _CHILD, "8"],
        capture_output=True,
        text=True,
        timeout=120,
    )
    # before the fix: AttributeError("'int' object has no attribute 'f_code'") within a second
    # or two, or a segfault (-11) in a collection of the main thread
    assert done.returncode == 0, (done.returncode, done.stdout[-500:], done.stderr[-3000:])
    assert done.stdout.startswith("ok after"), done.stdout[-500:]


def test_sections_without_collections_overlap_across_threads_and_end_as_they_began() -> None:
    # a frame read inside a heap step, and one ending while a step goes on: the collector stays
    # off until the last section ends, then is back on (saving and restoring it per section
    # would turn it on under the step, or leave it off for good)
    inside, leave = threading.Event(), threading.Event()
    seen: list[bool] = []

    def stepping() -> None:
        with _heap.step():
            inside.set()
            leave.wait(30)
            seen.append(gc.isenabled())

    assert gc.isenabled()
    thread = threading.Thread(target=stepping)
    thread.start()
    try:
        assert inside.wait(30)
        with _heap.collections_off():
            with _heap.collections_off():
                seen.append(gc.isenabled())
            seen.append(gc.isenabled())
        seen.append(gc.isenabled())  # the step still runs
    finally:
        leave.set()
        thread.join(30)
    assert seen == [False, False, False, False]
    assert gc.isenabled()
    gc.disable()  # a collector the user turned off stays off
    try:
        with _heap.collections_off():
            pass
        assert not gc.isenabled()
    finally:
        gc.enable()


def test_probes_report_the_programs_collector_not_lensbooks_sections() -> None:
    assert gc.isenabled()
    with _heap.collections_off():
        assert not gc.isenabled()  # (lensbook's own short section)
        assert _heap.collector_enabled()  # what the program set: no "GC disabled" false alarm
    gc.disable()
    try:
        with _heap.collections_off():
            assert not _heap.collector_enabled()
    finally:
        gc.enable()


def test_a_child_forked_during_a_section_collects() -> None:
    inside, leave = threading.Event(), threading.Event()

    def holding() -> None:
        with _heap.collections_off():
            inside.set()
            leave.wait(30)

    thread = threading.Thread(target=holding)
    thread.start()
    try:
        assert inside.wait(30)
        read, write = os.pipe()
        pid = os.fork()
        if pid == 0:  # the child: the holding thread is gone, its section with it
            ok = gc.isenabled() and _heap._off_sections == 0
            with _heap.collections_off():
                pass
            os.write(write, b"1" if ok and gc.isenabled() else b"0")
            os._exit(0)
        os.close(write)
        assert os.read(read, 1) == b"1"
        os.waitpid(pid, 0)
        os.close(read)
        assert not gc.isenabled()  # the parent's section is still open
    finally:
        leave.set()
        thread.join(30)
    assert gc.isenabled()


def test_the_callers_own_entry_is_its_frame_so_no_cycle_keeps_the_frames() -> None:
    frames = current_frames()
    assert frames[threading.get_ident()] is sys._getframe()


def test_frame_locals_copies_a_functions_and_reads_no_other_namespace() -> None:
    # a module's (or a class body's) namespace is no frame's locals to copy: a class body's
    # may be its metaclass's mapping, whose code reading f_locals would run
    marker = 1
    assert frame_locals(sys._getframe())["marker"] == marker
    namespace: dict[str, Any] = {}
    exec("import sys\nframe = sys._getframe()", namespace)
    assert frame_locals(namespace["frame"]) == {}
