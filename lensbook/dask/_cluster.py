"""The notebook's handle on an attached cluster: runs across workers, their events and records.

A `Cluster` relays the ``lensbook`` event topic of the scheduler to the notebook's event bus
(`lensbook.events`): every event a worker forwards is published again under the worker's operator
name (``<skill>@<worker address>``), so cards, feeds, the record writer and any subscriber see a
worker's run as they see a local one. A cluster run sends one `Client.run` per worker and skill,
waits for each with a deadline (the run's `timeout` plus a grace period), and ends a worker's
part early when the scheduler reports that worker gone. After the run, the workers' records are
moved into one folder per cluster run beside a ``cluster.json`` manifest.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import threading
import time
from collections import defaultdict
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from lensbook import events, records
from lensbook._errors import LensbookError
from lensbook.clients.offline import OfflineInvestigator
from lensbook.clients.resolve import resolve_client
from lensbook.dask import _worker
from lensbook.dask._result import (
    ClusterResult,
    WorkerNotification,
    WorkerOutcome,
    WorkerResult,
    cluster_insights,
)
from lensbook.limits import SAMPLE_INTERVAL
from lensbook.records._writer import _stamp
from lensbook.types import CompletionResult, Notification, new_id

if TYPE_CHECKING:
    from distributed import Client

__all__ = [
    "DEFAULT_TIMEOUT",
    "GRACE",
    "MANIFEST",
    "Cluster",
    "ClusterError",
    "attach",
    "current",
]

#: seconds a worker's run may take when the caller gives no `timeout`
DEFAULT_TIMEOUT = 120.0
#: seconds added to a run's timeout for the round trip, before a worker is declared timed out
GRACE = 20.0
#: seconds to wait, after a worker answered, for the events it sent to arrive
_EVENT_WAIT = 10.0
MANIFEST = "cluster.json"
MANIFEST_FORMAT = "lensbook-cluster-run"
MANIFEST_VERSION = 1
INVESTIGATE_SKILLS = ("runtime", "memory", "threads")

_clusters: dict[str, Cluster] = {}
_clusters_lock = threading.Lock()


class ClusterError(LensbookError):
    """The cluster cannot be investigated: no workers, lensbook missing on a worker, detached."""


def current(client: Client | None = None) -> Cluster | None:
    """The attached `Cluster` of `client` (default: the current distributed client), if any."""
    if client is None:
        from distributed import get_client

        try:
            client = get_client()
        except ValueError:
            return None
    with _clusters_lock:
        return _clusters.get(client.id)


def attach(
    client: Client | None = None, *, sample_interval: float | None = SAMPLE_INTERVAL
) -> Cluster:
    """Install lensbook in every current and future worker and in the scheduler.

    `client` defaults to the current distributed client. Every current worker is first checked
    for lensbook; one without it is a `ClusterError` naming it and the package to install.
    Attaching twice returns the same handle.
    """
    if client is None:
        from distributed import get_client

        try:
            client = get_client()
        except ValueError:
            raise ClusterError(
                "no distributed client: create one (distributed.Client(...)) or pass it"
            ) from None
    if getattr(client, "asynchronous", False):
        raise ClusterError("attach() needs a synchronous client; use `await aattach(client)`")
    existing = current(client)
    if existing is not None and existing.attached:
        return existing
    cluster = Cluster(client, sample_interval=sample_interval)
    cluster._attach()
    return cluster


async def aattach(client: Client, *, sample_interval: float | None = SAMPLE_INTERVAL) -> Cluster:
    """The async twin of `attach`, for a client made with ``asynchronous=True``."""
    existing = current(client)
    if existing is not None and existing.attached:
        return existing
    cluster = Cluster(client, sample_interval=sample_interval)
    await cluster._aattach()
    return cluster


@dataclass
class _Part:
    """One worker's part of a cluster run, as the relay and the waiting task see it."""

    worker: str
    skill: str
    run_id: str = ""
    host: str = ""
    received: int = 0
    completed: bool = False
    notes: list[dict[str, Any]] = field(default_factory=list)


@dataclass
class _Request:
    skills: tuple[str, ...]
    context: dict[str, Any]
    options: dict[str, Any]
    workers: list[str] | None


class Cluster:
    """lensbook attached to a Dask cluster; made by `lensbook.dask.attach(client)`."""

    def __init__(self, client: Client, *, sample_interval: float | None = SAMPLE_INTERVAL) -> None:
        # distributed's Client is only partly typed: its methods are used as Any here
        self.client: Any = client
        self.sample_interval = sample_interval
        self.attached = False
        self._lock = threading.Lock()
        # cluster run id -> (worker, skill) -> part
        self._parts: dict[str, dict[tuple[str, str], _Part]] = {}
        self._gone: dict[str, set[str]] = defaultdict(set)  # cluster run -> workers that left
        # set and replaced whenever a relayed message changes a run's state (client loop only)
        self._pulse = asyncio.Event()
        self._hello: asyncio.Event | None = None
        self._hello_token = ""

    # -- attach and detach -----------------------------------------------------------------

    def _attach(self) -> None:
        self.client.sync(self._aattach)

    async def _aattach(self) -> None:
        client = self.client
        addresses = list(await _maybe(client.nthreads()))
        answers = await _maybe(
            client.run(_worker.has_lensbook(), workers=addresses or None, on_error="return")
        )
        missing = sorted(a for a, ok in answers.items() if ok is not True)
        if missing:
            raise ClusterError(
                f"lensbook is not installed on worker(s) {', '.join(missing)}: install it in "
                'their environment (pip install "lensbook[dask]") and attach again'
            )
        records.writer.listen()
        await self._subscribe()
        await _maybe(
            client.register_plugin(
                _worker.LensbookSchedulerPlugin(self.sample_interval), name=_worker.PLUGIN_NAME
            )
        )
        await _maybe(
            client.register_plugin(
                _worker.LensbookWorkerPlugin(self.sample_interval), name=_worker.PLUGIN_NAME
            )
        )
        self.attached = True
        with _clusters_lock:
            _clusters[client.id] = self

    async def _subscribe(self) -> None:
        """Listen to the topic, then wait until a message of ours comes back through it: from
        then on no event a worker sends can be missed."""
        self._hello = asyncio.Event()
        self._hello_token = new_id()
        self.client.subscribe_topic(_worker.TOPIC, self._on_topic)
        # the subscription travels on the client's stream, log_event by RPC: they may cross, so
        # say hello again until one comes back
        end = time.monotonic() + 30
        while not self._hello.is_set():
            if time.monotonic() > end:
                raise ClusterError("the scheduler did not relay lensbook's events within 30 s")
            await _maybe(
                self.client.log_event(_worker.TOPIC, {"kind": "hello", "token": self._hello_token})
            )
            with contextlib.suppress(asyncio.TimeoutError):
                await asyncio.wait_for(self._hello.wait(), 0.5)

    def detach(self) -> None:
        """Stop lensbook in the workers and the scheduler and remove the plugins."""
        if self.client.asynchronous:
            raise ClusterError("this client is asynchronous: use `await cluster.adetach()`")
        self.client.sync(self.adetach)

    async def adetach(self) -> None:
        """The async twin of `detach`."""
        if not self.attached:
            return
        client = self.client
        self.attached = False
        with _clusters_lock:
            _clusters.pop(client.id, None)
        with contextlib.suppress(ValueError):
            client.unsubscribe_topic(_worker.TOPIC)
        await _maybe(client.unregister_worker_plugin(_worker.PLUGIN_NAME))
        await _maybe(client.unregister_scheduler_plugin(_worker.PLUGIN_NAME))

    # -- the relay -------------------------------------------------------------------------

    def _on_topic(self, event: tuple[float, Any]) -> None:
        """Called on the client's loop for every message of the ``lensbook`` topic."""
        _, msg = event
        if not isinstance(msg, dict):
            return
        kind = msg.get("kind")
        if kind == "hello":
            if msg.get("token") == self._hello_token and self._hello is not None:
                self._hello.set()
            return
        if kind == "worker_removed":
            with self._lock:
                for run in self._parts:
                    self._gone[run].add(str(msg.get("worker")))
            self._notify()
            return
        run_key = str(msg.get("cluster_run"))
        with self._lock:
            parts = self._parts.get(run_key)
            part = None
            if parts is not None:
                skill = str(msg.get("operator", "")).split("@", 1)[0]
                part = parts.get((str(msg.get("worker")), skill))
        if part is None:
            return  # a run this notebook is no longer waiting for
        data = dict(msg.get("data") or {})
        if kind == "run_started":
            part.run_id, part.host = str(msg.get("run_id")), str(msg.get("host") or "")
            data.update(worker=part.worker, host=part.host)
        elif kind == "notification":
            part.notes.append(data.get("notification") or {})
        elif kind == "run_completed":
            part.completed = True
        elif kind == "snapshot":
            # the worker's numbers are its own series in the notebook's metrics, not the
            # notebook process's
            data["skill"] = str(msg.get("operator"))
        part.received += 1
        events.publish(str(kind), str(msg.get("operator")), str(msg.get("run_id")), **data)
        self._notify()

    def _notify(self) -> None:
        """Wake every wait on this cluster's runs (they re-check their state)."""
        pulse, self._pulse = self._pulse, asyncio.Event()
        pulse.set()

    # -- runs ------------------------------------------------------------------------------

    def run(
        self,
        skill: str,
        context: Mapping[str, Any] | None = None,
        *,
        workers: Sequence[str] | None = None,
        **options: Any,
    ) -> ClusterResult:
        """Run `skill` on every worker (or on `workers`) at once; one merged result.

        Options are `lensbook.run`'s: `reason`, `context`, `client`, `client_registry`,
        `max_iterations`, `timeout`, ... A worker that dies, leaves or passes its deadline
        gives a partial result naming it (`result.partial`, `result.failed_workers`).
        """
        request = _request((skill,), context, workers, options)
        return self._sync(request, insights=False)

    async def arun(
        self,
        skill: str,
        context: Mapping[str, Any] | None = None,
        *,
        workers: Sequence[str] | None = None,
        **options: Any,
    ) -> ClusterResult:
        """The async twin of `run`, awaitable from any event loop."""
        request = _request((skill,), context, workers, options)
        return await self._async(request, insights=False)

    def investigate(
        self,
        context: Mapping[str, Any] | None = None,
        *,
        skills: Iterable[str] = INVESTIGATE_SKILLS,
        workers: Sequence[str] | None = None,
        **options: Any,
    ) -> ClusterResult:
        """Run several skills on every worker and link what they find across workers.

        Each insight says whether a finding is on some workers only (``scope="skew"``: a bad
        partition, one leaking worker) or on every worker that ran (``"everywhere"``: the code).
        """
        request = _request(tuple(skills), context, workers, options)
        return self._sync(request, insights=True)

    async def ainvestigate(
        self,
        context: Mapping[str, Any] | None = None,
        *,
        skills: Iterable[str] = INVESTIGATE_SKILLS,
        workers: Sequence[str] | None = None,
        **options: Any,
    ) -> ClusterResult:
        """The async twin of `investigate`."""
        request = _request(tuple(skills), context, workers, options)
        return await self._async(request, insights=True)

    def _sync(self, request: _Request, *, insights: bool) -> ClusterResult:
        self._check_attached()
        if self.client.asynchronous:
            raise ClusterError("this client is asynchronous: await the a-prefixed method")
        result: ClusterResult = self.client.sync(self._execute, request, insights)
        return result

    async def _async(self, request: _Request, *, insights: bool) -> ClusterResult:
        self._check_attached()
        if self.client.asynchronous:
            return await self._execute(request, insights)
        # a synchronous client's loop lives in its own thread; block a worker thread instead
        return await asyncio.to_thread(self.client.sync, self._execute, request, insights)

    def _check_attached(self) -> None:
        if not self.attached:
            raise ClusterError("lensbook is detached from this cluster: attach(client) again")

    async def _execute(self, request: _Request, insights: bool) -> ClusterResult:
        client = self.client
        known = list(await _maybe(client.nthreads()))
        if not known:
            raise ClusterError("the cluster has no workers: scale it up, then run again")
        targets = list(request.workers) if request.workers is not None else known
        unknown = sorted(set(targets) - set(known))
        if unknown:
            raise ClusterError(
                f"no worker {', '.join(unknown)} in the cluster; workers: {', '.join(known)}"
            )
        if not targets:
            raise ClusterError("workers=[] names no worker")
        options = dict(request.options)
        chain = resolve_client(options.pop("client", None), options.pop("client_registry", None))
        model_here = not all(isinstance(c, OfflineInvestigator) for c in chain.clients)
        cluster_run = new_id()
        started = time.time()
        parts = {(w, s): _Part(w, s) for w in targets for s in request.skills}
        with self._lock:
            self._parts[cluster_run] = parts
        try:
            jobs = [
                self._notebook_side(part, request, options, chain, cluster_run)
                if model_here
                else self._on_worker(part, request, options, cluster_run)
                for part in parts.values()
            ]
            results = list(await asyncio.gather(*jobs))
        finally:
            with self._lock:
                self._parts.pop(cluster_run, None)
                self._gone.pop(cluster_run, None)
        result = ClusterResult(
            run_id=cluster_run,
            skills=request.skills,
            reason=str(request.context.get("reason", "")),
            workers=results,
        )
        if insights:
            result.insights = cluster_insights(results)
        result.directory = _group_records(result, started)
        return result

    async def _on_worker(
        self, part: _Part, request: _Request, options: dict[str, Any], cluster_run: str
    ) -> WorkerResult:
        """The worker runs the loop with the offline rules and forwards its events."""
        deadline = float(options.get("timeout") or DEFAULT_TIMEOUT) + GRACE
        if "timeout" not in options:
            options = {**options, "timeout": DEFAULT_TIMEOUT}
        call = asyncio.ensure_future(
            _maybe(
                self.client.run(
                    _worker.worker_run,
                    part.skill,
                    request.context,
                    options,
                    cluster_run,
                    workers=[part.worker],
                    on_error="return",
                )
            )
        )
        outcome, answer = await self._await_worker(call, part, cluster_run, deadline)
        if outcome != "completed":
            return self._lost(part, outcome, str(answer))
        value = answer.get(part.worker) if isinstance(answer, dict) else None
        if not isinstance(value, dict):
            return self._lost(part, "failed", _explain(part.worker, value))
        await self._wait_for_events(part, int(value.get("events", 0)))
        result = CompletionResult.model_validate(value["result"])
        host = str(value.get("host") or part.host)
        return WorkerResult(
            worker=part.worker,
            host=host,
            skill=part.skill,
            outcome="completed",
            result=result,
            notifications=[_tag(n, part.worker, host) for n in result.notifications],
            pid=value.get("pid"),
            run_id=result.run_id,
        )

    async def _await_worker(
        self, call: asyncio.Future[Any], part: _Part, cluster_run: str, deadline: float
    ) -> tuple[WorkerOutcome, Any]:
        """Wait for a worker's answer, its departure, or the deadline, whichever comes first."""
        end = time.monotonic() + deadline
        while not call.done():
            if part.worker in self._gone.get(cluster_run, ()):
                call.cancel()
                return "lost", f"worker {part.worker} left the cluster during the run"
            left = end - time.monotonic()
            if left <= 0:
                call.cancel()
                return "timeout", f"worker {part.worker} did not answer within {deadline:.0f} s"
            pulse = asyncio.ensure_future(self._pulse.wait())
            await asyncio.wait({call, pulse}, timeout=left, return_when=asyncio.FIRST_COMPLETED)
            pulse.cancel()
        exc = call.exception()
        if exc is not None:
            return "lost", _explain(part.worker, exc)
        return "completed", call.result()

    async def _wait_for_events(self, part: _Part, expected: int) -> None:
        end = time.monotonic() + _EVENT_WAIT
        while part.received < expected and time.monotonic() < end:
            with contextlib.suppress(asyncio.TimeoutError):
                await asyncio.wait_for(self._pulse.wait(), timeout=end - time.monotonic())

    def _lost(self, part: _Part, outcome: WorkerOutcome, error: str) -> WorkerResult:
        """A worker that never answered: keep what it sent and close its run's record."""
        if part.run_id and not part.completed:
            # the card and the record end here, like any other run that ended in an error
            events.publish(
                "run_completed",
                f"{part.skill}@{part.worker}",
                part.run_id,
                state="healthy",
                stop_reason="error",
                iterations=0,
                notifications=len(part.notes),
                error=error,
                client=OfflineInvestigator().name,
                summary=None,
            )
        notes = [
            _tag(Notification.model_validate(n), part.worker, part.host) for n in part.notes if n
        ]
        return WorkerResult(
            worker=part.worker,
            host=part.host,
            skill=part.skill,
            outcome=outcome,
            notifications=notes,
            error=error,
            run_id=part.run_id,
        )

    async def _notebook_side(
        self,
        part: _Part,
        request: _Request,
        options: dict[str, Any],
        chain: Any,
        cluster_run: str,
    ) -> WorkerResult:
        """The model is here: the operator runs in the notebook, its probes in the worker."""
        from lensbook.dask._remote import WorkerSkill
        from lensbook.operator.actor import Operator

        name = f"{part.skill}@{part.worker}"

        def start() -> Operator:
            skill = WorkerSkill(self.client, part.skill, part.worker)
            return Operator.start(skill, name=name, client=chain)

        op = await asyncio.to_thread(start)
        try:
            result = await op.arun_result(
                {**request.context, "cluster_run": cluster_run}, **options
            )
        except LensbookError as exc:
            part.host = part.worker
            return self._lost(part, "failed", f"{type(exc).__name__}: {exc}")
        finally:
            await asyncio.to_thread(op.stop)
        part.run_id = result.run_id
        return WorkerResult(
            worker=part.worker,
            host=part.worker,
            skill=part.skill,
            outcome="completed",
            result=result,
            notifications=[_tag(n, part.worker, part.worker) for n in result.notifications],
            run_id=result.run_id,
        )

    # -- status ----------------------------------------------------------------------------

    def status(self) -> dict[str, dict[str, Any]]:
        """Per worker: attached, host, pid and its cluster operators' statuses (or the error)."""
        if self.client.asynchronous:
            raise ClusterError("this client is asynchronous: use `await cluster.astatus()`")
        value: dict[str, dict[str, Any]] = self.client.sync(self.astatus)
        return value

    async def astatus(self) -> dict[str, dict[str, Any]]:
        """The async twin of `status`."""
        answers = await _maybe(self.client.run(_worker.worker_status, on_error="return"))
        return {
            addr: value if isinstance(value, dict) else {"error": _explain(addr, value)}
            for addr, value in answers.items()
        }

    def __repr__(self) -> str:
        state = "attached" if self.attached else "detached"
        return f"<lensbook.dask.Cluster {state} to {self.client.scheduler_info().get('address')}>"


async def _maybe(value: Any) -> Any:
    """Await what a client method returned inside the client's loop (an awaitable there)."""
    if asyncio.isfuture(value) or asyncio.iscoroutine(value) or hasattr(value, "__await__"):
        return await value
    return value


def _request(
    skills: tuple[str, ...],
    context: Mapping[str, Any] | None,
    workers: Sequence[str] | None,
    options: dict[str, Any],
) -> _Request:
    from lensbook.operator.actor import _merge_context
    from lensbook.skills import resolve_skill

    for skill in skills:
        resolve_skill(skill)  # an unknown skill fails here, before any worker is asked
    options = dict(options)
    # the same options, checked the same way, as a local run: a bad one fails here
    merged = _merge_context(context, options)
    return _Request(skills, merged, options, list(workers) if workers is not None else None)


def _tag(note: Notification, worker: str, host: str) -> WorkerNotification:
    return WorkerNotification(**note.model_dump(), worker=worker, host=host)


def _explain(worker: str, value: Any) -> str:
    """A worker's error as a sentence; a missing lensbook says what to install."""
    if isinstance(value, ModuleNotFoundError) and "lensbook" in str(value):
        return (
            f"lensbook is not installed on worker {worker}: install it there "
            '(pip install "lensbook[dask]")'
        )
    if isinstance(value, BaseException):
        return f"worker {worker}: {type(value).__name__}: {value}"
    return f"worker {worker} gave no answer ({value!r})"


def _group_records(result: ClusterResult, started: float) -> Path | None:
    """Move the workers' records into ``<records>/<stamp>-cluster-<id>/`` with a manifest."""
    writer = records.writer
    if not writer.enabled:
        return None
    folder = writer.directory / f"{_stamp(started)}-cluster-{result.run_id}"
    folder.mkdir(mode=0o700, parents=True, exist_ok=True)
    os.chmod(folder, 0o700)  # private like every record folder (mkdir's mode is cut by umask)
    entries = []
    for w in result.workers:
        run_id = w.run_id
        path = writer.path_of(run_id) if run_id else None
        if path is not None and path.exists():
            target = folder / path.name
            with contextlib.suppress(OSError):
                os.replace(path, target)
                w.record = target
        entries.append(
            {
                "worker": w.worker,
                "host": w.host,
                "skill": w.skill,
                "outcome": w.outcome,
                "error": w.error,
                "run_id": run_id,
                "record": w.record.name if w.record is not None else None,
            }
        )
    manifest = {
        "format": MANIFEST_FORMAT,
        "version": MANIFEST_VERSION,
        "run_id": result.run_id,
        "skills": list(result.skills),
        "reason": result.reason,
        "started_at": started,
        "finished_at": time.time(),
        "workers": entries,
        "insights": [i.to_dict() for i in result.insights],
    }
    fd = os.open(folder / MANIFEST, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "w", encoding="utf-8") as handle:
        handle.write(json.dumps(manifest, indent=1))
    return folder
