"""What a cluster run hands back: per-worker results, tagged notifications, cluster insights.

`cluster_insights` is the coordinator's rule across workers: the same finding (skill and anomaly
type) on every worker that ran points at the code all of them run ("everywhere"); on some of them
only, at something those workers hold (a bad partition, one leaking worker: "skew").
"""

from __future__ import annotations

import html
from collections import defaultdict
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal

from lensbook.coordinator.insights import Insight
from lensbook.types import CompletionResult, Notification

if TYPE_CHECKING:
    import pandas as pd

__all__ = [
    "ClusterInsight",
    "ClusterResult",
    "WorkerNotification",
    "WorkerOutcome",
    "WorkerResult",
    "cluster_insights",
]

WorkerOutcome = Literal["completed", "failed", "lost", "timeout"]


class WorkerNotification(Notification):
    """A notification from one worker, tagged with that worker's address and host."""

    worker: str
    host: str = ""

    def __str__(self) -> str:
        return f"{super().__str__()}\n  worker:      {self.worker} ({self.host})"


class ClusterInsight(Insight):
    """An insight across workers: `scope` says whether the finding is on some workers (skew)
    or on every worker that ran (everywhere), and `workers` which."""

    scope: Literal["skew", "everywhere"]
    workers: tuple[str, ...]

    def __str__(self) -> str:
        return f"{super().__str__()}\n  scope:       {self.scope} ({', '.join(self.workers)})"


@dataclass
class WorkerResult:
    """One worker's part of a cluster run. `result` is None when the worker never answered
    (`outcome` says why: failed, lost, timeout); `notifications` then holds what it had sent."""

    worker: str
    host: str
    skill: str
    outcome: WorkerOutcome
    result: CompletionResult | None = None
    notifications: list[WorkerNotification] = field(default_factory=list)
    error: str | None = None
    pid: int | None = None
    run_id: str = ""
    record: Path | None = None

    @property
    def state(self) -> str | None:
        return self.result.state if self.result is not None else None

    @property
    def iterations(self) -> int:
        return self.result.iterations if self.result is not None else 0

    @property
    def client(self) -> str:
        return self.result.client if self.result is not None else ""

    def __str__(self) -> str:
        if self.result is not None:
            head = f"{self.worker} ({self.host}): {self.result.state}, {self.iterations} it."
        else:
            head = f"{self.worker} ({self.host}): {self.outcome}: {self.error}"
        return f"{head}, {len(self.notifications)} notification(s)"


@dataclass
class ClusterResult:
    """One investigation across workers: every worker's result and the merged notifications."""

    run_id: str
    skills: tuple[str, ...]
    reason: str
    workers: list[WorkerResult]
    insights: list[ClusterInsight] = field(default_factory=list)
    directory: Path | None = None

    @property
    def notifications(self) -> list[WorkerNotification]:
        """Every worker's notifications, in the order they were detected."""
        found = [n for w in self.workers for n in w.notifications]
        return sorted(found, key=lambda n: n.detected_at)

    @property
    def partial(self) -> bool:
        """True when some worker did not complete (it died, left, failed or timed out)."""
        return any(w.outcome != "completed" for w in self.workers)

    @property
    def failed_workers(self) -> list[str]:
        return [w.worker for w in self.workers if w.outcome != "completed"]

    def worker(self, address: str) -> list[WorkerResult]:
        """The results of one worker (one per skill run there)."""
        return [w for w in self.workers if w.worker == address]

    def frame(self) -> pd.DataFrame:
        """One row per worker and notification (a worker with none has one row of NaNs)."""
        import pandas as pd

        rows: list[dict[str, Any]] = []
        for w in self.workers:
            base = {
                "worker": w.worker,
                "host": w.host,
                "skill": w.skill,
                "outcome": w.outcome,
                "state": w.state,
                "iterations": w.iterations,
                "client": w.client,
                "error": w.error,
            }
            notes: list[WorkerNotification | None] = list(w.notifications) or [None]
            for n in notes:
                rows.append(
                    {
                        **base,
                        "severity": n.severity if n else None,
                        "anomaly_type": n.anomaly_type if n else None,
                        "context": n.context if n else None,
                        "observation": n.observation if n else None,
                        "hypothesis": n.hypothesis if n else None,
                        "notification_id": n.id if n else None,
                        "detected_at": pd.Timestamp(n.detected_at) if n else pd.NaT,
                    }
                )
        return pd.DataFrame(rows)

    def __str__(self) -> str:
        done = sum(w.outcome == "completed" for w in self.workers)
        head = (
            f"cluster run {self.run_id} ({', '.join(self.skills)}): {done}/{len(self.workers)} "
            f"worker run(s) completed, {len(self.notifications)} notification(s)"
        )
        parts = [head, *(f"  {w}" for w in self.workers)]
        parts += [str(n) for n in self.notifications]
        parts += [str(i) for i in self.insights]
        return "\n".join(parts)

    def __repr__(self) -> str:
        return str(self)

    def _repr_html_(self) -> str:
        esc = html.escape
        rows = "".join(f"<li>{esc(str(w))}</li>" for w in self.workers)
        notes = "".join(n._repr_html_() for n in self.notifications)
        ins = "".join(i._repr_html_() for i in self.insights)
        return f"<div><b>{esc(str(self).splitlines()[0])}</b><ul>{rows}</ul>{ins}{notes}</div>"


def cluster_insights(workers: list[WorkerResult]) -> list[ClusterInsight]:
    """Group the warning and critical findings by skill and anomaly type across workers."""
    ran: dict[str, set[str]] = defaultdict(set)  # skill -> workers that completed it
    for w in workers:
        if w.outcome == "completed":
            ran[w.skill].add(w.worker)
    groups: dict[tuple[str, str], list[WorkerNotification]] = defaultdict(list)
    for w in workers:
        for n in w.notifications:
            if n.severity != "info":
                groups[(w.skill, n.anomaly_type)].append(n)
    insights: list[ClusterInsight] = []
    for (skill, anomaly), notes in sorted(groups.items()):
        where = tuple(sorted({n.worker for n in notes}))
        everyone = ran.get(skill, set())
        everywhere = len(everyone) > 1 and set(where) >= everyone
        if everywhere:
            summary = (
                f"{anomaly} on every worker ({len(where)}): the code all workers run, "
                "not one worker's data"
            )
            hypothesis = f"{notes[0].hypothesis or notes[0].observation} (seen on every worker)"
        else:
            summary = (
                f"{anomaly} on {len(where)} of {max(len(everyone), len(where))} worker(s) "
                f"({', '.join(where)}): skew, something only those workers hold"
            )
            hypothesis = (
                f"{notes[0].hypothesis or notes[0].observation}; only on {', '.join(where)}: "
                "look at the partitions or tasks those workers ran"
            )
        insights.append(
            ClusterInsight(
                notification_ids=tuple(n.id for n in notes),
                skills=(skill,),
                correlation_type="symptomatic",
                summary=summary,
                matched_observations=tuple(f"{n.worker}: {n.observation}" for n in notes),
                hypothesis_grounded=True,
                root_cause_hypothesis=hypothesis,
                confidence="high" if everywhere or len(everyone) > 1 else "medium",
                scope="everywhere" if everywhere else "skew",
                workers=where,
            )
        )
    return insights
