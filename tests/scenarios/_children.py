"""Scenarios run as `lensbook eval` runs them: each in a child process of its own
(``python -m lensbook.scenarios NAME --json``) with the default offline investigator, several at
once (the children mostly wait on their fault windows, so four share two cores well); and what
the scenario tests read in an outcome. Also a child Python of a test's own (`run_python`), for
what must start in a fresh interpreter (threads before lensbook loads, an idle process)."""

from __future__ import annotations

import inspect
import json
import os
import subprocess
import sys
from collections.abc import Callable, Sequence
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from types import ModuleType
from typing import Any


def offline_env() -> dict[str, str]:
    """This environment without a model key: a child started with it investigates offline."""
    return {k: v for k, v in os.environ.items() if not k.startswith("ANTHROPIC")}


def run_python(
    args: Sequence[str],
    *,
    env: dict[str, str] | None = None,
    cwd: Path | None = None,
    timeout: float = 120,
) -> str:
    """The last line a child Python (``python ARGS...``, no stdin) printed; a child that fails
    fails the test with the end of its stderr."""
    done = subprocess.run(
        [sys.executable, *args],
        capture_output=True,
        text=True,
        timeout=timeout,
        env=env,
        cwd=cwd,
        stdin=subprocess.DEVNULL,
    )
    assert done.returncode == 0, done.stderr[-3000:]
    return done.stdout.strip().splitlines()[-1]


def run_child(name: str, home: Path) -> dict[str, Any]:
    """One scenario's outcome, with the child's ``exit_status``; its records go to
    ``home/records``. No model key reaches the child, so it investigates offline. A child that
    prints no outcome gives ``{"scenario": name, "no_outcome": <the end of its stderr>}``."""
    env = offline_env()
    env["IPYTHONDIR"] = str(home / "ipython")  # the kernel scenario's shell writes no home files
    env["LENSBOOK_RECORDS_DIR"] = str(home / "records")
    done = subprocess.run(
        [sys.executable, "-m", "lensbook.scenarios", name, "--json"],
        capture_output=True,
        text=True,
        timeout=300,
        env=env,
        stdin=subprocess.DEVNULL,
    )
    lines = [line for line in done.stdout.splitlines() if line.startswith("{")]
    if not lines:
        return {"scenario": name, "no_outcome": done.stderr[-3000:]}
    outcome: dict[str, Any] = json.loads(lines[-1])
    outcome["exit_status"] = done.returncode
    return outcome


def run_children(
    names: Sequence[str], home_of: Callable[[str], Path], workers: int = 4
) -> dict[str, dict[str, Any]]:
    """The outcomes of `names`, run `workers` at a time, each with its own home folder."""
    with ThreadPoolExecutor(max_workers=workers) as pool:
        found = pool.map(lambda n: run_child(n, home_of(n)), names)
        return dict(zip(names, found, strict=True))


def run_offline(name: str, home: Path) -> dict[str, Any]:
    """`run_child`, checked: an outcome was printed, by the offline investigator, without a
    run error, and the child's exit status says whether it diagnosed the fault."""
    outcome = run_child(name, home)
    assert "no_outcome" not in outcome, outcome["no_outcome"]
    assert outcome["client"] == "offline investigator"
    assert outcome["error"] is None, outcome["error"]
    assert outcome["exit_status"] == (0 if outcome["diagnosed"] else 1)
    return outcome


def notes_text(outcome: dict[str, Any]) -> str:
    """The notifications' text, as the runner's judge matches the scenario's patterns on it."""
    return "\n".join(
        f"{n['anomaly_type']} {n['context']} {n['observation']} {n.get('hypothesis') or ''}"
        for n in outcome["notifications"]
    )


def line_of(module: ModuleType, marker: str) -> int:
    """The number of the first line of `module` that contains `marker`."""
    lines, _ = inspect.getsourcelines(module)
    return next(i for i, line in enumerate(lines, 1) if marker in line)
