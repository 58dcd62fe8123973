"""The one judgement of an RSS rise, and what a tracemalloc window says of its share."""

from __future__ import annotations

from typing import Any

import pytest

from lensbook.skills._rss import Growth, python_share, rss_growth
from lensbook.skills._trend import summary
from lensbook.skills.rules import Evidence


def _ev(*rss: float, every_s: float = 1.0) -> Evidence:
    ev = Evidence(context={"reason": ""})
    for i, mb in enumerate(rss):
        ev.snapshots.append({"rss_mb": mb})
        ev.snapshot_times.append(1000.0 + i * every_s)
    return ev


def test_a_steady_rise_counts_relative_to_the_process() -> None:
    rising = [(t, 200.0 + 2.0 * t) for t in range(0, 30, 2)]  # +2 MB/s on 200 MB
    found = rss_growth(summary(rising), _ev())
    assert found is not None and found.mb_per_s == pytest.approx(2.0)
    assert (found.start_mb, found.end_mb, found.samples) == (200.0, 256.0, 15)
    # the same +28 MB on a 2 GB process is under the share that counts
    assert rss_growth(summary([(t, 2000.0 + v - 200.0) for t, v in rising]), _ev()) is None


def test_a_saw_tooth_or_a_plateau_is_not_a_rise() -> None:
    saw = [(t, 200.0 + (60.0 if t % 2 else 0.0) + t * 0.1) for t in range(20)]
    assert rss_growth(summary(saw), _ev()) is None
    warm_up = [(t, 200.0 + min(t, 10) * 10.0) for t in range(30)]  # +100 MB, then flat
    assert rss_growth(summary(warm_up), _ev()) is None


def test_without_samples_the_runs_own_snapshots_decide() -> None:
    found = rss_growth(summary([]), _ev(100.0, 130.0, every_s=3.0))
    assert found is not None and found.mb_per_s == pytest.approx(10.0) and found.samples == 2
    assert rss_growth(summary([]), _ev(100.0)) is None


def _window(**fields: Any) -> dict[str, Any]:
    """A bursting window of 4 s (0.4 s traced) as memory_allocation_diff reports it."""
    return {"window_s": 4.0, "growth_kb": 0.0, "traced_s": 0.4, "bursts": 16, **fields}


RISE = Growth(start_mb=200.0, end_mb=240.0, span_s=4.0, mb_per_s=10.0, samples=2)


def test_bursts_that_saw_rss_rise_and_held_little_of_it_say_native() -> None:
    share = python_share(RISE, _window(rss_gained_in_bursts_kb=4096, held_in_bursts_kb=100))
    assert share is not None and share.native and share.share == pytest.approx(100 / 4096)
    assert "RSS gained 4.0 MB and the blocks Python allocated meanwhile held 0.1 MB" in (
        share.stated()
    )


def test_bursts_that_held_what_rss_gained_are_not_native() -> None:
    share = python_share(RISE, _window(rss_gained_in_bursts_kb=4096, held_in_bursts_kb=3700))
    assert share is not None and not share.native


def test_a_window_traced_throughout_weighs_its_growth_against_the_rise() -> None:
    whole = {"window_s": 4.0, "traced_s": None, "bursts": None}
    # 2 MB held in 4 s (lensbook's own allocations count as Python's) against 40 MB of rise
    share = python_share(RISE, {**whole, "growth_kb": 1024.0, "excluded_kb": {"lensbook": 1024}})
    assert share is not None and share.native and share.share == pytest.approx(0.05)
    held = python_share(RISE, {**whole, "growth_kb": 36 * 1024.0})
    assert held is not None and not held.native and held.share == pytest.approx(0.9)


def test_a_window_that_cannot_say_says_nothing() -> None:
    assert python_share(RISE, {}) is None  # no window
    assert python_share(RISE, _window(bursts=0)) is None  # no burst traced yet
    assert python_share(RISE, _window(partial=True)) is None  # sums cut short
    assert python_share(RISE, _window()) is None  # bursts that did not weigh RSS
    # RSS gained too little while traced (a Python leak of large blocks between the bursts)
    little = python_share(RISE, _window(rss_gained_in_bursts_kb=600, held_in_bursts_kb=0))
    assert little is not None and not little.conclusive and not little.native
