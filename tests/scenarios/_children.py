"""Scenarios run as `lensbook eval` runs them: each in a child process of its own
(``python -m lensbook.scenarios NAME --json``) with the default offline investigator, several at
once (the children mostly wait on their fault windows, so four share two cores well)."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from collections.abc import Callable, Sequence
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any


def run_child(name: str, home: Path) -> dict[str, Any]:
    """One scenario's outcome; its records go to ``home/records``. A child that prints no
    outcome gives ``{"scenario": name, "no_outcome": <the end of its stderr>}``."""
    env = {k: v for k, v in os.environ.items() if k != "ANTHROPIC_API_KEY"}
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
    return outcome


def run_children(
    names: Sequence[str], home_of: Callable[[str], Path], workers: int = 4
) -> dict[str, dict[str, Any]]:
    """The outcomes of `names`, run `workers` at a time, each with its own home folder."""
    with ThreadPoolExecutor(max_workers=workers) as pool:
        found = pool.map(lambda n: run_child(n, home_of(n)), names)
        return dict(zip(names, found, strict=True))
