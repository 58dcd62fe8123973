"""Fixtures shared by the client tests."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from lensbook.events import Event, subscribe, unsubscribe


@pytest.fixture
def chain_events() -> Iterator[list[Event]]:
    """The model_retry and client_fallback events published during the test."""
    seen: list[Event] = []
    token = subscribe(seen.append, kinds=("model_retry", "client_fallback"))
    yield seen
    unsubscribe(token)
