"""In-process checks of the rules the fault corpus needed, on real objects: duplicate logging
handlers, what holds a thread pool, the command of a zombie's Popen, frames reclaimed in
reference cycles, and the last error's frames in a real IPython shell."""

from __future__ import annotations

import contextlib
import gc
import io
import logging
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import psutil
import pytest

from lensbook.skills.gc_ import _cyclic_frames
from lensbook.skills.logs import LogsSkill
from lensbook.skills.process import _popen_commands
from lensbook.skills.threads import ThreadsSkill, _held_by, _pool_of
from tests._ipython import ipython_shell

#: a module global holding a pool, as a service module would
SHARED_POOL: ThreadPoolExecutor | None = None


class Uploader:
    """Holds a pool of its own, as a per-request object would."""

    def __init__(self) -> None:
        self.workers = ThreadPoolExecutor(max_workers=1, thread_name_prefix="uploader")


def test_duplicate_handlers_are_counted_only_for_a_known_target(tmp_path: Path) -> None:
    log = logging.getLogger("corpus.dup")
    path = tmp_path / "app.log"
    added = [logging.FileHandler(path) for _ in range(3)] + [logging.NullHandler() for _ in "ab"]
    for h in added:
        log.addHandler(h)
    try:
        result = LogsSkill().handlers(limit=20)
        (row,) = [r for r in result["top"] if r["logger"] == "corpus.dup"]
        assert row["handlers"] == 5
        assert row["duplicates"] == 2  # three FileHandlers on one file; NullHandlers name none
        assert row["by_target"][0] == {"class": "FileHandler", "target": str(path), "count": 3}
    finally:
        for h in added:
            log.removeHandler(h)
            h.close()


def test_a_pool_is_named_by_the_attribute_or_global_that_holds_it() -> None:
    global SHARED_POOL
    uploader = Uploader()
    SHARED_POOL = ThreadPoolExecutor(max_workers=1, thread_name_prefix="shared")
    try:
        for pool in (uploader.workers, SHARED_POOL):
            pool.submit(time.sleep, 0).result()
        held = _held_by(uploader.workers)
        assert held is not None and held.startswith("attribute 'workers' of Uploader instances")
        assert "test_corpus_rules.py:" in held
        assert _held_by(SHARED_POOL) == f"global 'SHARED_POOL' of module {__name__}"
        workers = [t for t in threading.enumerate() if _pool_of(t) is uploader.workers]
        assert len(workers) == 1
        groups = ThreadsSkill().groups(limit=20)["groups"]
        (row,) = [g for g in groups if g["pattern"] == "uploader_*"]
        assert row["count"] == 1 and row["pools"] == 1 and "_worker" in row["runs"]
    finally:
        uploader.workers.shutdown()
        SHARED_POOL.shutdown()
        SHARED_POOL = None


def test_a_zombie_is_named_by_the_command_its_popen_ran() -> None:
    proc = subprocess.Popen([sys.executable, "-c", "pass", "--job", "42"])
    try:
        deadline = time.monotonic() + 30
        while psutil.Process(proc.pid).status() != psutil.STATUS_ZOMBIE:
            assert time.monotonic() < deadline, "the child never exited"
            time.sleep(0.02)
        found = _popen_commands({proc.pid, 999_999_999})
        assert found == {proc.pid: f"{sys.executable} -c pass --job 42"}
    finally:
        proc.wait(10)


def _keeps_its_error(n: int) -> int:
    errors = {}
    try:
        raise ValueError(n)
    except ValueError as exc:
        errors["e"] = exc  # exc -> traceback -> this frame -> errors -> exc
    return len(errors)


def test_frames_in_cyclic_garbage_name_the_function_that_stores_the_exception() -> None:
    flags = gc.get_debug()
    gc.collect()
    first = len(gc.garbage)
    gc.set_debug(flags | gc.DEBUG_SAVEALL)
    try:
        for n in range(5):
            _keeps_its_error(n)
        gc.collect()
    finally:
        gc.set_debug(flags)
    kept = gc.garbage[first:]
    del gc.garbage[first:]
    rows = _cyclic_frames(kept)
    del kept
    lead = rows[0]
    assert lead["function"] == "_keeps_its_error"
    assert lead["holds_exception_in"] == "errors"
    assert lead["count"] == 5 and lead["where"].endswith(
        f"test_corpus_rules.py:{_keeps_its_error.__code__.co_firstlineno}"
    )


@pytest.fixture
def shell(tmp_path: Path) -> Iterator[Any]:
    with ipython_shell(tmp_path, fresh=False) as sh:
        yield sh
        for name in ("last_exc", "last_value", "last_traceback", "last_type"):
            if hasattr(sys, name):
                setattr(sys, name, None)
        with contextlib.redirect_stdout(io.StringIO()):
            sh.run_cell("None", store_history=True)


def test_the_last_error_keeps_the_failed_functions_locals(shell: Any) -> None:
    from lensbook.skills.kernel import KernelSkill

    cells = (
        "def build(n):\n    blob = bytearray(n)\n    return blob['x']\n",
        "build(8_000_000)",
    )
    with contextlib.redirect_stdout(io.StringIO()), contextlib.redirect_stderr(io.StringIO()):
        for cell in cells:
            shell.run_cell(cell, store_history=True)
    skill = KernelSkill()
    assert skill.snapshot()["last_error_frames"] >= 2
    result = skill.last_error(limit=3)
    assert result["last_error"].startswith("TypeError")
    lead = result["top"][0]
    assert (lead["name"], lead["function"], lead["type"]) == ("blob", "build", "bytearray")
    assert lead["bytes"] >= 8_000_000
    assert "sys.last_traceback" in result["kept_by"]
    assert [f["function"] for f in result["frames"]] == ["<module>", "build"]


class _Client:
    """Opens a file per call and keeps it (its attributes live inline on 3.11+)."""

    def __init__(self, path: Path) -> None:
        self.handle = path.open("w")


def test_created_where_names_the_user_function_that_keeps_creating(tmp_path: Path) -> None:
    from lensbook.skills.creation import created_where

    made: list[Any] = []
    stop = threading.Event()

    def open_clients() -> None:
        n = 0
        while not stop.wait(0.02):
            n += 1
            made.append(_Client(tmp_path / f"c{n}.txt"))

    worker = threading.Thread(target=open_clients, daemon=True)
    worker.start()
    try:
        result = created_where(lambda: list(made), seconds=0.5)
    finally:
        stop.set()
        worker.join(5)
        for client in made:
            client.handle.close()
    assert result["created_in_window"] >= 1
    lead = result["sites"][0]
    line = _Client.__init__.__code__.co_firstlineno + 1
    assert lead["site"].endswith(f"test_corpus_rules.py:{line} in _Client.__init__"), lead
