"""Attribution to the user's code: a throwaway installed library two or three frames below the
user's function, and every skill that names a place blames the user's line."""

from __future__ import annotations

import importlib
import inspect
import json
import logging
import sys
import threading
import time
import tracemalloc
from collections.abc import Callable, Iterator
from pathlib import Path
from types import ModuleType
from typing import Any

import pytest

from lensbook import recorder
from lensbook.skills import _frames, _heap
from lensbook.skills.base import render_output
from lensbook.skills.exceptions import ExceptionsSkill
from lensbook.skills.memory import MemorySkill
from lensbook.skills.rules import Evidence
from lensbook.skills.threads import LockContention, ThreadsSkill
from tests.skills._probes import unmarked

_LIBRARY = {
    "plotkit/__init__.py": "from plotkit.figure import plot\n",
    "plotkit/figure.py": (
        "from plotkit import _render\n\ndef plot(points):\n    return _render.rasterise(points)\n"
    ),
    "plotkit/_render.py": (
        "_CANVASES = []\n"
        "\n"
        "def rasterise(points):\n"
        "    canvas = [bytearray(256) for _ in range(points)]  # library allocation\n"
        "    _CANVASES.append(canvas)\n"
        "    return len(canvas)\n"
        "\n"
        "def rasterise_deep(points, depth=8):\n"
        "    if depth:\n"
        "        return rasterise_deep(points, depth - 1)  # library recursion\n"
        "    return rasterise(points)\n"
        "\n"
        "def parse(text):\n"
        "    return int(text)  # library raise\n"
        "\n"
        "def spin(stop):\n"
        "    n = 0\n"
        "    while not stop:\n"
        "        n += 1\n"
        "    return n\n"
        "\n"
        "def start_worker(target, *args):\n"
        "    import threading\n"
        "    worker = threading.Thread(target=target, args=args, name='plotkit-worker')\n"
        "    worker.start()  # library thread start\n"
        "    return worker\n"
    ),
    "plotkit-1.0.dist-info/METADATA": "Metadata-Version: 2.1\nName: plotkit\nVersion: 1.0\n",
    "plotkit-1.0.dist-info/top_level.txt": "plotkit\n",
    "plotkit-1.0.dist-info/RECORD": "plotkit/__init__.py,,\nplotkit/figure.py,,\n",
}


@pytest.fixture
def plotkit(tmp_path: Path) -> Iterator[ModuleType]:
    """A small installed "library" (with its dist-info) in a temp dir on sys.path."""
    root = tmp_path / "libs"
    for name, text in _LIBRARY.items():
        path = root / name
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(text)
    sys.path.insert(0, str(root))
    _frames.forget()
    try:
        yield importlib.import_module("plotkit")
    finally:
        sys.path.remove(str(root))
        for name in [m for m in sys.modules if m == "plotkit" or m.startswith("plotkit.")]:
            del sys.modules[name]
        _frames.forget()


def draw_report(lib: ModuleType) -> int:
    return int(lib.plot(3000))  # user line


def draw_deep_report(lib: ModuleType) -> int:
    return int(lib._render.rasterise_deep(400))  # user deep line


def load_settings(lib: ModuleType) -> int:
    return int(lib._render.parse("not a number"))  # user raise


def render_loop(lib: ModuleType, stop: list[bool]) -> None:
    lib._render.spin(stop)  # user spin


def start_report_worker(lib: ModuleType, lock: threading.Lock) -> threading.Thread:
    return lib._render.start_worker(wait_for_report, lock)  # user thread start


def wait_for_report(lock: threading.Lock) -> None:
    with lock:
        pass


def _line(marker: str) -> int:
    lines, _ = inspect.getsourcelines(sys.modules[__name__])
    return next(i for i, line in enumerate(lines, 1) if marker in line)


def _rendered(value: Any) -> Any:
    """As the loop renders it, with the markers around the process's own text taken off."""
    text = render_output(value, 100_000)
    return json.loads(unmarked(text))


def _diff_around(lib: ModuleType, work: Callable[[], object]) -> Any:
    """The allocation diff of a default memory window (6 frames, in bursts) around `work`."""
    was_tracing = tracemalloc.is_tracing()
    skill = MemorySkill()  # the default: 10% of the window in bursts
    try:
        time.sleep(_heap.MAX_STEP_WAIT_S)  # earlier stalls' spacing has passed: no first rest
        assert skill.trace_start(frames=6)["first_burst_in_s"] == 0.0
        work()
        return _rendered(skill.allocation_diff(top=3))
    finally:
        skill.close()
        lib._render._CANVASES.clear()
        if tracemalloc.is_tracing() and not was_tracing:
            tracemalloc.stop()


def test_origins_of_user_library_stdlib_and_lensbook(plotkit: ModuleType) -> None:
    assert _frames.origin(plotkit._render.__file__) == "library"
    assert _frames.origin(__file__) == "user"
    assert _frames.origin(json.__file__) == "stdlib"
    assert _frames.origin(_frames.__file__) == "lensbook"
    assert _frames.origin("<ipython-input-3-abc>") == "user"
    assert _frames.short_path(plotkit._render.__file__) == "plotkit/_render.py"


def test_an_allocation_three_library_frames_down_is_blamed_on_the_users_line(
    plotkit: ModuleType,
) -> None:
    diff = _diff_around(plotkit, lambda: draw_report(plotkit))
    top = diff["sites"][0]
    assert top["site"].endswith(f"test_frames.py:{_line('# user line')}"), diff
    assert top["origin"] == "user"
    via = " ".join(top["via"])
    assert "plotkit/_render.py" in via and "plotkit/figure.py" in via
    assert "(library)" in via


def test_an_allocation_deeper_in_a_library_than_the_bursts_frames_is_blamed_on_the_users_line(
    plotkit: ModuleType,
) -> None:
    # ten library frames below the user's line: a 6-frame traceback never reaches it, so a
    # burst after one that held such blocks keeps more frames, and the cut ones follow
    pace = threading.Event()

    def steady_reports() -> None:
        ends = time.monotonic() + 3.0  # ~6 bursts
        while time.monotonic() < ends:
            draw_deep_report(plotkit)
            pace.wait(0.02)  # a steady workload, not a synchronisation

    diff = _diff_around(plotkit, steady_reports)
    assert diff["frames"] == 6
    top = diff["sites"][0]
    assert top["site"].endswith(f"test_frames.py:{_line('# user deep line')}"), diff
    assert top["share"] > 0.9, diff  # none left to the library's own lines
    assert f"plotkit/_render.py:{_library_line('# library recursion')}" in " ".join(top["via"])


def test_an_exception_raised_in_a_library_names_the_users_line(plotkit: ModuleType) -> None:
    skill = ExceptionsSkill()
    try:
        skill.snapshot()
        try:
            load_settings(plotkit)
        except ValueError:
            logging.getLogger("settings").exception("bad settings")
        latest = _rendered(skill.recent())["exceptions"][0]
    finally:
        skill.close()
    assert latest["where"].startswith("plotkit/_render.py:")
    assert latest["user_where"].startswith(f"tests/skills/test_frames.py:{_line('# user raise')}")


def test_a_hot_thread_inside_a_library_names_the_users_function(plotkit: ModuleType) -> None:
    stop: list[bool] = []  # a plain list: the hot loop calls nothing but its own code
    worker = threading.Thread(target=render_loop, args=(plotkit, stop), name="renderer")
    worker.start()
    try:
        hot = _rendered(ThreadsSkill().hot(seconds=0.3, top=5))
    finally:
        stop.append(True)
        worker.join(10)
    entry = next(t for t in hot["threads"] if t["thread"] == "renderer")
    assert entry["hot_function"].startswith("spin (plotkit/_render.py)")
    assert entry["user_function"].startswith("render_loop (")


def test_a_thread_listed_inside_a_library_names_what_it_runs_and_the_users_frame(
    plotkit: ModuleType,
) -> None:
    stop: list[bool] = []
    worker = threading.Thread(target=render_loop, args=(plotkit, stop), name="renderer-2")
    worker.start()
    try:
        listed = _rendered(ThreadsSkill().list_threads(limit=50))
    finally:
        stop.append(True)
        worker.join(10)
    group = next(g for g in listed["groups"] if g["threads"][0]["name"] == "renderer-2")
    assert group["runs"].startswith("render_loop (tests/skills/test_frames.py:")
    assert group["runs"].endswith("user code)")
    assert group["user_frame"].startswith(f"tests/skills/test_frames.py:{_line('# user spin')}")


def test_a_thread_a_library_started_names_the_users_call_that_started_it(
    plotkit: ModuleType,
) -> None:
    recorder.start("test-frames", sample_interval=None)  # sees threads start from now on
    lock = threading.Lock()
    lock.acquire()  # the worker waits for it: stuck where the threads skill looks
    try:
        worker = start_report_worker(plotkit, lock)
        skill = ThreadsSkill()
        deadline = time.monotonic() + 10
        while skill.snapshot()["blocked_on_lock"] < 1 and time.monotonic() < deadline:
            time.sleep(0.01)
        found = _rendered(skill.deadlocks())
        listed = _rendered(skill.list_threads(limit=50))
        (started,) = [
            e.detail
            for e in recorder.history_events(kinds=["thread_started"])
            if e.detail.get("thread") == "plotkit-worker"
        ]
    finally:
        lock.release()
        recorder.stop("test-frames")
    worker.join(10)
    started_by = (
        f"start_report_worker at tests/skills/test_frames.py:{_line('# user thread start')} "
        f"via plotkit/_render.py:{_library_line('# library thread start')}"
    )
    # the history says it too: the user's call, the library frame that started it
    assert started["function"] == "start_report_worker"
    assert started["started_from"].endswith(f"test_frames.py:{_line('# user thread start')}")
    assert started["via"] == f"plotkit/_render.py:{_library_line('# library thread start')}"
    (blocked,) = [b for b in found["blocked"] if b["thread"] == "plotkit-worker"]
    assert blocked["started_by"] == started_by
    group = next(g for g in listed["groups"] if g["threads"][0]["name"] == "plotkit-worker")
    assert group["started_by"] == started_by
    # and the finding says it: who started the thread that waits
    ev = Evidence(context={"reason": "stuck"})
    ev.results["threads_deadlocks"] = [({}, found)]
    (finding,) = LockContention().judge(ev)
    assert f"'plotkit-worker' (started by {started_by})" in finding.observation


def _library_line(marker: str) -> int:
    lines = _LIBRARY["plotkit/_render.py"].splitlines()
    return next(i for i, line in enumerate(lines, 1) if marker in line)


_CLASSES = """\
try:
    class InTry:
        pass
except Exception:
    pass


class Outer:
    class Inner:
        pass


def make():
    class Local:
        pass
    return Local
"""


def test_a_class_is_placed_at_its_statement_wherever_it_is_defined(tmp_path: Path) -> None:
    (tmp_path / "lb_placed.py").write_text(_CLASSES)
    sys.path.insert(0, str(tmp_path))
    try:
        module = importlib.import_module("lb_placed")
        sites = [
            _frames.type_site(kind)
            for kind in (module.InTry, module.Outer.Inner, module.make(), dict)
        ]
    finally:
        sys.path.remove(str(tmp_path))
        sys.modules.pop("lb_placed", None)
    assert [s.rsplit(":", 1)[-1] if s else s for s in sites] == ["2", "9", "14", None], sites
