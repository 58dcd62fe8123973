"""The recorder's gc pause observer with a real heap whose full collection is slow, and the gc
skill's history rule reading what it recorded."""

from __future__ import annotations

import gc
import time
from typing import Any

import lensbook
from lensbook import recorder
from lensbook.recorder.gcpause import GcPauseObserver
from lensbook.skills.history_rules import GcPausesSinceLoad
from lensbook.skills.rules import Evidence


class _Node:
    """A cycle member: only a full collection frees it."""

    def __init__(self) -> None:
        self.me: Any = self


def _slow_full_collection(heap: list[Any], cycles: int) -> None:
    """Leave `cycles` unreachable cycles, then a full collection that walks the whole heap."""
    enabled = gc.isenabled()
    gc.disable()  # no young collection frees them first: the full one below does
    try:
        for _ in range(cycles):
            _Node()
    finally:
        if enabled:
            gc.enable()
    gc.collect()


def test_a_slow_full_collection_is_recorded_with_what_it_freed() -> None:
    # half a million tracked containers: a full collection walks each (several ms on any
    # machine); the threshold is well below that, the young collections are not recorded
    heap = [[i] for i in range(500_000)]
    before = list(gc.callbacks)
    observer = GcPauseObserver(threshold_s=0.001)
    observer.install()
    try:
        gc.collect(0)  # a young collection: never a pause event
        assert observer.flush(time.time()) == []
        _slow_full_collection(heap, 2_000)
        events = observer.flush(time.time())
    finally:
        observer.remove()
    assert [id(c) for c in gc.callbacks] == [id(c) for c in before]  # the same entries
    (event,) = events
    assert event.kind == "gc_pause" and event.source == "gc"
    d = event.detail
    assert d["generation"] == 2 and d["duration_ms"] > 1.0 and d["threshold_ms"] == 1.0
    assert d["collected"] >= 2_000 and d["uncollectable"] == 0
    assert set(d) == {"duration_ms", "threshold_ms", "generation", "collected", "uncollectable"}
    assert len(heap) == 500_000


def test_the_recorder_keeps_its_gc_hook_only_while_recording() -> None:
    before = list(gc.callbacks)
    lensbook.start(["gc"], sample_interval=None)
    try:
        assert recorder.recorder.gc.installed and len(gc.callbacks) > len(before)
    finally:
        lensbook.stop()
    assert [id(c) for c in gc.callbacks] == [id(c) for c in before]  # the same entries


def test_gc_history_rule_tells_the_pauses_since_load() -> None:
    heap = [[i] for i in range(500_000)]
    observer = GcPauseObserver(threshold_s=0.001)
    observer.install()
    try:
        _slow_full_collection(heap, 100)
        _slow_full_collection(heap, 100)
    finally:
        observer.remove()
    events = observer.flush(time.time())
    assert len(events) == 2
    now = time.time()
    ev = Evidence(context={}, snapshots=[{}], snapshot_ids=["s1"], snapshot_times=[now])
    ev.history = [e.to_dict() for e in events]
    (finding,) = GcPausesSinceLoad().judge(ev)
    assert finding.anomaly_type == "gc_pauses_since_load"
    assert finding.context.startswith("2 full collection(s) over 1.0 ms since the flight recorder")
    assert "the longest paused every thread for" in finding.observation
    assert finding.history_ids == tuple(e.id for e in events)
    assert (
        GcPausesSinceLoad().judge(
            Evidence(context={}, snapshots=[{}], snapshot_ids=["s1"], snapshot_times=[now])
        )
        == []
    )
    assert "gc_pause" in recorder.KINDS and "gc_pause" in recorder.CAPS


def test_one_long_full_collection_is_information_and_repeated_ones_a_warning() -> None:
    now = time.time()

    def pause(ms: float, at: float) -> dict[str, object]:
        detail = {"duration_ms": ms, "threshold_ms": 50.0, "collected": 1, "uncollectable": 0}
        return {"id": f"h{at}", "time": at, "kind": "gc_pause", "source": "gc", "detail": detail}

    def judged(*pauses: dict[str, object]) -> str:
        ev = Evidence(context={}, snapshots=[{}], snapshot_ids=["s1"], snapshot_times=[now])
        ev.history = list(pauses)
        (finding,) = GcPausesSinceLoad().judge(ev)
        return finding.severity

    assert judged(pause(352.0, now - 6)) == "info"  # (a healthy ETL in a large heap saw one)
    assert judged(pause(352.0, now - 60), pause(400.0, now - 6)) == "warning"
    assert judged(pause(80.0, now - 60), pause(90.0, now - 6)) == "info"
