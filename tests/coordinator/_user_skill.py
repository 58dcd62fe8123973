"""A user skill made a full citizen by one registration: run as a script in a child process
(the skill registry lasts as long as its process), it prints what happened as one JSON line.

The skill watches a real `queue.Queue`; its own rule reports a backlog in its own family of
symptoms, and it declares a causal chain from that family to "errors", its keywords, its
counters and what the watcher should ignore. Nothing else in lensbook names it.
"""

from __future__ import annotations

import json
import queue
import re
import sys
import time
from collections.abc import Sequence
from typing import Any, ClassVar

import lensbook
from lensbook import Skill, events, probe
from lensbook._triage import is_vague
from lensbook.coordinator import Coordinator, Watcher
from lensbook.coordinator.offline import classify, correlate
from lensbook.coordinator.watcher import Trigger, default_skills, metric_kind
from lensbook.skills import register_skill
from lensbook.skills.rules import Chain, Evidence, Finding, Rule

JOBS: queue.Queue[int] = queue.Queue()
#: the queue's name as the process calls it (the culprit its notifications name)
QUEUE_NAME = "orders-jobs"


class Backlog(Rule):
    name = "queue_backlog"
    families: ClassVar[dict[str, tuple[str, ...]]] = {"queue backlog": ("queue_backlog",)}

    def judge(self, ev: Evidence) -> Sequence[Finding]:
        depth = int(ev.latest("depth", 0))
        if depth <= 100:
            return []
        return [
            Finding(
                "queue_backlog",
                "warning",
                context=f"queue depth {depth}",
                observation=f"queue {QUEUE_NAME} holds {depth} jobs waiting",
                hypothesis=f"no worker takes jobs from queue {QUEUE_NAME}",
            )
        ]


class JobQueueSkill(Skill):
    id = "jobqueue"
    title = "Job queue"
    description = "Depth of the process's job queue"
    system_prompt = "You watch the job queue of this process."
    keywords = ("backlog", "jobqueue")
    investigates = ("queue backlog",)
    chains = (
        Chain(
            ("queue backlog", "errors"),
            "jobs that wait past their timeout fail, and the failures are logged",
        ),
    )
    culprit_patterns = (re.compile(r"queue ([a-z]+-[a-z]+)"),)
    counters = frozenset({"jobs_done"})
    unwatched = frozenset({"capacity"})
    watched = True

    def snapshot(self) -> dict[str, Any]:
        return {"depth": JOBS.qsize(), "jobs_done": 0, "capacity": 10_000}

    def rules(self) -> Sequence[Rule]:
        return (Backlog(),)

    @probe(cheap=True)
    def depth(self) -> int:
        """Jobs waiting now. Cost: one lock, O(1)."""
        return JOBS.qsize()


def fill(depth: int) -> None:
    while JOBS.qsize() < depth:
        JOBS.put(0)
    while JOBS.qsize() > depth:
        JOBS.get_nowait()


def main() -> dict[str, Any]:
    out: dict[str, Any] = {"default_watched_before": list(default_skills())}
    register_skill(JobQueueSkill)
    out["default_watched"] = list(default_skills())
    out["kinds"] = {k: metric_kind(k, 3) for k in ("jobs_done", "capacity", "depth")}
    out["vague"] = {q: is_vague(q) for q in ("orders service degraded", "why the backlog?")}
    out["named"] = classify("why is there a backlog?", ["logs", "jobqueue"])

    # the coordinator, from evidence: the question names nothing, triage sees the backlog
    fill(500)
    swept = lensbook.triage()  # no skill named: every known one, the registered one too
    out["default_triage"] = [s.skill for s in swept.signals if s.anomaly_type == "queue_backlog"]
    started: list[dict[str, Any]] = []
    token = events.subscribe(lambda e: started.append(dict(e.data)), ["coordinator_started"])
    result = Coordinator(skills=["logs", "jobqueue"]).run("orders service degraded", deadline=90)
    out["evidence_run"] = {
        "stop_reason": result.stop_reason,
        "error": result.error,
        "operators": list(result.operator_results),
        "anomalies": [n.notification.anomaly_type for n in result.notifications],
        "triage": [s.get("skill") for s in started[0].get("triage") or []],
    }
    events.unsubscribe(token)
    # the chain it declared links its family to a built-in one
    now = "2026-12-01T12:00:00+00:00"
    drafts, _ = correlate(
        [
            {"id": "q", "skill": "jobqueue", "anomaly_type": "queue_backlog", "severity": "warning",
             "observation": f"queue {QUEUE_NAME} holds 500 jobs", "detected_at": now},
            {"id": "l", "skill": "logs", "anomaly_type": "error_storm", "severity": "warning",
             "observation": "200 errors in 60 s", "detected_at": now},
            {"id": "x", "skill": "exceptions", "anomaly_type": "exception_burst",
             "severity": "warning", "observation": f"TimeoutError raised by queue {QUEUE_NAME}",
             "detected_at": now},
        ]
    )  # fmt: skip
    out["drafts"] = [
        {"type": d.correlation_type, "ids": d.notification_ids, "summary": d.summary}
        for d in drafts
    ]

    # the watcher: watched by default, its anomaly escalates to an investigation of it
    fill(10)
    watcher = Watcher(
        interval=0.1,
        learning=1.0,
        consecutive=2,
        cooldown=0.5,
        coordinator={"skills": ["logs", "jobqueue"], "deadline": 90},
    ).start()
    try:
        deadline = time.monotonic() + 120
        while watcher.state == "learning" and time.monotonic() < deadline:
            time.sleep(0.05)
        out["watched_skills"] = [s.id for s in watcher.skills]
        fill(500)
        # other metrics may wobble out of range too: wait for the escalation of the backlog
        ours: list[Trigger] = []
        while not ours and time.monotonic() < deadline:
            time.sleep(0.1)
            ours = [t for t in watcher.triggers if t.finished_at is not None and _backlog(t)]
    finally:
        watcher.stop()
    (trigger,) = ours[:1]
    assert trigger.result is not None, trigger.error
    out["watch_run"] = {
        "kind": trigger.kind,
        "anomalies": [a.key for a in trigger.anomalies],
        "stop_reason": trigger.result.stop_reason,
        "operators": list(trigger.result.operator_results),
        "anomaly_types": [n.notification.anomaly_type for n in trigger.result.notifications],
    }
    return out


def _backlog(trigger: Trigger) -> bool:
    return "jobqueue.depth" in {a.key for a in trigger.anomalies}


if __name__ == "__main__":
    sys.stdout.write(json.dumps(main()) + "\n")
