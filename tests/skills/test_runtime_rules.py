"""The runtime skill's relative rules: RSS growth judged on the sampled history, thread growth
and error rates, from real samples in the metrics store and real snapshots."""

from __future__ import annotations

import re
import threading
import time
from collections.abc import Iterator
from typing import Any

import pytest

from lensbook.sampling import store
from lensbook.skills.rules import Evidence
from lensbook.skills.runtime import RuntimeSkill
from tests._storms import log_exceptions


@pytest.fixture
def skill() -> Iterator[RuntimeSkill]:
    store.clear()
    yield RuntimeSkill()
    store.clear()


def _evidence(skill: RuntimeSkill) -> Evidence:
    ev = Evidence(context={"reason": ""})
    ev.snapshots.append(skill.snapshot())
    ev.snapshot_ids.append("s1")
    ev.snapshot_times.append(time.time())
    ev.results["runtime_trends"] = [({}, skill.trends())]
    return ev


def _judge(skill: RuntimeSkill, ev: Evidence) -> dict[str, Any]:
    return {f.anomaly_type: f for rule in skill.rules() for f in rule.judge(ev)}


def test_steady_rss_growth_in_the_samples_is_flagged_relative_to_the_process(
    skill: RuntimeSkill,
) -> None:
    now = time.time()
    rss = skill.snapshot()["rss_mb"]
    # 60 s of samples rising steadily from half the present RSS to it
    for i in range(13):
        store.record("runtime", {"rss_mb": rss * (0.5 + i / 24)}, at=now - 60 + i * 5)
    found = _judge(skill, _evidence(skill))
    growth = found["memory_growth"]
    assert "grows by" in growth.observation and "14 samples" in growth.observation


def _rising(skill: RuntimeSkill, sites_window: dict[str, Any]) -> Any:
    """The memory_growth finding on 60 s of samples rising from half of RSS to it, with a
    runtime_allocation_sites window of 5 s (0.5 s of it traced, unless `sites_window` says)."""
    now = time.time()
    rss = skill.snapshot()["rss_mb"]
    for i in range(13):
        store.record("runtime", {"rss_mb": rss * (0.5 + i / 24)}, at=now - 60 + i * 5)
    ev = _evidence(skill)
    window = {"window_s": 5.0, "traced_s": 0.5, "bursts": 20, **sites_window}
    ev.results["runtime_allocation_sites"] = [({}, window)]
    return _judge(skill, ev)["memory_growth"]


SITE = {"site": "app.py:12", "function": "decode", "code": "frame = lib.decode(buf)", "kb": 6.0}


def test_growth_that_python_did_not_allocate_is_not_blamed_on_a_python_line(
    skill: RuntimeSkill,
) -> None:
    # traced throughout the window: a Python rise at that rate would have shown
    growth = _rising(skill, {"growth_kb": 6.0, "sites": [SITE], "traced_s": None, "bursts": None})
    assert "outside Python's allocators" in (growth.hypothesis or "")
    assert "app.py:12" not in growth.observation + (growth.hypothesis or "")
    assert re.search(r"held [\d.]+ MB \(0% of it\)", growth.observation), growth.observation


def test_a_window_that_traced_too_little_claims_neither(skill: RuntimeSkill) -> None:
    # RSS gained 100 KB while traced: too little to weigh (1% of RSS is the least)
    tiny = {"rss_gained_in_bursts_kb": 100.0, "held_in_bursts_kb": 6.0}
    growth = _rising(skill, {"growth_kb": 6.0, "sites": [SITE], **tiny})
    hypothesis = growth.hypothesis or ""
    assert "too little to tell Python's memory from native" in hypothesis
    assert "allocates most of it" not in hypothesis and "outside" not in hypothesis


def test_growth_that_python_holds_in_part_says_how_much(skill: RuntimeSkill) -> None:
    gained = skill.snapshot()["rss_mb"] * 0.05 * 1024  # RSS gained 5% of itself while traced
    part = {"rss_gained_in_bursts_kb": gained, "held_in_bursts_kb": 0.34 * gained}
    growth = _rising(skill, {"growth_kb": 0.34 * gained, "sites": [SITE], **part})
    hypothesis = growth.hypothesis or ""
    assert "Python's allocations hold 34% of it, the most at app.py:12 (decode)" in hypothesis
    assert "allocates most of it" not in hypothesis


def test_growth_that_python_holds_names_the_users_line(skill: RuntimeSkill) -> None:
    rss = skill.snapshot()["rss_mb"]
    held_kb = rss / 2 / 60 * 5 * 1024  # the rise's rate over the 5 s window
    growth = _rising(skill, {"growth_kb": held_kb, "sites": [{**SITE, "kb": held_kb}]})
    assert "the user's code at app.py:12 (decode) allocates most of it" in (growth.hypothesis or "")
    assert "outside Python's allocators" not in (growth.hypothesis or "")


def test_a_saw_tooth_heap_is_not_a_leak(skill: RuntimeSkill) -> None:
    now = time.time()
    rss = skill.snapshot()["rss_mb"]
    for i in range(13):  # a busy ETL loop: up 60 MB, back down, again
        store.record("runtime", {"rss_mb": rss + (60 if i % 2 else 0)}, at=now - 60 + i * 5)
    assert "memory_growth" not in _judge(skill, _evidence(skill))


def test_threads_started_and_never_ended_are_flagged(skill: RuntimeSkill) -> None:
    now = time.time()
    base = threading.active_count()
    for i in range(6):
        store.record("runtime", {"python_threads": max(1, base - 40 + i * 5)}, at=now - 30 + i)
    stop = threading.Event()
    workers = [threading.Thread(target=stop.wait, daemon=True) for _ in range(20)]
    for w in workers:
        w.start()
    try:
        found = _judge(skill, _evidence(skill))
    finally:
        stop.set()
        for w in workers:
            w.join(5)
    assert "thread_growth" in found
    assert "the thread count rose from" in found["thread_growth"].observation


def test_thread_growth_the_recorder_saw_is_one_notification_naming_the_starter(
    skill: RuntimeSkill,
) -> None:
    """The sampled counts rise and the flight recorder saw the threads start: the runtime skill
    reports the growth once, from the history (kind and starting code), not twice."""
    from lensbook import recorder

    recorder.clear()
    recorder.start("test-runtime", sample_interval=None)
    now = time.time()
    base = threading.active_count()
    for i in range(6):
        store.record("runtime", {"python_threads": max(1, base - 40 + i * 5)}, at=now - 30 + i)
    stop = threading.Event()

    def open_listeners() -> list[threading.Thread]:
        started = [threading.Thread(target=stop.wait, daemon=True) for _ in range(60)]
        for t in started:
            t.start()
        return started

    workers: list[threading.Thread] = []
    try:
        workers = open_listeners()
        ev = _evidence(skill)
        ev.history = [e.to_dict() for e in recorder.history_events(kinds=["thread_growth"])]
        found = [f for rule in skill.rules() for f in rule.judge(ev)]
    finally:
        stop.set()
        for w in workers:
            w.join(5)
        recorder.stop("test-runtime")
        recorder.clear()
    growth = [f for f in found if f.anomaly_type in ("thread_growth", "many_threads")]
    assert len(growth) == 1, [(f.anomaly_type, f.observation) for f in growth]
    (note,) = growth
    assert note.anomaly_type == "thread_growth"
    assert "alive of" in note.observation and "open_listeners" in note.observation
    assert note.history_ids and all(i.startswith("h-") for i in note.history_ids)
    # without the history, the sampled counts still tell the growth (once)
    ev.history = []
    again = [f for rule in skill.rules() for f in rule.judge(ev)]
    assert [f.anomaly_type for f in again if "thread" in f.anomaly_type] == ["thread_growth"]


def test_an_error_burst_since_loading_is_a_rate_over_the_time_watched(
    skill: RuntimeSkill,
) -> None:
    """60 errors in the seconds since the recorder started are a storm: the rate is taken over
    the time the recorder watched, not over a two-minute window it did not see (60/120 s would
    read 0.5/s, under the rule's floor)."""
    import logging

    from lensbook import recorder

    recorder.stop()  # a recording of earlier tests would have watched longer
    recorder.clear()
    recorder.start("test-runtime-errors", sample_interval=None)
    log = logging.getLogger("tests.orders")
    log.propagate, log.disabled = False, False
    try:
        log_exceptions(log, 60, ValueError)
        began = recorder.recording_since()
        assert began is not None and time.time() - began < 60
        found = _judge(skill, _evidence(skill))
    finally:
        recorder.stop("test-runtime-errors")
        recorder.clear()
    storm = found["error_storm"]
    rate = float(storm.observation.split("errors at ")[1].split("/s")[0])
    assert rate > 60 / 60, storm.observation  # over less than the minute it has watched
    assert "60 errors in the last" in storm.context
