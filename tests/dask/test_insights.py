"""The cross-worker rule of `cluster.investigate`: skew (some workers) against everywhere."""

from __future__ import annotations

from lensbook.dask import WorkerNotification, WorkerResult
from lensbook.dask._result import ClusterResult, cluster_insights

WORKERS = ["tcp://10.0.0.1:1", "tcp://10.0.0.2:1", "tcp://10.0.0.3:1"]


def note(worker: str, anomaly: str, severity: str = "warning") -> WorkerNotification:
    return WorkerNotification(
        operator=f"memory@{worker}",
        anomaly_type=anomaly,
        severity=severity,  # type: ignore[arg-type]
        context="c",
        observation=f"{anomaly} seen",
        hypothesis="h",
        snapshot_ids=("s",),
        trace_id="t",
        worker=worker,
        host="h",
    )


def part(worker: str, *notes: WorkerNotification, outcome: str = "completed") -> WorkerResult:
    return WorkerResult(
        worker=worker,
        host="h",
        skill="memory",
        outcome=outcome,
        notifications=list(notes),  # type: ignore[arg-type]
    )


def test_a_finding_on_every_worker_is_the_code_and_on_some_is_skew() -> None:
    parts = [
        part(WORKERS[0], note(WORKERS[0], "gc_pressure"), note(WORKERS[0], "memory_leak")),
        part(WORKERS[1], note(WORKERS[1], "gc_pressure")),
        part(WORKERS[2], note(WORKERS[2], "gc_pressure"), note(WORKERS[2], "x", "info")),
    ]
    insights = {i.summary.split()[0]: i for i in cluster_insights(parts)}
    assert set(insights) == {"gc_pressure", "memory_leak"}  # info findings are not linked
    assert insights["gc_pressure"].scope == "everywhere"
    assert insights["gc_pressure"].workers == tuple(sorted(WORKERS))
    assert len(insights["gc_pressure"].notification_ids) == 3
    assert insights["memory_leak"].scope == "skew"
    assert insights["memory_leak"].workers == (WORKERS[0],)


def test_a_worker_that_did_not_complete_does_not_make_a_finding_skew() -> None:
    parts = [
        part(WORKERS[0], note(WORKERS[0], "memory_leak")),
        part(WORKERS[1], note(WORKERS[1], "memory_leak")),
        part(WORKERS[2], outcome="lost"),
    ]
    (insight,) = cluster_insights(parts)
    assert insight.scope == "everywhere"
    result = ClusterResult("r", ("memory",), "why", parts, [insight])
    assert result.partial and result.failed_workers == [WORKERS[2]]
    frame = result.frame()
    assert len(frame) == 3 and frame["outcome"].tolist() == ["completed", "completed", "lost"]
