"""End to end: induce the memory and gc faults in a child process and check the diagnosis.

Each test runs ``python -m lensbook.scenarios NAME --json`` with the offline investigator (no
API key in the child's environment) and reads the outcome it prints.
"""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from lensbook.scenarios import _leaky_cache, _leaky_callbacks
from tests.scenarios._children import line_of, notes_text, run_offline


@pytest.mark.slow
def test_cache_leak_names_the_allocating_line_and_the_cache(tmp_path: Path) -> None:
    outcome = run_offline("cache_leak", tmp_path)
    assert outcome["diagnosed"], outcome
    assert outcome["state"] in ("warning", "critical")
    text = notes_text(outcome)
    site = f"_leaky_cache.py:{line_of(_leaky_cache, 'hit = {')}"
    top = re.search(r"Top allocation site (\S+)", text)
    assert top is not None and top.group(1).endswith(site), text
    assert "module global lensbook.scenarios._leaky_cache._CACHE" in text


@pytest.mark.slow
def test_callback_leak_names_the_growing_type_and_the_registration_site(tmp_path: Path) -> None:
    outcome = run_offline("callback_leak", tmp_path)
    assert outcome["diagnosed"], outcome
    text = notes_text(outcome)
    registration = f"_leaky_callbacks.py:{line_of(_leaky_callbacks, 'BUS.on(')}"
    assert f"handle_request.<locals>.<lambda> (lensbook/scenarios/{registration})" in text
    assert re.search(r"growing types: .*_leaky_callbacks\.RequestContext \+\d+", text), text
    assert "Callbacks are registered and never removed" in text
    assert "held by module global lensbook.scenarios._leaky_callbacks.BUS" in text


@pytest.mark.slow
def test_del_cycles_names_the_type_and_the_full_collection_rate(tmp_path: Path) -> None:
    outcome = run_offline("del_cycles", tmp_path)
    assert outcome["diagnosed"], outcome
    text = notes_text(outcome)
    assert "lensbook.scenarios.del_cycles.ParseNode" in text
    assert "__del__ at lensbook/scenarios/del_cycles.py:" in text
    rate = re.search(r"gen-2 \(full\) collections: (\d+) in ([\d.]+) s \(([\d.]+)/s\)", text)
    assert rate is not None, text
    assert int(rate.group(1)) >= 2 and float(rate.group(3)) >= 0.5
