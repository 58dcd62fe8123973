"""Shared fixtures: every test leaves lensbook stopped (no operators, no lens loop)."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

import lensbook


@pytest.fixture(autouse=True)
def _lensbook_stopped() -> Iterator[None]:
    yield
    lensbook.stop()
