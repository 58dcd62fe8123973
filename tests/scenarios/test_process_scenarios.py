"""End to end: the process and system skills driven by the offline investigator."""

from __future__ import annotations

import json
import os
import re
import sys
from pathlib import Path

import psutil
import pytest

import lensbook
from lensbook.clients.offline import OfflineInvestigator
from tests.scenarios._children import offline_env, run_offline, run_python

pytestmark = pytest.mark.skipif(not sys.platform.startswith("linux"), reason="reads /proc")


@pytest.mark.slow
def test_fd_leak_is_diagnosed_with_growth_and_path_pattern(tmp_path: Path) -> None:
    outcome = run_offline("fd_leak", tmp_path)
    assert outcome["diagnosed"], outcome
    assert outcome["client"] == "offline investigator"
    [note] = [n for n in outcome["notifications"] if n["anomaly_type"] == "fd_leak"]
    assert note["severity"] in ("warning", "critical")
    grew = re.search(r"grew from (\d+) to (\d+) \(\+(\d+) in ([\d.]+) s", note["observation"])
    assert grew is not None, note["observation"]
    first, last, plus, _span = grew.groups()
    assert int(last) - int(first) == int(plus) >= 16
    assert "/tmp*/leak-*.log" in note["observation"]
    assert "leak-*.log" in note["hypothesis"]
    assert "RLIMIT_NOFILE" in note["context"]
    assert len(note["snapshot_ids"]) == 2
    # a listing before; a listing, the history and where new files are created after
    assert outcome["probe_calls"] <= 5
    assert re.search(r"created at \S*fd_leak\.py:\d+ in leak_files", note["observation"])


_IDLE_RUN = """
import json, lensbook
from lensbook.clients.offline import OfflineInvestigator
lensbook.start(["process"], client=OfflineInvestigator())
result = lensbook.run("process", reason="routine check of file descriptors and children").result
print(json.dumps({"state": result.state, "stop_reason": result.stop_reason,
                  "snapshots": len(result.snapshots),
                  "notifications": [n.model_dump(mode="json") for n in result.notifications]}))
lensbook.stop()
"""


def test_idle_process_is_healthy_through_the_loop(tmp_path: Path) -> None:
    # an idle process of its own: the test process, after the suite's kernels, servers, clusters
    # and children, is not idle (its fd and thread history rise for real)
    env = offline_env()
    env["LENSBOOK_RECORDS_DIR"] = str(tmp_path / "records")
    result = json.loads(run_python(["-c", _IDLE_RUN], env=env))
    assert result["state"] == "healthy", result["notifications"]
    assert result["notifications"] == []
    assert result["snapshots"] == 2  # the fd trend needs two snapshots
    assert result["stop_reason"] == "done"


def test_system_run_cites_snapshots_and_alarms_only_on_real_numbers() -> None:
    lensbook.start(["system"], client=OfflineInvestigator())
    result = lensbook.run("system", reason="is the host saturated?").result
    assert result.stop_reason == "done"
    assert len(result.snapshots) == 2
    last = result.snapshots[-1].data
    assert last["cpu_window_s"] >= 0.5  # the second snapshot has a window worth judging
    ids = {s.id for s in result.snapshots}
    for note in result.notifications:
        assert set(note.snapshot_ids) <= ids
        if note.severity == "info":
            continue
        # an alarm on this machine must be what its own numbers say
        assert (
            last["mem_available_percent"] < 10
            or last["disk_root_percent"] >= 95
            or (last["cpu_percent"] >= 95 and last["load1_per_core"] >= 3)
            or note.anomaly_type in ("container_memory_pressure", "swap_activity")
        ), note
    if psutil.virtual_memory().percent < 50 and os.getloadavg()[0] < (os.cpu_count() or 1):
        assert result.state in ("healthy", "observing")
