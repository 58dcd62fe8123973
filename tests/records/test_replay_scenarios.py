"""Every scenario of the fault suite, recorded in a child process, replays to the same
notifications here (the model's turns and the probes' answers from the record)."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

import lensbook
from lensbook.scenarios import get_scenario, scenario_names


@pytest.mark.slow
@pytest.mark.parametrize("name", scenario_names())
def test_a_recorded_scenario_replays_to_the_same_notifications(name: str, tmp_path: Path) -> None:
    env = {**os.environ, "LENSBOOK_RECORDS_DIR": str(tmp_path)}
    env.pop("ANTHROPIC_API_KEY", None)
    out = subprocess.run(
        [sys.executable, "-m", "lensbook.scenarios", name, "--json"],
        capture_output=True,
        text=True,
        timeout=240,
        env=env,
    )
    outcome = json.loads(out.stdout.strip().splitlines()[-1])
    records = sorted(tmp_path.glob("*.jsonl"))
    # one record per skill the scenario investigates with (a healthy workload runs several)
    scenario = get_scenario(name)
    assert len(records) == len(scenario.skills or (scenario.skill,)), out.stderr[-2000:]
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
