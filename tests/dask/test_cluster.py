"""lensbook.dask on a real LocalCluster of two worker processes (one cluster for the module).

Faults are induced by real tasks pinned to one worker (tests/dask/dask_workloads.py); the
findings come back through the scheduler's event log and `Client.run`, as in production.
"""

from __future__ import annotations

import concurrent.futures
import json
import os
import signal
import stat
import subprocess
import sys
import sysconfig
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

distributed = pytest.importorskip("distributed")

import lensbook  # noqa: E402
import lensbook.dask as lensdask  # noqa: E402
from lensbook import events  # noqa: E402

HERE = Path(__file__).parent
# the workers import the workload module by name (spawned workers inherit sys.path)
if str(HERE) not in sys.path:
    sys.path.insert(0, str(HERE))
import dask_workloads  # noqa: E402

pytestmark = pytest.mark.slow


def until(check: Callable[[], Any], deadline: float = 60.0, what: str = "condition") -> Any:
    """Poll `check` until it returns something truthy, failing after a generous deadline."""
    end = time.monotonic() + deadline
    while True:
        value = check()
        if value:
            return value
        if time.monotonic() > end:
            raise AssertionError(f"timed out waiting for {what}")
        time.sleep(0.05)


@pytest.fixture(scope="module")
def local() -> Iterator[Any]:
    cluster = distributed.LocalCluster(
        n_workers=2, threads_per_worker=2, processes=True, dashboard_address=None
    )
    try:
        yield cluster
    finally:
        cluster.close()


@pytest.fixture(scope="module")
def client(local: Any) -> Iterator[Any]:
    with distributed.Client(local) as c:
        yield c


@pytest.fixture(scope="module")
def cluster(client: Any) -> Iterator[lensdask.Cluster]:
    handle = lensdask.attach(client)
    yield handle
    lensdask.current(client) and handle.detach()


def workers(client: Any) -> list[str]:
    return sorted(client.nthreads())


def test_leak_on_one_worker_is_named_there_and_called_skew(
    client: Any, cluster: lensdask.Cluster, tmp_path: Path
) -> None:
    leaky, healthy = workers(client)
    task = client.submit(dask_workloads.hoard, pure=False, workers=[leaky])
    try:
        until(
            lambda: client.run(dask_workloads.hoarded, workers=[leaky])[leaky] > 4000,
            what="the leak to start",
        )
        result = cluster.investigate(
            reason="unmanaged memory keeps growing", skills=["memory"], timeout=90
        )
    finally:
        client.run(dask_workloads.stop_hoard, workers=[leaky])
        task.result(timeout=60)

    assert not result.partial, str(result)
    (bad,) = result.worker(leaky)
    (good,) = result.worker(healthy)
    leaks = [n for n in bad.notifications if n.anomaly_type == "memory_leak"]
    assert leaks, str(bad.result)
    note = leaks[0]
    assert note.severity in ("warning", "critical")
    assert note.worker == leaky and note.host
    text = f"{note.observation} {note.hypothesis}"
    assert "dask_workloads.py:" in text and "_HOARD" in text, text
    assert good.state == "healthy", str(good.result)
    assert not [n for n in good.notifications if n.severity != "info"]
    (insight,) = [i for i in result.insights if "memory_leak" in i.summary]
    assert insight.scope == "skew" and insight.workers == (leaky,)
    assert note.id in insight.notification_ids

    frame = result.frame()
    assert set(frame["worker"]) == {leaky, healthy}
    assert "memory_leak" in set(frame.loc[frame["worker"] == leaky, "anomaly_type"])
    assert frame.loc[frame["worker"] == healthy, "outcome"].tolist()[0] == "completed"

    # records: one folder for the cluster run, one ordinary record per worker, a manifest
    assert result.directory is not None
    manifest = json.loads((result.directory / "cluster.json").read_text())
    assert manifest["format"] == "lensbook-cluster-run" and manifest["run_id"] == result.run_id
    assert {w["worker"] for w in manifest["workers"]} == {leaky, healthy}
    listed = lensbook.runs(result.directory)
    assert len(listed) == 2 and set(listed["complete"]) == {True}
    # private like every record, and listed from the records folder under the cluster run
    assert stat.S_IMODE(result.directory.stat().st_mode) == 0o700
    assert stat.S_IMODE((result.directory / "cluster.json").stat().st_mode) == 0o600
    everything = lensbook.runs(result.directory.parent)
    assert set(everything.loc[everything["group"] == result.directory.name, "path"]) == set(
        listed["path"]
    )
    # a postmortem of the whole cluster run: one section per worker's run
    review = lensbook.postmortem(result.directory, tmp_path / "cluster.ipynb", execute=False)
    assert {r.header.get("worker") for r in review.runs} == {leaky, healthy}
    loaded = lensbook.load_run(bad.record)  # type: ignore[arg-type]
    assert loaded.header["worker"] == leaky
    assert [n.id for n in loaded.result.notifications] == [n.id for n in bad.notifications]
    again = lensdask.load_cluster_run(result.directory)
    assert [i.scope for i in again.insights] == [i.scope for i in result.insights]
    assert {n.id for n in again.notifications} == {n.id for n in result.notifications}
    replayed = lensbook.replay(loaded, tools="record")
    assert replayed.same_notifications


def test_task_stuck_on_a_lock_is_named_by_the_threads_skill_on_its_worker(
    client: Any, cluster: lensdask.Cluster
) -> None:
    busy, other = workers(client)
    holder = client.submit(dask_workloads.hold_gate, pure=False, workers=[busy])
    try:
        until(lambda: client.run(dask_workloads.gate_held, workers=[busy])[busy], what="gate")
        stuck = client.submit(dask_workloads.stuck_on_gate, pure=False, workers=[busy])
        until(lambda: client.run(dask_workloads.entering, workers=[busy])[busy], what="stuck")
        result = cluster.run("threads", reason="a task is stuck waiting on a lock", timeout=60)
    finally:
        client.run(dask_workloads.release_gate, workers=[busy])
    assert stuck.result(timeout=60) == "through" and holder.result(timeout=60)

    (part,) = result.worker(busy)
    blocked = [n for n in part.notifications if n.anomaly_type == "lock_contention"]
    assert blocked, str(part.result)
    assert "_GATE" in blocked[0].observation
    assert "dask_workloads.py:" in blocked[0].observation
    (calm,) = result.worker(other)
    assert not [n for n in calm.notifications if n.anomaly_type == "lock_contention"]


def test_status_and_bad_requests(client: Any, cluster: lensdask.Cluster) -> None:
    status = cluster.status()
    assert set(status) == set(workers(client))
    assert all(s["attached"] and s["pid"] != os.getpid() for s in status.values())
    with pytest.raises(lensdask.ClusterError, match=r"no worker tcp://10\.0\.0\.1:1"):
        cluster.run("runtime", workers=["tcp://10.0.0.1:1"])
    with pytest.raises(lensbook.UnknownSkill):
        cluster.run("no-such-skill")
    with pytest.raises(TypeError, match="unknown run option"):
        cluster.run("runtime", workers=workers(client)[:1], colour="red")


def test_async_form_on_one_worker(client: Any, cluster: lensdask.Cluster) -> None:
    import asyncio

    (first, _) = workers(client)
    result = asyncio.run(cluster.arun("runtime", reason="async", workers=[first], timeout=60))
    assert [w.worker for w in result.workers] == [first]
    assert result.workers[0].outcome == "completed"
    assert result.workers[0].client == "offline investigator"


def test_an_asynchronous_client(local: Any, client: Any) -> None:
    import asyncio

    (_, second) = workers(client)

    async def investigate() -> lensdask.ClusterResult:
        async with distributed.Client(local.scheduler_address, asynchronous=True) as ac:
            handle = await lensdask.aattach(ac)
            status = await handle.astatus()
            assert all(s["attached"] for s in status.values())
            return await handle.arun("runtime", reason="async client", workers=[second])

    result = asyncio.run(investigate())
    assert [(w.worker, w.outcome) for w in result.workers] == [(second, "completed")]


def test_with_a_model_the_loop_runs_here_and_the_probes_in_the_worker(
    client: Any, cluster: lensdask.Cluster
) -> None:
    from lensbook.clients import ScriptedClient, call

    (first, _) = workers(client)
    worker_pid = cluster.status()[first]["pid"]

    def notify(request: Any) -> Any:
        snaps = [
            json.loads(r.content)["id"]
            for m in request.messages
            for r in m.tool_results
            if r.content.startswith('{"id"')
        ]
        return call(
            "send_notification",
            anomaly_type="scripted_finding",
            severity="warning",
            context="seen by the scripted model",
            observation="the interpreter probe answered from the worker",
            snapshot_ids=snaps[-1:],
        )

    model = ScriptedClient(
        [
            call("take_snapshot"),
            call("runtime_interpreter"),
            notify,
            call("set_state", state="warning", reason="scripted"),
            call("done", summary="scripted"),
        ],
        name="scripted model",
    )
    result = cluster.run("runtime", reason="model here", workers=[first], client=model)
    (part,) = result.workers
    assert part.outcome == "completed" and part.client == "scripted model"
    assert [n.anomaly_type for n in part.notifications] == ["scripted_finding"]
    assert part.notifications[0].worker == first
    # the probe ran in the worker: its answer carries the worker's pid, not this process's
    record = lensbook.load_run(part.record)  # type: ignore[arg-type]
    answers = [e["data"] for e in record.of_kind("tool_result")]
    interp = next(a for a in answers if a.get("name") == "runtime_interpreter")
    assert f'"pid":{worker_pid}' in interp["content"]
    assert worker_pid != os.getpid()


def test_lens_run_on_dask_in_a_real_kernel(tmp_path: Path, local: Any) -> None:
    import nbformat
    from nbclient import NotebookClient

    cells = [
        f"import lensbook, distributed\nclient = distributed.Client({local.scheduler_address!r})",
        "%load_ext lensbook",
        '%lens run runtime --on dask --reason "kernel" --timeout 60',
        "r = _\nprint(len(r.workers), sorted({w.outcome for w in r.workers}))",
        "client.close()",
    ]
    nb = nbformat.v4.new_notebook(cells=[nbformat.v4.new_code_cell(c) for c in cells])
    env_dir = tmp_path / "ipython"
    os.environ.setdefault("MPLBACKEND", "agg")
    old = os.environ.get("IPYTHONDIR")
    os.environ["IPYTHONDIR"] = str(env_dir)
    try:
        NotebookClient(
            nb,
            timeout=180,
            kernel_name="python3",
            store_widget_state=True,
            resources={"metadata": {"path": str(tmp_path)}},
        ).execute()
    finally:
        if old is None:
            os.environ.pop("IPYTHONDIR", None)
        else:
            os.environ["IPYTHONDIR"] = old
    printed = "".join(o.text for o in nb.cells[3].outputs if o.output_type == "stream")
    assert printed.split() == ["2", "['completed']"], printed
    state = nb.metadata["widgets"]["application/vnd.jupyter.widget-state+json"]["state"]
    htmls = [m["state"].get("value", "") for m in state.values() if m["model_name"] == "HTMLModel"]
    cards = [h for h in htmls if "lensbook-card" in h]
    assert len(cards) == 2, cards
    assert all("runtime on tcp://" in h and "finished (done)" in h for h in cards)
    assert any("on 2 Dask worker(s)" in h for h in htmls)


def test_attach_detach_attach_and_a_worker_added_later(
    client: Any, local: Any, cluster: lensdask.Cluster
) -> None:
    before = workers(client)
    cluster.detach()
    assert lensdask.current(client) is None
    with pytest.raises(lensdask.ClusterError, match="detached"):
        cluster.run("runtime")
    # the worker-side functions still answer (the package is there); lensbook is stopped
    answers = client.run(lambda: __import__("lensbook.dask._worker").dask._worker._attached)
    assert all(not a["worker"] for a in answers.values())

    again = lensdask.attach(client)
    assert all(s["attached"] for s in again.status().values())
    local.scale(3)
    client.wait_for_workers(3, timeout=120)
    (added,) = set(client.nthreads()) - set(before)
    assert until(lambda: again.status()[added]["attached"], what="the plugin on the new worker")
    result = again.run("runtime", reason="new worker", workers=[added], timeout=60)
    assert result.workers[0].outcome == "completed"
    local.scale(2)
    until(lambda: len(client.nthreads()) == 2, deadline=120, what="scale down")


def test_a_worker_that_does_not_answer_times_out_by_the_deadline(
    client: Any, cluster: lensdask.Cluster, tmp_path: Path
) -> None:
    handle = lensdask.current(client)
    assert handle is not None
    frozen, other = workers(client)
    grace = lensdask._cluster.GRACE
    flag = tmp_path / "frozen"
    with concurrent.futures.ThreadPoolExecutor(1) as pool:
        # a plain function run by Client.run blocks the worker's event loop: it cannot answer
        thaw = pool.submit(
            client.run, dask_workloads.freeze, str(flag), grace + 4, workers=[frozen]
        )
        until(flag.exists, what="the worker to freeze")
        began = time.monotonic()
        result = handle.run("runtime", reason="frozen worker", timeout=2)
        took = time.monotonic() - began
        thaw.result(timeout=60)
    assert result.failed_workers == [frozen]
    (part,) = result.worker(frozen)
    assert part.outcome == "timeout" and frozen in (part.error or "")
    assert result.worker(other)[0].outcome == "completed"
    assert took < 2 + grace + 10
    until(lambda: client.run(os.getpid, workers=[frozen]), deadline=60, what="the thaw")


def test_worker_killed_mid_run_gives_a_partial_result_naming_it(
    client: Any, cluster: lensdask.Cluster
) -> None:
    handle = lensdask.current(client)
    assert handle is not None
    victim, survivor = workers(client)
    pid = handle.status()[victim]["pid"]
    started = threading.Event()
    token = events.subscribe(
        lambda e: started.set() if e.operator == f"memory@{victim}" else None,
        kinds=["run_started"],
    )
    timeout = 60.0
    began = time.monotonic()
    try:
        with concurrent.futures.ThreadPoolExecutor(1) as pool:
            future = pool.submit(handle.run, "memory", reason="killed", timeout=timeout)
            assert started.wait(60)
            os.kill(pid, signal.SIGKILL)
            result = future.result(timeout=timeout + lensdask._cluster.GRACE + 30)
    finally:
        events.unsubscribe(token)
    assert time.monotonic() - began < timeout + lensdask._cluster.GRACE
    assert result.partial and result.failed_workers == [victim]
    (dead,) = result.worker(victim)
    assert dead.outcome in ("lost", "failed") and victim in (dead.error or "")
    (alive,) = result.worker(survivor)
    assert alive.outcome == "completed"
    assert victim in str(result)
    manifest = json.loads((result.directory / "cluster.json").read_text())  # type: ignore[operator]
    entry = next(w for w in manifest["workers"] if w["worker"] == victim)
    assert entry["outcome"] == dead.outcome
    if entry["record"]:
        record = lensbook.load_run(result.directory / entry["record"])  # type: ignore[operator]
        assert record.result.stop_reason == "error" and victim in (record.result.error or "")
    client.wait_for_workers(2, timeout=120)  # the nanny restarts it


def test_no_workers_and_a_worker_without_lensbook(tmp_path: Path) -> None:
    with (
        distributed.LocalCluster(n_workers=0, processes=True, dashboard_address=None) as empty,
        distributed.Client(empty) as c,
    ):
        handle = lensdask.attach(c)
        with pytest.raises(lensdask.ClusterError, match="no workers"):
            handle.run("runtime")
        handle.detach()
        # a worker whose environment lacks lensbook: site-packages without the editable install
        env = {**os.environ, "PYTHONPATH": sysconfig.get_paths()["purelib"]}
        proc = subprocess.Popen(
            [
                sys.executable,
                "-S",
                "-m",
                "distributed.cli.dask_worker",
                empty.scheduler_address,
                "--nthreads",
                "1",
                "--no-nanny",
                "--no-dashboard",
            ],
            cwd=tmp_path,
            env=env,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        try:
            c.wait_for_workers(1, timeout=60)
            (bare,) = c.nthreads()
            with pytest.raises(lensdask.ClusterError) as info:
                lensdask.attach(c)
            assert bare in str(info.value) and "lensbook[dask]" in str(info.value)
        finally:
            proc.terminate()
            proc.wait(30)
