"""The memory, gc, process, system and kernel skills read the flight recorder's history: what
moved since lensbook loaded, cited by history id. The ``metrics`` events come from the recorder's
real sample observer fed real runtime snapshots, around real allocations, collections,
descriptors and threads."""

from __future__ import annotations

import gc
import os
import shutil
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from typing import Any

import pytest

import lensbook
from lensbook import recorder
from lensbook.clients.offline import OfflineInvestigator
from lensbook.recorder.ring import HistoryRing
from lensbook.recorder.samples import HEARTBEAT_S, SampleObserver
from lensbook.skills import resolve_skill
from lensbook.skills.history_metrics import (
    FullCollectionsSinceLoad,
    HostPressureSinceLoad,
    RssSinceLoad,
)
from lensbook.skills.process import GrowthSinceLoad
from lensbook.skills.rules import Evidence
from lensbook.skills.runtime import RuntimeSkill


@pytest.fixture
def sampled() -> Iterator[tuple[SampleObserver, HistoryRing, RuntimeSkill]]:
    ring = HistoryRing()
    yield SampleObserver(ring), ring, RuntimeSkill()


def _evidence(ring: HistoryRing, **latest: Any) -> Evidence:
    ev = Evidence(context={}, snapshots=[dict(latest)], snapshot_ids=["s1"])
    ev.snapshot_times.append(time.time())
    ev.history = [e.to_dict() for e in ring.events()]
    return ev


def test_a_steady_process_writes_only_its_baseline(
    sampled: tuple[SampleObserver, HistoryRing, RuntimeSkill],
) -> None:
    observer, ring, runtime = sampled
    snap = runtime.snapshot()
    first = observer.observe("runtime", snap)
    assert first is not None and first.detail["baseline"] is True
    assert observer.observe("runtime", snap) is None  # nothing moved a step
    assert observer.observe("memory", {"rss_mb": 10**6}) is None  # only runtime samples
    moved = observer.observe("runtime", {**snap, "rss_mb": snap["rss_mb"] + 200})
    assert moved is not None and moved.detail["moved"] == ["rss_mb"]
    assert moved.detail["baseline"] is False
    assert [e.kind for e in ring.events()] == ["metrics", "metrics"]
    assert HEARTBEAT_S >= 60


def test_rss_grown_since_load_and_still_held_is_reported_with_its_ids(
    sampled: tuple[SampleObserver, HistoryRing, RuntimeSkill],
) -> None:
    observer, ring, runtime = sampled
    observer.observe("runtime", runtime.snapshot())
    base = runtime.snapshot()["rss_mb"]
    held = b"\x01" * int((max(96.0, 0.6 * base)) * 2**20)  # written: resident, one block
    try:
        observer.observe("runtime", runtime.snapshot())
        ev = _evidence(ring)
        (finding,) = RssSinceLoad().judge(ev)
    finally:
        del held
    assert finding.anomaly_type == "memory_growth_since_load"
    assert finding.severity == "info"  # one step (a data set loaded), not a trend
    assert "resident memory grew from" in finding.observation
    assert "when lensbook started recording" in finding.observation  # from the baseline
    assert finding.hypothesis and "outside Python objects" in finding.hypothesis
    assert set(finding.history_ids) == {e.id for e in ring.events()}
    # memory that was given back is not "still held"
    observer.observe("runtime", runtime.snapshot())
    assert RssSinceLoad().judge(_evidence(ring)) == []


def test_full_collections_since_load_are_counted_and_step_aside_for_the_live_rule(
    sampled: tuple[SampleObserver, HistoryRing, RuntimeSkill],
) -> None:
    observer, ring, runtime = sampled
    observer.observe("runtime", runtime.snapshot())
    for _ in range(12):
        gc.collect()
    # a moved RSS step writes the next event (collections ride along, they do not trigger)
    snap = runtime.snapshot()
    observer.observe("runtime", {**snap, "rss_mb": snap["rss_mb"] + 100})
    (finding,) = FullCollectionsSinceLoad().judge(_evidence(ring))
    assert finding.anomaly_type == "gc_full_collections_since_load"
    assert "generation-2 collections went from" in finding.observation
    assert len(finding.history_ids) == 2
    live = _evidence(ring)
    live.snapshots = [{"gc_collections_gen2": 0}, {"gc_collections_gen2": 5}]
    assert FullCollectionsSinceLoad().judge(live) == []


def test_descriptors_and_threads_opened_since_load_are_reported_by_the_process_skill(
    sampled: tuple[SampleObserver, HistoryRing, RuntimeSkill],
) -> None:
    observer, ring, runtime = sampled
    observer.observe("runtime", runtime.snapshot())
    first = runtime.snapshot()
    pipes = [os.pipe() for _ in range(max(40, first["open_fds"] // 2 + 1))]
    stop = threading.Event()
    workers = [threading.Thread(target=stop.wait, daemon=True) for _ in range(30)]
    for w in workers:
        w.start()
    try:
        observer.observe("runtime", runtime.snapshot())
    finally:
        stop.set()
        for w in workers:
            w.join(5)
        for a, b in pipes:
            os.close(a)
            os.close(b)
    (finding,) = GrowthSinceLoad().judge(_evidence(ring))
    assert "open file descriptors went from" in finding.observation
    assert "OS threads went from" in finding.observation
    assert finding.history_ids


def test_child_processes_started_since_load_are_sampled_and_reported(
    sampled: tuple[SampleObserver, HistoryRing, RuntimeSkill],
) -> None:
    """A subprocess leak (children started and never waited for) shows as growth of the
    sampled child count, cited by the process skill; the children are reaped after."""
    observer, ring, runtime = sampled
    first = observer.observe("runtime", runtime.snapshot())
    assert first is not None and isinstance(first.detail["children"], int)
    command = [shutil.which("sleep") or "sleep", "60"]
    if sys.platform == "win32":  # pragma: no cover (no sleep command there)
        command = [sys.executable, "-c", "import time; time.sleep(60)"]
    kids = [subprocess.Popen(command) for _ in range(12)]
    try:
        grown = observer.observe("runtime", runtime.snapshot())
    finally:
        for kid in kids:
            kid.kill()
        for kid in kids:
            kid.wait(30)
    assert grown is not None and "children" in grown.detail["moved"]
    # (an earlier test's zombie reaped by subprocess meanwhile may take one or two off)
    assert grown.detail["children"] - first.detail["children"] >= 10
    (finding,) = GrowthSinceLoad().judge(_evidence(ring))
    assert "child processes went from" in finding.observation
    assert "process_children" in (finding.hypothesis or "")
    assert set(finding.history_ids) == {first.id, grown.id}
    # reaped: the next sample is back at the baseline (or below) and writes the move down
    back = observer.observe("runtime", runtime.snapshot())
    assert back is not None and back.detail["children"] <= first.detail["children"]


def _metrics(i: int, at: float, **values: Any) -> dict[str, Any]:
    return {
        "id": f"h-{i:012x}",
        "time": at,
        "kind": "metrics",
        "source": "sampler",
        "detail": {"baseline": i == 1, **values},
    }


def test_host_pressure_that_eased_before_the_run_is_still_told() -> None:
    """The rule alone, on history as a run receives it (host pressure cannot be made safely
    on a shared machine): swap filled an hour ago and has eased since."""
    now = time.time()
    ev = Evidence(context={}, snapshots=[{}], snapshot_ids=["s1"], snapshot_times=[now])
    ev.history = [
        _metrics(1, now - 3600, host_memory_percent=40.0, host_swap_percent=2.0),
        _metrics(2, now - 3000, host_memory_percent=93.0, host_swap_percent=70.0),
        _metrics(3, now - 600, host_memory_percent=41.0, host_swap_percent=5.0),
    ]
    (finding,) = HostPressureSinceLoad().judge(ev)
    assert finding.severity == "info" and "it has eased since" in (finding.hypothesis or "")
    assert "host memory in use peaked at 93%" in finding.observation
    assert "swap in use peaked at 70%" in finding.observation
    assert set(finding.history_ids) == {"h-000000000001", "h-000000000002", "h-000000000003"}
    # the live rule sees host memory short now: the history keeps only the swap part
    ev.snapshots = [{"mem_available_percent": 4.0}]
    (finding,) = HostPressureSinceLoad().judge(ev)
    assert "host memory" not in finding.observation and "swap" in finding.observation


def test_a_cell_failing_again_and_again_is_reported_by_a_kernel_run() -> None:
    from IPython.core.interactiveshell import InteractiveShell

    shell = InteractiveShell.instance()
    recorder.clear()
    shell.run_line_magic("load_ext", "lensbook")
    try:
        for _ in range(3):
            shell.run_cell("prices = {}\nprices['AAPL'] * 2")
        lensbook.start(["kernel"], client=OfflineInvestigator(), sample_interval=None)
        notes = lensbook.run("kernel", {"reason": "my notebook keeps failing"})
    finally:
        shell.run_line_magic("unload_ext", "lensbook")
        lensbook.stop()
        recorder.clear()
        resolve_skill("kernel").close()
    found = [n for n in notes if n.anomaly_type == "cell_errors"]
    assert found, [n.anomaly_type for n in notes]
    text = found[0].observation
    assert "most often KeyError(" in text and "AAPL" in text and "3 time(s) (In [" in text
    assert any(s.startswith("h-") for s in found[0].snapshot_ids)


def test_a_steady_rise_since_load_is_a_warning_a_plateau_after_one_step_is_not(
    sampled: tuple[SampleObserver, HistoryRing, RuntimeSkill],
) -> None:
    observer, ring, runtime = sampled
    snap = runtime.snapshot()
    for i in range(6):  # RSS and OS threads rising at every sample
        observer.observe(
            "runtime",
            {**snap, "rss_mb": snap["rss_mb"] * (1 + 0.3 * i), "threads": snap["threads"] + 10 * i},
        )
    (memory,) = RssSinceLoad().judge(_evidence(ring))
    (process,) = GrowthSinceLoad().judge(_evidence(ring))
    assert memory.severity == "warning" and process.severity == "warning"
    assert "6 sample(s)" in memory.observation
    ring.clear()
    observer.clear()
    for rss in (200.0, 400.0, 400.0, 400.0, 400.0):  # one jump, then flat: no more events
        observer.observe("runtime", {**snap, "rss_mb": rss})
    (found,) = RssSinceLoad().judge(_evidence(ring))
    assert found.severity == "info" and "2 sample(s)" in found.observation
