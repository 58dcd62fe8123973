"""The kernel skill against a real IPython shell (and, outside IPython, a plain interpreter)."""

from __future__ import annotations

import contextlib
import io
import json
import math
import subprocess
import sys
import textwrap
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import psutil
import pytest

from lensbook.skills.kernel import KernelSkill, deep_size, human_bytes
from lensbook.skills.redact import REDACTED
from lensbook.skills.rules import Evidence
from tests._ipython import ipython_shell
from tests.skills._probes import rendered


@pytest.fixture
def shell(tmp_path: Path) -> Iterator[Any]:
    """A real InteractiveShell with in-memory history (the process's singleton)."""
    with ipython_shell(tmp_path) as sh:
        yield sh


@pytest.fixture
def skill() -> Iterator[KernelSkill]:
    sk = KernelSkill()
    yield sk
    sk.close()


def run(sh: Any, code: str) -> Any:
    """Run a cell as a user would, keeping the displayhook's printing out of the test output."""
    with contextlib.redirect_stdout(io.StringIO()):
        return sh.run_cell(code, store_history=True)


def test_outside_ipython_reports_no_kernel_and_never_imports_ipython() -> None:
    code = textwrap.dedent(
        """
        import json, sys
        from lensbook.skills.kernel import KernelSkill
        payload = list(range(50_000))
        sk = KernelSkill()
        out = {
            "snapshot": sk.snapshot(),
            "state": sk.state(),
            "cache": sk.output_cache(),
            "variables": sk.variables(),
            "ipython_imported": "IPython" in sys.modules,
        }
        print(json.dumps(out, default=str))
        """
    )
    proc = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, timeout=60, check=True
    )
    out = json.loads(proc.stdout)
    assert out["snapshot"]["in_ipython"] is False
    assert out["state"]["kernel"] == "no kernel"
    assert out["cache"]["kernel"] == "no kernel"
    assert out["variables"]["namespace"] == "__main__"
    names = [row["name"] for row in out["variables"]["top"]]
    assert names[0] == "payload"
    assert out["ipython_imported"] is False


def test_variables_ranked_by_deep_size_without_values(shell: Any, skill: KernelSkill) -> None:
    run(shell, "import numpy as np, pandas as pd")
    run(
        shell,
        "frame = pd.DataFrame({'n': range(20_000),\n"
        "                      's': [f'customer-{i}' for i in range(20_000)]})\n"
        "matrix = np.zeros((300, 300))\n"
        "words = ['lorem ipsum dolor sit amet'] * 10 + [str(i) * 20 for i in range(5_000)]\n"
        "same = words\n"
        "note = 'a short note for the test'\n"
        "def helper():\n    return 1\n",
    )
    result = rendered(skill.variables(limit=10))
    rows = {r["name"]: r for r in result["top"]}
    # modules and functions are not data
    assert "np" not in rows and "helper" not in rows
    frame = shell.user_ns["frame"]
    assert rows["frame"]["bytes"] == int(frame.memory_usage(deep=True, index=True).sum())
    assert rows["frame"]["bytes"] > int(frame.memory_usage(deep=False).sum())
    assert rows["frame"]["shape"] == [20_000, 2]
    assert rows["matrix"]["bytes"] == 300 * 300 * 8
    assert rows["matrix"]["dtype"] == "float64"
    assert rows["words"]["same_object_as"] == ["same"]
    assert rows["words"]["len"] == 5_010
    ranked = [r["name"] for r in result["top"]]
    assert ranked.index("frame") < ranked.index("matrix") < ranked.index("note")
    text = json.dumps(result)
    assert "customer-1" not in text and "a short note" not in text and "lorem" not in text


def test_variables_of_a_class_with_a_recording_metaclass_run_none_of_its_code(
    shell: Any, skill: KernelSkill
) -> None:
    run(
        shell,
        "asked = []\n"
        "class Meta(type):\n"
        "    def __getattribute__(cls, name):\n"
        "        asked.append(name)\n"
        "        return type.__getattribute__(cls, name)\n"
        "class Record(metaclass=Meta):\n"
        "    __slots__ = ('payload',)\n"
        "    def __init__(self):\n"
        "        self.payload = bytearray(50_000)\n"
        "records = [Record() for _ in range(20)]\n"
        "one = Record()\n"
        "asked.clear()\n",
    )
    result = rendered(skill.variables(limit=10))
    assert shell.user_ns["asked"] == []
    rows = {r["name"]: r for r in result["top"]}
    assert rows["one"]["bytes"] >= 50_000 and rows["records"]["bytes"] >= 20 * 50_000


def test_share_values_previews_but_never_secret_names(shell: Any, skill: KernelSkill) -> None:
    run(shell, "greeting = 'hello there'\ndb_password = 'correct-horse-battery'")
    skill.share_values = True
    rows = {r["name"]: r for r in rendered(skill.variables())["top"]}
    assert rows["greeting"]["value"] == "'hello there'"
    assert rows["db_password"]["value"] == REDACTED


def test_output_cache_names_what_only_the_cache_keeps_alive(shell: Any, skill: KernelSkill) -> None:
    run(shell, "import pandas as pd, numpy as np")
    run(shell, "big = pd.DataFrame(np.ones((100_000, 8)))")
    shown = shell.execution_count
    run(shell, "big")  # displayed: Out[shown] and _shown now hold it
    run(shell, "del big")
    run(shell, "kept = pd.Series(range(1000)); kept")  # displayed and still named
    run(shell, "holder = []")
    inner = shell.execution_count
    run(shell, "np.arange(5000)")
    run(shell, "holder.append(_); 1")  # the array is also inside a list now
    for _ in range(3):
        run(shell, "'x'")  # push the frame out of _, __ and ___

    result = rendered(skill.output_cache())
    rows = {r["name"]: r for r in result["top"]}
    frame_row = rows[f"Out[{shown}]"]
    assert frame_row["only_cache"] is True
    assert frame_row["type"] == "pandas.DataFrame"
    assert frame_row["shape"] == [100_000, 8]
    assert frame_row["bytes"] == int(shell.user_ns["Out"][shown].memory_usage(deep=True).sum())
    assert f"_{shown}" in frame_row["cache_names"]
    assert frame_row["user_names"] == []
    assert result["top"][0]["name"] == f"Out[{shown}]"

    kept_row = next(r for r in result["top"] if r["user_names"] == ["kept"])
    assert kept_row["only_cache"] is False

    inner_row = rows[f"Out[{inner}]"]
    assert inner_row["only_cache"] is False
    assert inner_row["other_references"] == 1

    assert result["held_only_by_cache_bytes"] >= frame_row["bytes"]


def test_variable_details_for_an_out_entry(shell: Any, skill: KernelSkill) -> None:
    run(shell, "import pandas as pd")
    count = shell.execution_count
    run(shell, "pd.DataFrame({'id': range(1000), 'label': ['x' * 30] * 1000})")
    info = rendered(skill.variable(f"Out[{count}]"))
    assert info["type"] == "pandas.DataFrame"
    assert info["columns"] == 2
    assert info["largest_columns"][0]["column"] == "label"
    assert f"_{count}" in info["names"]
    with pytest.raises(ValueError, match="no variable"):
        skill.variable("does_not_exist")


def test_cell_clock_times_cells_and_sees_the_running_one(shell: Any, skill: KernelSkill) -> None:
    skill.snapshot()  # the clock is registered on first use
    run(shell, "x = 1")
    run(shell, "1 / 0")
    recent = skill.state()["recent_cells"]
    assert [c["ok"] for c in recent[-2:]] == [True, False]
    assert recent[-1]["error"] == "ZeroDivisionError"

    gate = threading.Event()
    shell.user_ns["gate"] = gate
    count = shell.execution_count
    worker = threading.Thread(target=run, args=(shell, "gate.wait(30)\nfinished = True"))
    worker.start()
    try:
        for _ in range(500):
            if skill.snapshot()["cell_running"]:
                break
            time.sleep(0.01)
        # the clock knows the cell's thread, so a probe from another thread finds its frames
        state = skill.state()
        cell = state["running_cell"]
        assert cell["cell"] == count
        assert cell["first_line"] == "gate.wait(30)"
        assert cell["is_lensbook"] is False
        assert any("in wait" in w for w in cell["where"])
    finally:
        gate.set()
        worker.join(10)
    assert skill.snapshot()["cell_running"] is False
    assert skill.state()["recent_cells"][-1]["cell"] == count


def test_close_removes_the_cell_clock(shell: Any, skill: KernelSkill) -> None:
    skill.snapshot()
    before = len(shell.events.callbacks["pre_run_cell"])
    skill.close()
    assert len(shell.events.callbacks["pre_run_cell"]) == before - 1
    skill.snapshot()
    assert len(shell.events.callbacks["pre_run_cell"]) == before
    skill.snapshot()
    assert len(shell.events.callbacks["pre_run_cell"]) == before  # idempotent


def test_deep_size_is_bounded_and_runs_no_user_code() -> None:
    calls: list[str] = []

    class Proxy:
        def __getattr__(self, name: str) -> Any:
            calls.append(name)
            raise AttributeError(name)

    class Slotted:
        __slots__ = ("payload",)

        def __init__(self) -> None:
            self.payload = b"x" * 10_000

    size, approx = deep_size([Proxy(), Slotted()])
    assert calls == []
    assert size > 10_000 and not approx

    many, approx = deep_size(list(range(1_000_000)))
    assert approx is True
    assert 0.5 * 36_000_000 < many < 2 * 36_000_000

    nested: list[Any] = []
    node = nested
    for _ in range(50):
        node.append([])
        node = node[0]
    _, approx = deep_size(nested)
    assert approx is True
    assert human_bytes(160_000_132) == "152.6 MB"


def test_output_cache_rule_names_the_entry(shell: Any, skill: KernelSkill) -> None:
    # the rule weighs what the cache holds against the process's RSS (10%): a test process
    # that earlier tests grew to gigabytes needs a larger frame than a fresh kernel does
    rss = psutil.Process().memory_info().rss
    times = max(1, math.ceil(0.15 * rss / 76_800_000))
    rows = 1_200_000 * times  # 73.2 MB of float64 each time
    run(shell, "import numpy as np, pandas as pd")
    run(shell, f"df = pd.DataFrame(np.zeros(({rows}, 8)))")
    count = shell.execution_count
    run(shell, "df")
    run(shell, "del df")
    for _ in range(3):
        run(shell, "0")
    ev = Evidence(context={"reason": "memory is high"})
    ev.snapshots.append(rendered(skill.snapshot()))
    rules = skill.rules()
    wanted = [call for rule in rules for call in rule.wants(ev)]
    assert [c.name for c in wanted] == ["kernel_output_cache"]
    for call in wanted:
        ev.results[call.name] = [(call.arguments, rendered(skill.output_cache(**call.arguments)))]
    findings = [f for rule in rules for f in rule.judge(ev)]
    assert [f.anomaly_type for f in findings] == ["output_cache_retention"]
    assert findings[0].severity == "warning"
    assert f"Out[{count}]" in findings[0].observation
    # the entry's deep size is its data and little more ("73.2 MB" in a fresh process)
    (lead, *_) = ev.results["kernel_output_cache"][0][1]["top"]
    assert rows * 64 <= lead["bytes"] < rows * 64 + 2**20
    assert lead["size"] in findings[0].observation
    assert times > 1 or "73.2 MB" in findings[0].observation
    assert "pandas.DataFrame" in findings[0].observation


def test_a_quiet_kernel_raises_no_finding(shell: Any, skill: KernelSkill) -> None:
    run(shell, "import pandas as pd\nsmall = pd.DataFrame({'a': range(100)})")
    run(shell, "small")
    run(shell, "del small")
    ev = Evidence(context={"reason": "routine check"})
    ev.snapshots.append(rendered(skill.snapshot()))
    rules = skill.rules()
    for call in [c for rule in rules for c in rule.wants(ev)]:
        probe = {p.name: p for p in skill.probes()}[call.name]
        ev.results[call.name] = [(call.arguments, rendered(probe.fn(**call.arguments)))]
    assert [f for rule in rules for f in rule.judge(ev)] == []


def test_snapshot_is_flat_numbers(shell: Any, skill: KernelSkill) -> None:
    snap = skill.snapshot()
    assert snap["in_ipython"] is True
    assert all(isinstance(v, (int, float, bool)) for v in snap.values())
    assert snap["out_cache_limit"] == shell.displayhook.cache_size
    assert "kernel_variables" in {p.name for p in skill.probes()}


def test_pandas_and_numpy_types_are_named_plainly(shell: Any, skill: KernelSkill) -> None:
    shell.user_ns["series"] = pd.Series(np.arange(10))
    rows = {r["name"]: r for r in rendered(skill.variables())["top"]}
    assert rows["series"]["type"] == "pandas.Series"
    assert rows["series"]["dtype"] == "int64"


class _Compact:
    def __init__(self) -> None:
        self.payload = bytearray(10_000)


def test_sizing_an_object_leaves_it_as_compact_as_it_was() -> None:
    import gc

    from lensbook.skills.kernel import deep_size

    obj = _Compact()
    size, _ = deep_size(obj)
    assert size >= 10_000  # what it holds was walked
    # no dict was made for it (a __dict__ read would: every later access slower)
    assert not any(type(r) is dict and "payload" in r for r in gc.get_referents(obj))
