"""End to end: induce the out_cache and error_storm faults in a child process, investigate them
with the offline investigator, and check the diagnosis names the culprit; and no false alarm
from the logs, exceptions and kernel skills on a quiet process."""

from __future__ import annotations

import contextlib
import io
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from lensbook import recorder
from lensbook.clients.offline import OfflineInvestigator
from lensbook.scenarios import Scenario
from lensbook.scenarios.runner import run_scenario
from lensbook.skills import resolve_skill
from tests._ipython import ipython_shell
from tests.scenarios._children import notes_text, run_offline


@pytest.mark.slow
def test_out_cache_names_the_cache_entry_and_its_size(tmp_path: Any) -> None:
    outcome = run_offline("out_cache", tmp_path)
    assert outcome["diagnosed"] is True, outcome
    assert outcome["client"] == "offline investigator"
    assert outcome["state"] == "warning"
    text = notes_text(outcome)
    assert "Out[3]" in text
    assert "pandas.DataFrame of shape 2000000x10" in text
    assert "152.6 MB" in text
    assert "no user variable refers to it" in text


@pytest.mark.slow
def test_error_storm_names_logger_message_and_rate(tmp_path: Any) -> None:
    outcome = run_offline("error_storm", tmp_path)
    assert outcome["diagnosed"] is True, outcome
    assert outcome["state"] in ("warning", "critical")
    (note,) = outcome["notifications"]
    assert note["anomaly_type"] == "error_storm"
    assert "'payments.gateway'" in note["observation"]
    assert "'failed to charge card %s: gateway timeout'" in note["observation"]
    assert "errors/s" in note["context"]
    assert "payments-retry" in note["observation"]


@pytest.fixture
def closes_skills() -> Iterator[None]:
    yield
    for sid in ("logs", "exceptions", "kernel"):
        resolve_skill(sid).close()  # type: ignore[attr-defined]


@pytest.fixture
def quiet_shell(tmp_path: Path) -> Iterator[Any]:
    with ipython_shell(tmp_path, fresh=False) as sh:
        with contextlib.redirect_stdout(io.StringIO()):
            sh.run_cell(
                "import pandas as pd\nprices = pd.Series([1.5, 2.5])\nprices", store_history=True
            )
            sh.run_cell("total = prices.sum(); total", store_history=True)
        yield sh
        with contextlib.redirect_stdout(io.StringIO()):
            sh.run_line_magic("reset", "-f")


@pytest.mark.slow
@pytest.mark.parametrize("skill", ["logs", "exceptions", "kernel"])
def test_no_false_alarm_on_a_quiet_process(
    skill: str, closes_skills: None, quiet_shell: Any
) -> None:
    # quiet from now on: what earlier tests raised in this process is not this test's history
    recorder.clear()
    quiet = Scenario(
        name=f"quiet_{skill}",
        title="a quiet process",
        skill=skill,
        reason="routine check: is anything wrong?",
        induce=lambda: None,
        healthy=True,
        settle=0,
    )
    outcome = run_scenario(quiet, client=OfflineInvestigator())
    assert outcome.error is None
    assert outcome.false_alarm is False
    assert outcome.state == "healthy"
    assert outcome.notifications == []
