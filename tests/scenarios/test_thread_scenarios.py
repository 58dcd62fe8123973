"""End to end: the deadlock, stuck_task and cpu_spin scenarios, each in a child process
(``python -m lensbook.scenarios NAME --json``) investigated by the offline investigator."""

from __future__ import annotations

from pathlib import Path

import pytest

from tests.scenarios._children import notes_text, run_offline

pytestmark = pytest.mark.slow


def test_deadlock_names_both_threads_and_both_locks(tmp_path: Path) -> None:
    outcome = run_offline("deadlock", tmp_path)
    assert outcome["diagnosed"], outcome
    assert outcome["client"] == "offline investigator"
    assert outcome["state"] == "critical"
    (note,) = [n for n in outcome["notifications"] if n["anomaly_type"] == "deadlock"]
    for name in ("worker-a", "worker-b", "lock_a", "lock_b"):
        assert name in note["observation"]


def test_stuck_task_names_the_coroutine(tmp_path: Path) -> None:
    outcome = run_offline("stuck_task", tmp_path)
    assert outcome["diagnosed"], outcome
    assert outcome["state"] == "warning"
    text = notes_text(outcome)
    assert "wait_for_signal" in text and "config_loaded.wait()" in text
    assert "coroutine tick " not in text  # the healthy ticker is not blamed


def test_cpu_spin_names_the_thread_and_its_hot_function(tmp_path: Path) -> None:
    outcome = run_offline("cpu_spin", tmp_path)
    assert outcome["diagnosed"], outcome
    (note,) = [n for n in outcome["notifications"] if n["severity"] == "warning"]
    assert "'spinner'" in note["observation"]
    assert "poll_for_work" in note["observation"]


def test_ring_deadlock_on_subscripted_locks_names_threads_locks_and_line(tmp_path: Path) -> None:
    outcome = run_offline("ring_deadlock", tmp_path)
    assert outcome["diagnosed"], outcome
    assert outcome["state"] == "critical"
    (note,) = [n for n in outcome["notifications"] if n["anomaly_type"] == "deadlock"]
    for n in range(3):
        assert f"station-{n}" in note["observation"]
        assert f"locks[(i + 1) % len(locks)] (locks[{n}])" in note["observation"]
    assert "lensbook/scenarios/ring_deadlock.py:" in note["observation"]
    assert "in pack_order" in note["observation"]
