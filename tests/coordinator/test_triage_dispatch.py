"""The coordinator on a vague complaint ("orders service degraded") over a memory leak and an
error storm: it dispatches from triage's evidence and links the operators' findings."""

from __future__ import annotations

import json
import os
import subprocess
import sys

import pytest


@pytest.mark.slow
def test_a_vague_complaint_is_dispatched_from_evidence_and_linked() -> None:
    env = {k: v for k, v in os.environ.items() if k != "ANTHROPIC_API_KEY"}
    proc = subprocess.run(
        [sys.executable, "-m", "lensbook.coordinator", "orders_degraded", "--json"],
        capture_output=True,
        text=True,
        timeout=180,
        env=env,
    )
    lines = [line for line in proc.stdout.splitlines() if line.startswith("{")]
    assert lines, f"no result printed; stderr:\n{proc.stderr[-2000:]}"
    result = json.loads(lines[-1])
    assert result["stop_reason"] == "done", result.get("error")
    assert result["client"] == "offline coordinator"
    # no keyword of the question names memory or logs: the evidence sent both operators
    assert {"memory", "logs"} <= set(result["operator_results"]), result["operator_results"]
    notes = {n["notification"]["id"]: n for n in result["notifications"]}
    by_kind = {n["notification"]["anomaly_type"]: n["notification"] for n in notes.values()}
    leak, storm = by_kind["memory_leak"], by_kind["error_storm"]
    assert "orders_degraded.py" in leak["observation"] and "in record_order" in leak["observation"]
    assert "module global lensbook.scenarios.orders_degraded._AUDIT_LOG" in leak["hypothesis"]
    assert "'orders.payments'" in storm["observation"]
    linking = [
        i
        for i in result["insights"]
        if {notes[n]["skill"] for n in i["notification_ids"]} >= {"memory", "logs"}
    ]
    assert linking, result["insights"]
    assert linking[0]["correlation_type"] in ("temporal", "causal", "symptomatic")
    assert linking[0]["confidence"] in ("high", "medium", "low")
