"""Every scenario of the fault suite, recorded in a child process, replays to the same
notifications here (the model's turns and the probes' answers from the record)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

import lensbook
from lensbook.scenarios import get_scenario, scenario_names
from tests.scenarios._children import run_children


@pytest.fixture(scope="module")
def recorded(tmp_path_factory: pytest.TempPathFactory) -> dict[str, tuple[dict[str, Any], Path]]:
    """Every scenario run once in a child process (four at a time), with its own records."""
    base = tmp_path_factory.mktemp("replay")
    outcomes = run_children(scenario_names(), lambda name: base / name)
    return {name: (outcome, base / name / "records") for name, outcome in outcomes.items()}


@pytest.mark.slow
@pytest.mark.parametrize("name", scenario_names())
def test_a_recorded_scenario_replays_to_the_same_notifications(
    name: str, recorded: dict[str, tuple[dict[str, Any], Path]]
) -> None:
    outcome, folder = recorded[name]
    assert "no_outcome" not in outcome, outcome.get("no_outcome")
    records = sorted(folder.glob("*.jsonl"))
    # one record per skill the scenario investigates with (a healthy workload runs several)
    scenario = get_scenario(name)
    assert len(records) == len(scenario.skills or (scenario.skill,)), outcome
    runs = [lensbook.load_run(record) for record in records]
    assert all(run.complete and not run.problems for run in runs)
    assert sorted(n.to_dict()["observation"] for run in runs for n in run.result.notifications) == (
        sorted(n["observation"] for n in outcome["notifications"])
    )
    for run in runs:
        again = lensbook.replay(run, tools="record")
        assert again.divergences == []
        assert again.same_notifications
        assert again.result.state == run.result.state
