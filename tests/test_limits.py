"""The limits named once: a sampling interval that would spin a core is refused where given."""

from __future__ import annotations

import pytest

import lensbook
from lensbook import recorder
from lensbook.limits import MIN_INTERVAL, sampling_interval


@pytest.mark.parametrize("interval", [0, -1, float("nan"), float("inf"), 1e-9])
def test_a_sampling_interval_that_would_spin_is_refused(interval: float) -> None:
    with pytest.raises(ValueError, match=r"sample_interval must be at least 0\.1 s"):
        lensbook.start(["runtime"], sample_interval=interval)
    with pytest.raises(ValueError, match=r"interval must be at least 0\.1 s"):
        lensbook.watch(["runtime"], interval=interval)


def test_an_interval_is_a_number_of_seconds() -> None:
    assert sampling_interval(MIN_INTERVAL) == MIN_INTERVAL and sampling_interval(30) == 30.0
    with pytest.raises(ValueError, match="must be a number of seconds"):
        sampling_interval(True)


def test_a_refused_interval_starts_nothing() -> None:
    was = recorder.is_recording()
    with pytest.raises(ValueError, match="sample_interval"):
        recorder.start("limits-test", sample_interval=0.05)
    assert recorder.is_recording() == was  # no observer installed, no owner noted
