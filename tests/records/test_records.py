"""Run records: written event by event, read back as DataFrames, robust to damage."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import textwrap
import time
from pathlib import Path
from typing import Any

import pytest

import lensbook
from lensbook import Skill, probe
from lensbook.clients import ModelRequest, ScriptedClient, call
from lensbook.records import RecordError, configure, writer


class Dial(Skill):
    """A deterministic skill: the same snapshot and probe output every time."""

    id = "dial"
    title = "Dial"
    description = "A dial with a fixed reading"
    system_prompt = "Read the dial."

    def snapshot(self) -> dict[str, Any]:
        return {"reading": 42, "ok": True, "label": "dial-1"}

    @probe
    def detail(self, part: str = "needle") -> dict[str, Any]:
        """Detail of one part. Cost: nothing."""
        return {"part": part, "angle": 17}


def _snap_id(request: ModelRequest) -> str:
    for m in reversed(request.messages):
        for r in m.tool_results:
            if '"captured_at"' in r.content:
                return str(json.loads(r.content)["id"])
    raise AssertionError("no snapshot")


def script() -> list[Any]:
    return [
        call("take_snapshot"),
        [call("dial_detail", part="needle"), call("dial_detail", part="face")],
        lambda r: [
            call(
                "send_notification",
                anomaly_type="dial_high",
                severity="warning",
                context="reading 42",
                observation="needle at 17 degrees",
                hypothesis="stuck needle",
                snapshot_ids=[_snap_id(r)],
            )
        ],
        [call("set_state", state="warning", reason="high"), call("done", summary="dial high")],
    ]


@pytest.fixture
def folder(tmp_path: Path) -> Path:
    configure(tmp_path)
    yield tmp_path
    writer._directory = None


def recorded_run(folder: Path) -> lensbook.Run:
    op = lensbook.Operator.start(skill=Dial, client=ScriptedClient(script(), name="scripted"))
    notes = op.run({"reason": "dial check", "password": "hunter2hunter2"})
    path = writer.path_of(notes.result.run_id)
    assert path is not None and path.parent == folder
    return lensbook.load_run(path)


def test_a_run_is_recorded_and_reads_back(folder: Path) -> None:
    run = recorded_run(folder)
    lines = run.path.read_text().splitlines()
    header = json.loads(lines[0])
    assert header["type"] == "header" and header["version"] == 1
    assert header["lensbook"] == lensbook.__version__ and header["skill"] == "dial"
    assert header["client"] == "scripted" and header["max_iterations"] == 25
    assert header["context"]["password"] == "[REDACTED]"  # redacted before it was written
    assert "hunter2" not in run.path.read_text()
    assert run.complete and not run.problems
    kinds = [e["kind"] for e in run.events]
    for kind in (
        "model_request",
        "model_response",
        "tool_call",
        "tool_result",
        "snapshot",
        "state_changed",
        "notification",
        "run_completed",
    ):
        assert kind in kinds
    result = run.result
    assert result.state == "warning" and result.stop_reason == "done"
    assert result.summary == "dial high"
    assert [n.anomaly_type for n in result.notifications] == ["dial_high"]
    df = run.notifications
    assert list(df["anomaly_type"]) == ["dial_high"] and df.loc[0, "hypothesis"] == "stuck needle"
    assert list(run.snapshots["reading"]) == [42]
    assert set(run.metrics["metric"]) == {"reading", "ok"}
    assert "tool_call" in set(run.timeline["kind"])
    assert "dial_detail" in " ".join(run.timeline["detail"])
    text = run.summary()
    assert "completed: state warning" in text and "dial_high" in text
    listed = lensbook.runs(folder)
    assert list(listed["run_id"]) == [run.run_id]
    assert listed.loc[0, "notifications"] == 1 and listed.loc[0, "reason"] == "dial check"


def test_recording_can_be_turned_off_and_retention_prunes(folder: Path) -> None:
    configure(enabled=False)
    try:
        op = lensbook.Operator.start(skill=Dial, client=ScriptedClient([call("done")] * 5))
        op.run({})
        assert list(folder.glob("*.jsonl")) == []
    finally:
        writer._enabled = None
    configure(retention=2)
    try:
        for _ in range(4):
            op.run({})
        assert len(list(folder.glob("*.jsonl"))) == 2
    finally:
        writer.retention = 200


def test_a_corrupt_record_reports_line_numbers_and_loads_the_rest(folder: Path) -> None:
    run = recorded_run(folder)
    lines = run.path.read_text().splitlines(keepends=True)
    lines[4] = "{this is not json\n"
    lines[-1] = lines[-1][: len(lines[-1]) // 2]  # a torn last line, no newline
    damaged = folder / "damaged.jsonl"
    damaged.write_text("".join(lines))
    with pytest.warns(UserWarning, match="line 5"):
        again = lensbook.load_run(damaged)
    assert any(p.startswith("line 5:") for p in again.problems)
    assert any("truncated last line" in p for p in again.problems)
    assert len(again.events) == len(run.events) - 2
    assert [n.anomaly_type for n in again.result.notifications] == ["dial_high"]
    assert not again.complete and "CUT SHORT" in again.summary()


def test_records_from_a_newer_format_or_not_records_fail_clearly(tmp_path: Path) -> None:
    newer = tmp_path / "newer.jsonl"
    newer.write_text(json.dumps({"type": "header", "format": "lensbook-run", "version": 99}) + "\n")
    with pytest.raises(RecordError, match="version 99 is newer"):
        lensbook.load_run(newer)
    other = tmp_path / "other.jsonl"
    other.write_text('{"hello": 1}\n')
    with pytest.raises(RecordError, match="not a lensbook run header"):
        lensbook.load_run(other)


CHILD = textwrap.dedent("""
    import sys, time
    import lensbook
    from lensbook.clients import ScriptedClient, call
    sys.path.insert(0, sys.argv[1])
    from test_records import Dial, script
    steps = script()[:3] + [call("wait", seconds=120)]
    op = lensbook.Operator.start(skill=Dial, client=ScriptedClient(steps), max_wait_seconds=300)
    op.run({"reason": "about to be killed"})
""")


@pytest.mark.slow
def test_kill_9_mid_run_leaves_a_readable_record(tmp_path: Path) -> None:
    env = {**os.environ, "LENSBOOK_RECORDS_DIR": str(tmp_path)}
    child = subprocess.Popen([sys.executable, "-c", CHILD, str(Path(__file__).parent)], env=env)
    try:
        deadline = time.monotonic() + 60
        record: Path | None = None
        while time.monotonic() < deadline:
            found = list(tmp_path.glob("*.jsonl"))
            lines = found[0].read_text().splitlines() if found else []
            # (the model's response names the call too: wait for the call's own event)
            if any('"kind":"tool_call"' in ln and '"name":"wait"' in ln for ln in lines):
                record = found[0]
                break
            time.sleep(0.05)
        assert record is not None, "the child never reached its wait"
    finally:
        child.send_signal(signal.SIGKILL)
        child.wait(10)
    run = lensbook.load_run(record)
    assert not run.problems
    assert not run.complete
    assert [n.anomaly_type for n in run.result.notifications] == ["dial_high"]
    assert run.events[-1]["kind"] in ("tool_call", "tool_result")
    assert run.result.stop_reason == "error" and "before the run completed" in str(run.result.error)


def test_runs_lists_grouped_runs_and_a_postmortem_takes_their_folder(tmp_path: Path) -> None:
    shipped = Path(__file__).parents[2] / "notebooks" / "records" / "cache-leak.jsonl"
    group = tmp_path / "20261201T120000000-cluster-0123456789abcdef"
    group.mkdir()
    (tmp_path / "20261201T110000000-memory-00000000000000aa.jsonl").write_bytes(
        shipped.read_bytes()
    )
    (group / "20261201T120000000-memory_w1-00000000000000bb.jsonl").write_bytes(
        shipped.read_bytes()
    )
    (group / "notes.jsonl").write_text('{"not": "a record"}\n')  # not lensbook's: not listed
    listed = lensbook.runs(tmp_path)
    assert sorted(listed["group"]) == ["", group.name]
    assert not listed["damaged"].any()
    review = lensbook.postmortem(group, tmp_path / "review.ipynb", execute=False)
    assert [r.path.name for r in review.runs] == [
        "20261201T120000000-memory_w1-00000000000000bb.jsonl"
    ]
