"""A registered user skill takes part in coordination and watching like a built-in one: its
declarations (keywords, family, chain, counters) reach triage, the offline coordinator and the
watcher with no table edited. Run in a child process (`_user_skill.py`): the registry lasts as
long as its process, and the other tests' processes must not watch this skill."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest


@pytest.mark.slow
def test_a_registered_skill_is_dispatched_from_evidence_linked_and_watched() -> None:
    env = {k: v for k, v in os.environ.items() if k != "ANTHROPIC_API_KEY"}
    script = Path(__file__).with_name("_user_skill.py")
    proc = subprocess.run(
        [sys.executable, str(script)], capture_output=True, text=True, timeout=300, env=env
    )
    lines = [line for line in proc.stdout.splitlines() if line.startswith("{")]
    assert lines, f"no result printed; stderr:\n{proc.stderr[-3000:]}"
    out = json.loads(lines[-1])

    # the watcher's knowledge: watched by default, its counter is a rate, its limit ignored
    assert "jobqueue" not in out["default_watched_before"]
    assert out["default_watched"] == [*out["default_watched_before"], "jobqueue"]
    assert out["kinds"] == {"jobs_done": "rate", "capacity": None, "depth": "gauge"}
    # its keywords make a question point at it
    assert out["vague"] == {"orders service degraded": True, "why the backlog?": False}
    assert out["named"] == ["jobqueue"]

    # swept by triage with the built-ins when no skill is named
    assert out["default_triage"] == ["jobqueue"]
    # dispatched from triage's evidence (the question names nothing), then its chain followed
    run = out["evidence_run"]
    assert run["stop_reason"] == "done", run["error"]
    assert "jobqueue" in run["triage"]
    assert run["operators"][0] == "jobqueue"
    assert "logs" in run["operators"]  # the neighbour on its declared chain, checked
    assert "queue_backlog" in run["anomalies"]

    # its chain links its family to the built-in "errors" family, with its mechanism
    (causal,) = [d for d in out["drafts"] if d["type"] == "causal"]
    assert causal["ids"] == ["q", "l", "x"]
    assert causal["summary"].startswith("queue backlog -> errors")
    assert "jobs that wait past their timeout fail" in causal["summary"]

    # the watcher watched it by default and its anomaly sent the coordinator to it first
    watched = out["watch_run"]
    assert "jobqueue" in out["watched_skills"]
    assert watched["kind"] == "investigation" and watched["stop_reason"] == "done"
    assert watched["operators"][0] == "jobqueue"
    assert "queue_backlog" in watched["anomaly_types"]
