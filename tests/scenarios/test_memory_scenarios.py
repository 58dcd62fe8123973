"""End to end: induce the memory and gc faults in a child process and check the diagnosis.

Each test runs ``python -m lensbook.scenarios NAME --json`` with the offline investigator (no
API key in the child's environment) and reads the outcome it prints.
"""

from __future__ import annotations

import inspect
import json
import os
import re
import subprocess
import sys
from types import ModuleType
from typing import Any

import pytest

from lensbook.scenarios import _leaky_cache, _leaky_callbacks


def _run(name: str) -> dict[str, Any]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("ANTHROPIC")}
    proc = subprocess.run(
        [sys.executable, "-m", "lensbook.scenarios", name, "--json"],
        capture_output=True,
        text=True,
        timeout=120,
        env=env,
    )
    lines = proc.stdout.strip().splitlines()
    assert lines, f"no outcome printed; stderr:\n{proc.stderr[-3000:]}"
    outcome: dict[str, Any] = json.loads(lines[-1])
    assert outcome["client"] == "offline investigator"
    assert outcome["error"] is None, outcome["error"]
    return outcome


def _text(outcome: dict[str, Any]) -> str:
    return "\n".join(
        f"{n['anomaly_type']} {n['context']} {n['observation']} {n.get('hypothesis') or ''}"
        for n in outcome["notifications"]
    )


def _line(module: ModuleType, marker: str) -> int:
    lines, _ = inspect.getsourcelines(module)
    return next(i for i, line in enumerate(lines, 1) if marker in line)


@pytest.mark.slow
def test_cache_leak_names_the_allocating_line_and_the_cache() -> None:
    outcome = _run("cache_leak")
    assert outcome["diagnosed"], outcome
    assert outcome["state"] in ("warning", "critical")
    text = _text(outcome)
    site = f"_leaky_cache.py:{_line(_leaky_cache, 'hit = {')}"
    top = re.search(r"Top allocation site (\S+)", text)
    assert top is not None and top.group(1).endswith(site), text
    assert "module global lensbook.scenarios._leaky_cache._CACHE" in text


@pytest.mark.slow
def test_callback_leak_names_the_growing_type_and_the_registration_site() -> None:
    outcome = _run("callback_leak")
    assert outcome["diagnosed"], outcome
    text = _text(outcome)
    registration = f"_leaky_callbacks.py:{_line(_leaky_callbacks, 'BUS.on(')}"
    assert f"handle_request.<locals>.<lambda> (lensbook/scenarios/{registration})" in text
    assert re.search(r"growing types: .*_leaky_callbacks\.RequestContext \+\d+", text), text
    assert "Callbacks are registered and never removed" in text
    assert "held by module global lensbook.scenarios._leaky_callbacks.BUS" in text


@pytest.mark.slow
def test_del_cycles_names_the_type_and_the_full_collection_rate() -> None:
    outcome = _run("del_cycles")
    assert outcome["diagnosed"], outcome
    text = _text(outcome)
    assert "lensbook.scenarios.del_cycles.ParseNode" in text
    assert "__del__ at lensbook/scenarios/del_cycles.py:" in text
    rate = re.search(r"gen-2 \(full\) collections: (\d+) in ([\d.]+) s \(([\d.]+)/s\)", text)
    assert rate is not None, text
    assert int(rate.group(1)) >= 2 and float(rate.group(3)) >= 0.5
