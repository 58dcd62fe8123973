"""Triage: the cheap sweep ranks combined faults by severity and confidence, and points the
coordinator and vague runs at the evidence."""

from __future__ import annotations

import time
from collections.abc import Iterator
from typing import Any

import pytest

import lensbook
from lensbook import events
from lensbook._triage import is_vague
from lensbook.coordinator.offline import classify
from lensbook.sampling import store
from lensbook.scenarios import orders_degraded, ring_deadlock


@pytest.fixture
def combined_faults() -> Iterator[None]:
    """The orders service's leak and error storm, plus three threads deadlocked in a ring."""
    # the evidence must be this fault's: RSS and fd samples earlier tests left in the metrics
    # store (rising and falling as they came and went) hide a steady rise from the trend
    store.clear()
    lensbook.recorder.clear()
    cleanups = [orders_degraded.induce(), ring_deadlock.start_ring("triage")]
    try:
        yield
    finally:
        for cleanup in reversed(cleanups):
            if cleanup is not None:
                cleanup()


def test_triage_ranks_combined_faults(combined_faults: None) -> None:
    skills = ["runtime", "memory", "logs", "threads", "gc"]
    lensbook.triage(skills)  # the threads skill first sees the ring here
    deadline = time.monotonic() + 60  # (the growth shows against the sampled baseline)
    while True:
        time.sleep(0.5)
        found = lensbook.triage(skills)
        kinds = {(s.skill, s.anomaly_type) for s in found.signals}
        wanted = {
            ("runtime", "memory_growth"),
            ("logs", "error_storm"),
            ("threads", "lock_wait_stalled"),
        }
        if wanted <= kinds or time.monotonic() > deadline:
            break
    assert wanted <= kinds, found
    # ranked by severity, then confidence
    scores = [s.score for s in found.signals]
    assert scores == sorted(scores, reverse=True)
    # the most severe first (the storm is critical at >= 50 errors/s, a warning on a machine
    # too busy to log that fast: either way it outranks nothing more severe)
    ranks = {"critical": 3, "warning": 2, "info": 1}
    assert ranks[found.signals[0].severity] == max(ranks[s.severity] for s in found.signals)
    assert found.skills()[0] == found.signals[0].skill
    assert {"logs", "runtime", "threads"} <= set(found.skills())
    growth = next(s for s in found.signals if s.anomaly_type == "memory_growth")
    assert "MB/s" in growth.summary and growth.confidence >= 0.6
    assert "signal(s)" in repr(found) and "<table>" in found._repr_html_()
    frame = found.frame()
    assert list(frame["anomaly_type"]) == [s.anomaly_type for s in found.signals]
    # the coordinator dispatches from this evidence; the question's words name nothing
    assert is_vague("orders service degraded")
    chosen = classify(
        "orders service degraded",
        ["runtime", "memory", "logs", "threads", "gc", "exceptions"],
        [],
        found.brief(),
    )
    assert {"logs", "memory", "threads"} <= set(chosen)
    assert "asyncio" not in chosen  # no evidence, and the question's words name nothing


def test_a_healthy_process_triages_clean_and_keywords_only_break_ties() -> None:
    store.clear()  # the other test's leak is in the sampled history
    lensbook.recorder.clear()  # and earlier tests' error storms from the flight recorder
    found = lensbook.triage(["runtime", "gc", "process"])
    assert found.healthy, found
    assert found.skills() == []
    every = ["runtime", "memory", "logs", "threads"]
    tie = [
        {"skill": "logs", "anomaly_type": "error_storm", "severity": "warning", "confidence": 0.5},
        {
            "skill": "runtime",
            "anomaly_type": "memory_growth",
            "severity": "warning",
            "confidence": 0.5,
        },
    ]
    assert classify("memory", every, [], tie)[:2] == ["memory", "logs"]
    assert classify("the logs", every, [], tie)[:2] == ["logs", "memory"]
    # keywords alone do not add an operator the evidence does not point at
    assert "threads" not in classify("threads and memory", every, [], tie)


def test_a_vague_run_starts_from_triage_and_points_at_other_operators() -> None:
    store.clear()
    op = lensbook.Operator.start(skill="kernel", client="offline")
    try:
        seen = [
            {
                "skill": "logs",
                "anomaly_type": "error_storm",
                "severity": "critical",
                "confidence": 0.9,
                "summary": "errors logged at 96.0/s over the last 10 s",
            }
        ]
        notes = op.run({"reason": "is anything wrong?", "triage": seen}, max_iterations=8)
    finally:
        op.stop()
    pointers = [n for n in notes if n.anomaly_type == "triage_pointer"]
    assert len(pointers) == 1 and pointers[0].severity == "info"
    assert "logs/error_storm (critical)" in pointers[0].observation
    assert "run the logs operator" in (pointers[0].hypothesis or "")
    # a vague reason with no triage given is swept before the run
    started: list[dict[str, Any]] = []
    token = events.subscribe(lambda e: started.append(e.data), kinds=["run_started"])
    op = lensbook.Operator.start(skill="kernel", client="offline")
    try:
        op.run(reason="orders service degraded", max_iterations=8)
        op.run(reason="my dataframe variable", max_iterations=8)
    finally:
        op.stop()
        events.unsubscribe(token)
    assert isinstance(started[0]["context"].get("triage"), list)
    assert "triage" not in started[1]["context"]  # a reason that names a domain is not vague
