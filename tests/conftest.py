"""Shared fixtures: every test leaves lensbook stopped (no operators, no lens loop) and the
process's history empty (metrics store, flight recorder), as a fresh process has it."""

from __future__ import annotations

import os
import threading
from collections.abc import Iterator
from typing import Any

import pytest

import lensbook
from lensbook.sampling import store


@pytest.fixture(autouse=True, scope="session")
def _records_in_a_temporary_folder(tmp_path_factory: pytest.TempPathFactory) -> Iterator[None]:
    """Run records of the tests (and their child processes) go to a temporary folder."""
    folder = tmp_path_factory.mktemp("lensbook-records")
    previous = os.environ.get("LENSBOOK_RECORDS_DIR")
    os.environ["LENSBOOK_RECORDS_DIR"] = str(folder)
    yield
    if previous is None:
        os.environ.pop("LENSBOOK_RECORDS_DIR", None)
    else:
        os.environ["LENSBOOK_RECORDS_DIR"] = previous


@pytest.fixture(autouse=True)
def _lensbook_stopped() -> Iterator[None]:
    yield
    lensbook.stop()
    # `lensbook.stop()` keeps the history readable (as a user wants it after a run), but it is
    # this test's: the next one must not judge another test's samples (a process run's
    # snapshots made the fd tests see fds "opened" before they started)
    store.clear()
    lensbook.recorder.clear()


@pytest.fixture
def previous_threadhook() -> Iterator[list[str]]:
    """A threading.excepthook that was there before lensbook (it must still be called)."""
    seen: list[str] = []
    original = threading.excepthook

    def hook(args: Any) -> None:
        seen.append(f"{args.exc_type.__name__} in {args.thread.name}")

    threading.excepthook = hook
    yield seen
    threading.excepthook = original
