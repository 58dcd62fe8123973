"""What runs inside the cluster's processes: the plugins and the functions `Client.run` calls.

`LensbookWorkerPlugin.setup` starts lensbook in a worker (its static operators and metrics
sampler, records under the worker's local directory); `teardown` stops it. The scheduler plugin
does the same in the scheduler and tells the notebook, on the ``lensbook`` event topic, when a
worker leaves, so a run waiting on it ends at once instead of at its deadline.

`worker_run` is what a cluster run sends to each worker with `Client.run`: it runs one skill on
that worker's cluster operator (named ``<skill>@<worker address>``) with the offline
investigator, and forwards every event of that run to the notebook through the scheduler's event
log (`Worker.log_event`), so the notebook shows and records it live and keeps what was found even
if the worker dies mid-run. It returns the result and how many events it sent, so the notebook
knows when it has all of them. `call_probe` and `take_snapshot` serve runs whose model is on
the notebook side (see `lensbook.dask._remote`).
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import socket
import threading
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING, Any

from distributed.diagnostics.plugin import SchedulerPlugin, WorkerPlugin

from lensbook import events
from lensbook._errors import contain_call, containing
from lensbook.limits import SAMPLE_INTERVAL

if TYPE_CHECKING:
    from distributed import Scheduler, Worker

    from lensbook.operator.actor import Operator

__all__ = [
    "PLUGIN_NAME",
    "TOPIC",
    "LensbookSchedulerPlugin",
    "LensbookWorkerPlugin",
    "call_probe",
    "take_snapshot",
    "worker_run",
    "worker_status",
]

#: the name both plugins are registered under, and the event topic the notebook listens to
PLUGIN_NAME = "lensbook"
TOPIC = "lensbook"

_lock = threading.Lock()
#: cluster operators of this process, by skill id (one per skill: runs of a skill queue FIFO)
_operators: dict[str, Operator] = {}
_attached = {"worker": False, "scheduler": False}


def _start_lensbook(records_dir: str | None, sample_interval: float | None) -> None:
    from lensbook import records
    from lensbook.operator import registry

    if records_dir is not None:
        records.configure(directory=records_dir)
    registry.start(sample_interval=sample_interval)


def _stop_lensbook() -> None:
    from lensbook.operator import registry

    with _lock:
        ops = list(_operators.values())
        _operators.clear()
    for op in ops:
        with contextlib.suppress(Exception):  # detaching must not fail half way
            op.stop()
    registry.stop()


class LensbookWorkerPlugin(WorkerPlugin):
    """Starts lensbook in every worker, current and future (the scheduler gives it to new ones)."""

    idempotent = False
    name = PLUGIN_NAME

    def __init__(self, sample_interval: float | None = SAMPLE_INTERVAL) -> None:
        self.sample_interval = sample_interval

    def setup(self, worker: Worker) -> None:
        # records of worker runs stay beside the worker's other files; the notebook keeps its own
        # copy from the forwarded events
        records_dir = str(Path(worker.local_directory) / "lensbook-runs")
        _start_lensbook(records_dir, self.sample_interval)
        _attached["worker"] = True

    def teardown(self, worker: Worker) -> None:
        _attached["worker"] = False
        _stop_lensbook()


class LensbookSchedulerPlugin(SchedulerPlugin):
    """Starts lensbook in the scheduler and reports workers leaving on the ``lensbook`` topic."""

    name = PLUGIN_NAME

    def __init__(self, sample_interval: float | None = SAMPLE_INTERVAL) -> None:
        self.sample_interval = sample_interval
        self.scheduler: Scheduler | None = None
        self.started_here = False

    async def start(self, scheduler: Scheduler) -> None:
        self.scheduler = scheduler
        # a LocalCluster's scheduler may live in the notebook's own process, where lensbook is
        # already the user's: start it only where it is not running yet
        from lensbook.operator.registry import operators

        if not operators():
            await asyncio.to_thread(_start_lensbook, None, self.sample_interval)
            self.started_here = True
        _attached["scheduler"] = True

    async def close(self) -> None:
        _attached["scheduler"] = False
        if self.started_here:
            self.started_here = False
            await asyncio.to_thread(_stop_lensbook)

    def remove_worker(self, scheduler: Scheduler, worker: str, **kwargs: Any) -> None:
        scheduler.log_event(TOPIC, {"kind": "worker_removed", "worker": worker})

    def add_worker(self, scheduler: Scheduler, worker: str) -> None:
        scheduler.log_event(TOPIC, {"kind": "worker_added", "worker": worker})


def cluster_operator(skill: str, address: str) -> Operator:
    """This worker's operator for `skill`, named ``<skill>@<address>``, with the offline rules."""
    from lensbook.clients.offline import OfflineInvestigator
    from lensbook.operator.actor import Operator

    with _lock:
        op = _operators.get(skill)
        if op is None or not op.started:
            # the model never runs here: a worker has no key and needs none
            op = Operator.start(skill, name=f"{skill}@{address}", client=OfflineInvestigator())
            _operators[skill] = op
        return op


def _jsonable(data: dict[str, Any]) -> dict[str, Any]:
    """Event data made plain JSON (what the event log's msgpack can carry)."""
    loaded: dict[str, Any] = json.loads(json.dumps(data, default=str))
    return loaded


async def worker_run(
    skill: str,
    context: dict[str, Any],
    options: dict[str, Any],
    cluster_run: str,
    dask_worker: Worker,
) -> dict[str, Any]:
    """Run `skill` on this worker's cluster operator, forwarding its events; `Client.run` target."""
    if not _attached["worker"]:
        raise RuntimeError(
            f"lensbook is not attached on worker {dask_worker.address}: "
            "call lensbook.dask.attach(client) first"
        )
    op = cluster_operator(skill, dask_worker.address)
    loop = asyncio.get_running_loop()
    host = socket.gethostname()
    sent = 0
    run_ids: set[str] = set()

    def forward(event: events.Event) -> None:
        nonlocal sent
        if event.operator != op.name:
            return
        if (
            event.kind == "run_started"
            and event.data.get("context", {}).get("cluster_run") == cluster_run
        ):
            run_ids.add(event.run_id)
        if event.run_id not in run_ids:
            return  # another run of this operator (queued before ours)
        message = {
            "kind": event.kind,
            "cluster_run": cluster_run,
            "worker": dask_worker.address,
            "host": host,
            "operator": event.operator,
            "run_id": event.run_id,
            "at": event.at,
            "data": _jsonable(event.data),
        }
        sent += 1
        # published on the lens loop's thread; the event log belongs to the worker's loop
        loop.call_soon_threadsafe(dask_worker.log_event, TOPIC, message)

    token = events.subscribe(forward)
    try:
        result = await op.arun_result({**context, "cluster_run": cluster_run}, **options)
    finally:
        events.unsubscribe(token)
    # let the forwards queued on this loop go out before the reply
    await asyncio.sleep(0)
    return {"result": result.to_dict(), "events": sent, "host": host, "pid": os.getpid()}


def take_snapshot(skill: str) -> dict[str, Any]:
    """The skill's snapshot in this process, as JSON data; `Client.run` target."""
    from lensbook.skills import resolve_skill

    return _jsonable({"data": resolve_skill(skill).snapshot()})["data"]  # type: ignore[no-any-return]


async def call_probe(skill: str, name: str, arguments: dict[str, Any]) -> Any:
    """Run one probe of `skill` here, under its budget, output made JSON; `Client.run` target."""
    from lensbook.skills import resolve_skill
    from lensbook.skills.base import jsonable

    tools = {t.name: t for t in resolve_skill(skill).probes()}
    tool = tools[name]
    kwargs = tool.validate(arguments)
    # a probe's SystemExit must not end the worker's event loop: a sync probe's is contained
    # in its thread (`contained` holds there); an async probe's, on a loop in the main thread
    # (a nanny's worker), could also be a Ctrl-C and goes on
    if tool.is_async:
        work = containing(tool.fn(**kwargs))
    else:
        work = asyncio.to_thread(contain_call, tool.fn, **kwargs)
    value = await asyncio.wait_for(work, tool.budget)
    return jsonable(value)


def worker_status(dask_worker: Worker) -> dict[str, Any]:
    """This worker's lensbook status: attached, pid, host, and each cluster operator's status."""
    with _lock:
        ops = dict(_operators)
    return {
        "attached": _attached["worker"],
        "host": socket.gethostname(),
        "pid": os.getpid(),
        "operators": {sid: op.status().to_dict() for sid, op in ops.items()},
    }


def has_lensbook() -> Callable[[], bool]:
    """A check that is pickled by value, so it runs on a worker that lacks lensbook."""

    def check() -> bool:
        import importlib.util

        return importlib.util.find_spec("lensbook") is not None

    return check
