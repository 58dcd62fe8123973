"""The fault scenarios through the model path: a scripted model calls the probes and quotes
their evidence; the diagnosis must still name the culprit (the probes' output carries it)."""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

CHILD = textwrap.dedent("""
    import json, os, sys
    sys.path.insert(0, sys.argv[2])
    from _model_scripts import build
    from lensbook.scenarios.runner import run_scenario
    outcome = run_scenario(sys.argv[1], client=build(sys.argv[1]))
    sys.stdout.write(json.dumps(outcome.to_dict()) + "\\n")
    sys.stdout.flush()
    os._exit(0)
""")


CULPRITS = {
    "cache_leak": [r"_leaky_cache\.py:\d+"],
    "deadlock": ["worker-a", "worker-b", "lock_a", "lock_b"],
    "fd_leak": [r"leak-\*\.log"],
}


@pytest.mark.slow
@pytest.mark.parametrize("name", sorted(CULPRITS))
def test_scripted_model_diagnoses_from_probe_evidence(name: str) -> None:
    env = {k: v for k, v in os.environ.items() if k != "ANTHROPIC_API_KEY"}
    out = subprocess.run(
        [sys.executable, "-c", CHILD, name, str(Path(__file__).parent)],
        capture_output=True,
        text=True,
        timeout=180,
        env=env,
    )
    assert out.returncode == 0, out.stderr[-3000:]
    outcome = json.loads(out.stdout.strip().splitlines()[-1])
    assert outcome["client"] == f"scripted model for {name}"
    assert outcome["probe_calls"] >= 1
    (note,) = outcome["notifications"]
    for pattern in CULPRITS[name]:
        assert re.search(pattern, note["observation"]), (pattern, note["observation"][:1500])
