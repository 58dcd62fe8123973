"""End to end: the deadlock, stuck_task and cpu_spin scenarios, each in a child process
(``python -m lensbook.scenarios NAME --json``) investigated by the offline investigator."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from typing import Any

import pytest

pytestmark = pytest.mark.slow


def run_scenario(name: str) -> dict[str, Any]:
    env = {k: v for k, v in os.environ.items() if k != "ANTHROPIC_API_KEY"}  # offline
    proc = subprocess.run(
        [sys.executable, "-m", "lensbook.scenarios", name, "--json"],
        capture_output=True,
        text=True,
        timeout=120,
        env=env,
    )
    lines = [line for line in proc.stdout.splitlines() if line.startswith("{")]
    assert lines, f"no outcome printed; stderr:\n{proc.stderr[-3000:]}"
    outcome: dict[str, Any] = json.loads(lines[-1])
    assert proc.returncode == (0 if outcome["diagnosed"] else 1)
    return outcome


def notes_text(outcome: dict[str, Any]) -> str:
    return "\n".join(
        f"{n['anomaly_type']} {n['context']} {n['observation']} {n.get('hypothesis') or ''}"
        for n in outcome["notifications"]
    )


def test_deadlock_names_both_threads_and_both_locks() -> None:
    outcome = run_scenario("deadlock")
    assert outcome["diagnosed"], outcome
    assert outcome["client"] == "offline investigator"
    assert outcome["state"] == "critical"
    (note,) = [n for n in outcome["notifications"] if n["anomaly_type"] == "deadlock"]
    for name in ("worker-a", "worker-b", "lock_a", "lock_b"):
        assert name in note["observation"]


def test_stuck_task_names_the_coroutine() -> None:
    outcome = run_scenario("stuck_task")
    assert outcome["diagnosed"], outcome
    assert outcome["state"] == "warning"
    text = notes_text(outcome)
    assert "wait_for_signal" in text and "config_loaded.wait()" in text
    assert "coroutine tick " not in text  # the healthy ticker is not blamed


def test_cpu_spin_names_the_thread_and_its_hot_function() -> None:
    outcome = run_scenario("cpu_spin")
    assert outcome["diagnosed"], outcome
    (note,) = [n for n in outcome["notifications"] if n["severity"] == "warning"]
    assert "'spinner'" in note["observation"]
    assert "poll_for_work" in note["observation"]


def test_ring_deadlock_on_subscripted_locks_names_threads_locks_and_line() -> None:
    outcome = run_scenario("ring_deadlock")
    assert outcome["diagnosed"], outcome
    assert outcome["state"] == "critical"
    (note,) = [n for n in outcome["notifications"] if n["anomaly_type"] == "deadlock"]
    for n in range(3):
        assert f"station-{n}" in note["observation"]
        assert f"locks[(i + 1) % len(locks)] (locks[{n}])" in note["observation"]
    assert "lensbook/scenarios/ring_deadlock.py:" in note["observation"]
    assert "in pack_order" in note["observation"]
