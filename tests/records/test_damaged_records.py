"""Damaged records: every one loads with its problems listed or raises RecordError, and what
loads can be summarised, turned into tables and replayed; `runs()` lists damaged files."""

from __future__ import annotations

import json
import warnings
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

import lensbook
from lensbook.clients import ScriptedClient
from lensbook.records import RecordError, configure, writer
from tests.records.test_records import Dial, script

_KINDS = [
    "notification",
    "snapshot",
    "run_completed",
    "state_changed",
    "tool_call",
    "tool_result",
    "model_request",
    "model_response",
    "iteration",
    "error",
]


@pytest.fixture(scope="module")
def good_lines(tmp_path_factory: pytest.TempPathFactory) -> Iterator[list[str]]:
    """The lines of one real, complete record of a run that made a notification."""
    configure(tmp_path_factory.mktemp("good"))
    try:
        op = lensbook.Operator.start(skill=Dial, client=ScriptedClient(script(), name="scripted"))
        notes = op.run({"reason": "dial check"})
        path = writer.path_of(notes.result.run_id)
        assert path is not None
        yield path.read_text().splitlines(keepends=True)
    finally:
        writer._directory = None
        lensbook.stop()


def _use_everything(run: lensbook.Run) -> None:
    """Everything a reader of a record does; none of it may raise."""
    text = run.summary()
    assert run.run_id in text
    run._repr_html_()
    result = run.result
    assert result.stop_reason in ("done", "max_iterations", "timeout", "stopped", "error")
    tables = [run.notifications, run.snapshots, run.timeline, run.metrics]
    assert len(tables[0]) == len(result.notifications)


def _load(path: Path) -> lensbook.Run | None:
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        try:
            return lensbook.load_run(path)
        except RecordError:
            return None


def test_a_deeply_nested_line_is_a_listed_problem(tmp_path: Path, good_lines: list[str]) -> None:
    damaged = tmp_path / "nested.jsonl"
    deep = '{"type":"event","kind":"snapshot","at":1,"data":' + "[" * 10_000 + "]" * 10_000
    damaged.write_text("".join([good_lines[0], deep + "}\n", *good_lines[1:]]))
    run = _load(damaged)
    assert run is not None
    assert any(p.startswith("line 2:") and "deeply" in p for p in run.problems)
    assert len(run.events) == len(good_lines) - 1
    _use_everything(run)


@pytest.mark.parametrize(
    ("kind", "data"),
    [
        ("notification", {"notification": "a string"}),
        ("notification", {"notification": {"severity": "apocalyptic"}}),
        ("snapshot", {"id": 7, "data": [1, 2]}),
        ("run_completed", {"stop_reason": "exploded", "usage": "lots"}),
        ("run_completed", {"iterations": "many"}),
        ("state_changed", {"state": None}),
        ("tool_result", {"id": "x", "name": "y", "content": {"a": 1}}),
        ("model_response", {"turn": {"content": "not blocks"}}),
        ("model_request", {"messages": [{"role": "user", "content": [{"type": "tool_result"}]}]}),
        ("iteration", {"iteration": "one"}),
    ],
)
def test_events_of_the_wrong_shape_are_listed_and_the_rest_is_usable(
    tmp_path: Path, good_lines: list[str], kind: str, data: dict[str, Any]
) -> None:
    bad = json.dumps({"type": "event", "seq": 1, "at": 1.0, "kind": kind, "data": data})
    damaged = tmp_path / "shape.jsonl"
    damaged.write_text("".join([good_lines[0], bad + "\n", *good_lines[1:]]))
    run = _load(damaged)
    assert run is not None
    assert len(run.problems) == 1 and run.problems[0].startswith(f"line 2: {kind} event")
    _use_everything(run)
    assert [n.anomaly_type for n in run.result.notifications] == ["dial_high"]
    again = lensbook.replay(run, tools="record", skill=Dial)
    assert again.same_notifications


def test_a_damaged_header_raises_record_error(tmp_path: Path, good_lines: list[str]) -> None:
    header = json.loads(good_lines[0])
    for field, value in [("started_at", "yesterday"), ("context", [1]), ("max_iterations", 0)]:
        path = tmp_path / f"{field}.jsonl"
        path.write_text(json.dumps({**header, field: value}) + "\n" + "".join(good_lines[1:]))
        with pytest.raises(RecordError, match=f"damaged header: {field}"):
            lensbook.load_run(path)
    assert issubclass(RecordError, lensbook.LensbookError)


def test_runs_lists_damaged_files_instead_of_failing(tmp_path: Path, good_lines: list[str]) -> None:
    name = json.loads(good_lines[0])["run_id"]
    good = tmp_path / f"20260101T000000000-dial-{name}.jsonl"
    good.write_text("".join(good_lines))
    bad_header = tmp_path / "20260101T000000001-dial-00000000000000aa.jsonl"
    bad_header.write_text(json.dumps({**json.loads(good_lines[0]), "started_at": "x"}) + "\n")
    torn = tmp_path / "20260101T000000002-dial-00000000000000bb.jsonl"
    torn.write_text("".join(good_lines)[:-20])
    (tmp_path / "someone-elses.jsonl").write_text('{"level": "info"}\n')
    table = lensbook.runs(tmp_path)
    by_path = {Path(row["path"]).name: row for row in table.to_dict("records")}
    assert set(by_path) == {good.name, bad_header.name, torn.name}  # not the other tool's file
    assert not by_path[good.name]["damaged"] and by_path[good.name]["complete"]
    assert (
        by_path[bad_header.name]["damaged"] and "started_at" in by_path[bad_header.name]["problems"]
    )
    assert by_path[torn.name]["damaged"] and "truncated" in by_path[torn.name]["problems"]


_json = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats() | st.text(max_size=8),
    lambda inner: (
        st.lists(inner, max_size=3) | st.dictionaries(st.text(max_size=8), inner, max_size=3)
    ),
    max_leaves=8,
)


@st.composite
def _damage(draw: st.DrawFn, lines: list[str]) -> str:
    """A record with some lines replaced, cut, dropped, or made into events of random shape."""
    out = list(lines)
    for _ in range(draw(st.integers(1, 4))):
        i = draw(st.integers(0, len(out) - 1))
        choice = draw(st.integers(0, 4))
        if choice == 0:
            out[i] = out[i][: draw(st.integers(0, len(out[i])))]
        elif choice == 1:
            out[i] = json.dumps(draw(_json)) + "\n"
        elif choice == 2:
            event = {"type": "event", "seq": draw(_json), "at": draw(_json)}
            event["kind"] = draw(st.sampled_from(_KINDS))
            event["data"] = draw(
                st.dictionaries(
                    st.sampled_from(
                        [
                            "id",
                            "name",
                            "state",
                            "notification",
                            "turn",
                            "messages",
                            "data",
                            "usage",
                            "stop_reason",
                            "content",
                            "iterations",
                        ]
                    ),
                    _json,
                    max_size=4,
                )
            )
            out[i] = json.dumps(event) + "\n"
        elif choice == 3:
            entry = json.loads(lines[i]) if lines[i].strip() else {}
            key = draw(st.sampled_from(sorted(entry) or ["x"]))
            entry[key] = draw(_json)
            out[i] = json.dumps(entry) + "\n"
        else:
            del out[i]
            if not out:
                out = [lines[0]]
    return "".join(out)


@settings(
    max_examples=60, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
@given(data=st.data())
def test_fuzz_any_damaged_record_loads_usably_or_raises_record_error(
    tmp_path: Path, good_lines: list[str], data: st.DataObject
) -> None:
    path = tmp_path / "20260101T000000000-dial-00000000000000cc.jsonl"
    path.write_text(data.draw(_damage(good_lines)))
    run = _load(path)
    if run is not None:
        _use_everything(run)
    lensbook.runs(tmp_path)
