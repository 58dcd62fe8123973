"""Replay: the model's turns come from the record; divergences are reported, not hidden."""

from __future__ import annotations

import json
from pathlib import Path

import lensbook
from lensbook.records import configure, writer
from lensbook.records.replay import replay

from .test_records import Dial, folder, recorded_run  # noqa: F401  (fixture)


def test_replay_with_tools_rerun_gives_the_same_notifications(folder: Path) -> None:  # noqa: F811
    run = recorded_run(folder)
    again = replay(run, skill=Dial)
    assert again.same_notifications
    assert again.divergences == []
    assert again.result.stop_reason == "done" and again.result.state == "warning"
    assert again.result.notifications[0].snapshot_ids == run.result.notifications[0].snapshot_ids
    assert "the same as the record; 0 divergence" in repr(again)


def test_a_replay_carries_its_notifications_as_a_run_does(folder: Path) -> None:  # noqa: F811
    run = recorded_run(folder)
    again = lensbook.replay(run, tools="record", skill=Dial)
    assert again.notifications == again.result.notifications
    assert [n.anomaly_type for n in again.notifications] == [
        n.anomaly_type for n in run.result.notifications
    ]
    assert again.notifications  # the recorded run made one


def test_replay_from_the_record_needs_no_probe(folder: Path) -> None:  # noqa: F811
    run = recorded_run(folder)
    again = replay(run.path, tools="record", skill=Dial)
    assert again.same_notifications and again.divergences == []


def _tamper(run: lensbook.Run, folder: Path) -> Path:  # noqa: F811
    lines = run.path.read_text().splitlines()
    for i, line in enumerate(lines):
        entry = json.loads(line)
        if entry.get("kind") == "tool_result" and entry["data"]["name"] == "dial_detail":
            entry["data"]["content"] = entry["data"]["content"].replace("17", "99")
            lines[i] = json.dumps(entry)
            break
    tampered = folder / "tampered.jsonl"
    tampered.write_text("\n".join(lines) + "\n")
    return tampered


def test_a_tampered_tool_result_is_reported_as_a_divergence(folder: Path) -> None:  # noqa: F811
    run = recorded_run(folder)
    tampered = _tamper(run, folder)
    rerun = replay(tampered, skill=Dial)
    assert len(rerun.divergences) == 1
    d = rerun.divergences[0]
    assert d.where.startswith("dial_detail") and '"angle":99' in d.recorded
    assert '"angle":17' in d.replayed
    assert rerun.same_notifications  # the model's turns still come from the record
    from_record = replay(tampered, tools="record", skill=Dial)
    assert len(from_record.divergences) == 1
    assert "differs from what the model saw" in from_record.divergences[0].where


def test_a_replay_is_itself_recorded(folder: Path) -> None:  # noqa: F811
    run = recorded_run(folder)
    again = replay(run, tools="record", skill=Dial)
    path = writer.path_of(again.result.run_id)
    assert path is not None and lensbook.load_run(path).complete
    configure()
