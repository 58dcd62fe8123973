"""The offline coordinator: its correlation rules on notifications, and end to end on a real
combined fault (a cache leak and an error storm) in a child process."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from datetime import datetime, timedelta, timezone
from typing import Any

import pytest

from lensbook.coordinator.offline import classify, correlate, follow_ups

T0 = datetime(2026, 11, 24, 12, 0, tzinfo=timezone.utc)


def note(
    nid: str,
    skill: str,
    anomaly: str,
    severity: str = "warning",
    seconds: float = 0.0,
    observation: str = "",
    hypothesis: str | None = None,
) -> dict[str, Any]:
    return {
        "id": nid,
        "skill": skill,
        "anomaly_type": anomaly,
        "severity": severity,
        "observation": observation or f"{anomaly} seen",
        "hypothesis": hypothesis,
        "detected_at": (T0 + timedelta(seconds=seconds)).isoformat(),
        "status": "unread",
    }


def test_the_leak_gc_loop_chain_is_causal_with_high_confidence() -> None:
    notes = [
        note(
            "m",
            "memory",
            "memory_leak",
            observation="Top allocation site app/cache.py:22 +11 MB",
            hypothesis="An unbounded cache: app.cache._CACHE only grows.",
        ),
        note("g", "gc", "gc_churn", seconds=3),
        note("a", "asyncio", "event_loop_lag", seconds=5),
        note("l", "logs", "error_storm", seconds=400),
    ]
    drafts, rest = correlate(notes)
    causal = drafts[0]
    assert causal.correlation_type == "causal" and causal.confidence == "high"
    assert causal.notification_ids == ["m", "g", "a"]
    assert causal.skills == ["memory", "gc", "asyncio"]
    assert causal.hypothesis_grounded is True
    assert causal.root_cause_hypothesis is not None
    assert "app.cache._CACHE" in causal.root_cause_hypothesis
    assert "GC pauses" in causal.root_cause_hypothesis
    # the error storm came 400 s later: not in the same window, left alone
    assert rest == ["l"] and len(drafts) == 1


def test_two_links_are_medium_and_an_info_link_lowers_confidence() -> None:
    drafts, _ = correlate([note("m", "memory", "memory_leak"), note("g", "gc", "gc_churn")])
    assert [(d.correlation_type, d.confidence) for d in drafts] == [("causal", "medium")]
    assert drafts[0].hypothesis_grounded is False  # no culprit named
    drafts, _ = correlate(
        [note("m", "memory", "memory_leak"), note("g", "gc", "gc_churn", severity="info")]
    )
    assert [(d.correlation_type, d.confidence) for d in drafts] == [("causal", "low")]


def test_one_symptom_seen_by_two_operators_is_symptomatic() -> None:
    same = "logger 'payments.gateway' repeats ERROR"
    drafts, rest = correlate(
        [
            note("l", "logs", "error_storm", observation=same),
            note("e", "exceptions", "exception_burst", observation=f"TimeoutError via {same}"),
        ]
    )
    assert [(d.correlation_type, d.confidence) for d in drafts] == [("symptomatic", "high")]
    assert "payments.gateway" in drafts[0].summary and rest == []
    drafts, _ = correlate(
        [note("m", "memory", "memory_leak"), note("r", "runtime", "memory_growth")]
    )
    assert [(d.correlation_type, d.confidence) for d in drafts] == [("symptomatic", "medium")]


def test_unrelated_findings_together_in_time_are_temporal_and_low() -> None:
    drafts, rest = correlate(
        [note("m", "memory", "memory_leak"), note("l", "logs", "error_storm", seconds=2)]
    )
    (temporal,) = drafts
    assert temporal.correlation_type == "temporal" and temporal.confidence == "low"
    assert temporal.hypothesis_grounded is False and temporal.root_cause_hypothesis is None
    assert "no known mechanism" in temporal.summary and rest == []


def test_no_insight_from_one_operator_or_far_apart_findings() -> None:
    assert correlate([note("a", "memory", "memory_leak"), note("b", "memory", "x")]) == (
        [],
        ["a", "b"],
    )
    far = [note("m", "memory", "memory_leak"), note("l", "logs", "error_storm", seconds=900)]
    assert correlate(far) == ([], ["m", "l"])
    info = [note("m", "memory", "x", "info"), note("l", "logs", "y", "info")]
    assert correlate(info)[0] == []


def test_classify_reads_the_question_and_the_watchers_anomalies() -> None:
    every = ["runtime", "memory", "gc", "asyncio", "logs", "exceptions", "threads", "process"]
    assert classify("memory keeps growing and the service logs errors", every) == [
        "memory",
        "logs",
    ]
    assert classify("the event loop is slow", every) == ["asyncio"]
    assert classify("routine check", every) == ["runtime"]
    anomalies = [{"skill": "gc", "metric": "gc_collections"}]
    assert classify("metrics left their range", every, anomalies) == ["gc"]
    assert classify("memory leak", ["logs"]) == ["logs"]


def test_follow_ups_check_the_neighbours_on_a_known_chain() -> None:
    found = [note("m", "memory", "memory_leak")]
    assert follow_ups(found, ["memory", "gc", "asyncio", "system"], ["memory"]) == ["gc", "system"]
    assert follow_ups(found, ["memory"], ["memory"]) == []
    assert follow_ups([note("m", "memory", "memory_leak", "info")], ["gc"], []) == []


@pytest.mark.slow
def test_combined_leak_and_error_storm_yields_an_insight_across_operators() -> None:
    env = {k: v for k, v in os.environ.items() if k != "ANTHROPIC_API_KEY"}
    proc = subprocess.run(
        [
            sys.executable,
            "-m",
            "lensbook.coordinator",
            "leak_and_errors",
            "--json",
            "--skills",
            "memory,logs,gc,asyncio",
        ],
        capture_output=True,
        text=True,
        timeout=120,
        env=env,
    )
    lines = [line for line in proc.stdout.splitlines() if line.startswith("{")]
    assert lines, f"no result printed; stderr:\n{proc.stderr[-2000:]}"
    result = json.loads(lines[-1])
    assert result["stop_reason"] == "done", result.get("error")
    assert result["client"] == "offline coordinator"
    notes = {n["notification"]["id"]: n for n in result["notifications"]}
    kinds = {n["skill"]: n["notification"]["anomaly_type"] for n in notes.values()}
    assert kinds["memory"] == "memory_leak" and kinds["logs"] == "error_storm"
    # an insight links notifications of at least two operators, with a type and a confidence
    linking = [
        i
        for i in result["insights"]
        if len({notes[n]["skill"] for n in i["notification_ids"]}) >= 2
    ]
    assert linking, result["insights"]
    insight = linking[0]
    assert insight["correlation_type"] in ("temporal", "causal", "symptomatic")
    assert insight["confidence"] in ("high", "medium", "low")
    # a leak and a payment gateway's errors share no known mechanism: only time links them
    assert (insight["correlation_type"], insight["confidence"]) == ("temporal", "low")
    assert any("_leaky_cache.py" in o for o in insight["matched_observations"])
    assert any("payments.gateway" in o for o in insight["matched_observations"])
    assert {notes[n]["status"] for n in insight["notification_ids"]} == {"resolved"}
    # the leak sits on a known chain: its GC neighbour was invoked to check for consequences
    assert {"memory", "logs", "gc"} <= set(result["operator_results"])
    assert all(r["stop_reason"] == "done" for r in result["operator_results"].values())
