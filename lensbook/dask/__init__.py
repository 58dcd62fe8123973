"""lensbook on a Dask cluster: investigate every worker from the notebook.

    import lensbook.dask
    cluster = lensbook.dask.attach(client)           # every current and future worker
    result = cluster.run("memory", reason="unmanaged memory keeps growing")
    result.frame()                                   # one row per worker and notification
    cluster.investigate(reason="slow")               # insights: skew (some workers) or everywhere
    cluster.status(); cluster.detach()

Needs ``pip install "lensbook[dask]"`` in the notebook and in every worker's environment.

How it works. Dask is the transport; lensbook adds none. `attach` registers a worker plugin
(`Client.register_plugin`; the scheduler gives it to workers that join later) that starts
lensbook inside each worker, and a scheduler plugin that does the same in the scheduler and
reports workers leaving. A cluster run sends one `Client.run` per worker and skill. Where the
model is:

- With no model (the offline investigator), the whole loop runs in the worker: its probes and
  the skill's offline rules, on an operator named ``<skill>@<worker address>``. The worker
  forwards each event of the run through the scheduler's event log (`Worker.log_event`, topic
  ``lensbook``); the notebook publishes them again on `lensbook.events`, so the live cards, the
  feed and the record writer see the worker's run as they see a local one, and whatever a worker
  found before it died is kept.
- With a model (an API key in the notebook, `client=` or `client_registry=`), the loop runs in the
  notebook and only the tools run in the worker: `WorkerSkill` sends each snapshot and probe call
  with `Client.run(..., workers=[address])` and gets its JSON answer back. Every model call is
  made from the notebook, so an API key never goes to the cluster; redaction happens in the
  notebook's loop before any text reaches the model or a record.

Failures: each worker's part waits for its answer with a deadline (the run's `timeout`, default
120 s, plus 20 s); a worker that dies, restarts or leaves ends its part at once (the scheduler
plugin reports it) and the result is partial, naming it (`result.partial`,
`result.failed_workers`, `WorkerResult.error`). A worker without lensbook, or a cluster with no
workers, is a `ClusterError` that says which worker and what to install.

Records of a cluster run (format 1). After the run, the workers' records (ordinary run records,
readable by `lensbook.load_run` and `lensbook.replay`) are moved into one folder in the
notebook's records directory::

    <records>/<YYYYmmddTHHMMSSmmm>-cluster-<cluster run id>/
        cluster.json                        the manifest
        <stamp>-<skill>_tcp___<host>_<port>-<run id>.jsonl   one per worker and skill

``cluster.json`` is one JSON object: ``format`` ("lensbook-cluster-run"), ``version`` (1),
``run_id``, ``skills``, ``reason``, ``started_at``, ``finished_at`` (Unix seconds), ``workers``
(one entry per worker and skill: ``worker``, ``host``, ``skill``, ``outcome`` - completed,
failed, lost or timeout -, ``error``, ``run_id``, ``record``: the file name in the folder, or
null when none was written) and ``insights`` (`ClusterInsight.to_dict()` of each).
Each record's header carries ``worker`` and ``host``, and its context ``cluster_run``; its
snapshot events name the skill ``<skill>@<worker address>`` (the worker's own metric series).
`lensbook.runs(folder)` lists the folder's runs; `load_cluster_run(folder)` reads it back.
"""

from __future__ import annotations

import json
import os
from pathlib import Path

from lensbook.dask._cluster import (
    MANIFEST,
    MANIFEST_FORMAT,
    MANIFEST_VERSION,
    Cluster,
    ClusterError,
    aattach,
    attach,
    current,
)
from lensbook.dask._result import (
    ClusterInsight,
    ClusterResult,
    WorkerNotification,
    WorkerResult,
)

__all__ = [
    "Cluster",
    "ClusterError",
    "ClusterInsight",
    "ClusterResult",
    "WorkerNotification",
    "WorkerResult",
    "aattach",
    "attach",
    "current",
    "load_cluster_run",
]


def load_cluster_run(folder: str | os.PathLike[str]) -> ClusterResult:
    """Read a cluster run's folder back: each worker's result from its record."""
    from lensbook.dask._cluster import _tag
    from lensbook.records import load_run

    path = Path(folder)
    try:
        manifest = json.loads((path / MANIFEST).read_text(encoding="utf-8"))
    except (OSError, ValueError) as exc:
        raise ClusterError(f"{path}: not a readable cluster run ({exc})") from None
    if manifest.get("format") != MANIFEST_FORMAT or int(manifest.get("version", 0)) > (
        MANIFEST_VERSION
    ):
        raise ClusterError(f"{path}: not a cluster run of a format this lensbook reads")
    workers: list[WorkerResult] = []
    for entry in manifest.get("workers", []):
        result = None
        notes: list[WorkerNotification] = []
        record = path / entry["record"] if entry.get("record") else None
        if record is not None and record.exists():
            result = load_run(record).result
            notes = [_tag(n, entry["worker"], entry.get("host", "")) for n in result.notifications]
        workers.append(
            WorkerResult(
                worker=entry["worker"],
                host=entry.get("host", ""),
                skill=entry["skill"],
                outcome=entry["outcome"],
                result=result if entry["outcome"] == "completed" else None,
                notifications=notes,
                error=entry.get("error"),
                run_id=entry.get("run_id", ""),
                record=record,
            )
        )
    return ClusterResult(
        run_id=manifest["run_id"],
        skills=tuple(manifest.get("skills", ())),
        reason=manifest.get("reason", ""),
        workers=workers,
        insights=[ClusterInsight.model_validate(i) for i in manifest.get("insights", [])],
        directory=path,
    )
