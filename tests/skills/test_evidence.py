"""Evidence's shared readings (`rose`, `moved`) and the MB helpers, on plain and real snapshots."""

from __future__ import annotations

import subprocess
import sys
import time

import psutil

from lensbook.skills._units import MB, mb, memory_mb
from lensbook.skills.external import ExternalProcessSkill
from lensbook.skills.rules import Evidence, ProbeCall


def _evidence(*values: object, key: str = "n") -> Evidence:
    ev = Evidence(context={"reason": ""})
    for i, value in enumerate(values):
        ev.snapshots.append({key: value})
        ev.snapshot_ids.append(f"s{i}")
        ev.snapshot_times.append(100.0 + 2.0 * i)
    return ev


def test_rose_needs_the_floor_and_the_share_of_the_start() -> None:
    assert not _evidence(100, 124).rose("n", 4, 0.25)  # over the floor, under a quarter
    assert _evidence(100, 125).rose("n", 4, 0.25)
    assert not _evidence(1, 4).rose("n", 4, 0.25)  # a quarter and more, under the floor
    assert _evidence(1, 5).rose("n", 4, 0.25)
    assert _evidence(None, 20).rose("n", 20, 0.5) is False  # no start: no delta to speak of
    assert not _evidence(10, 5).rose("n", 0, 0.0)  # a fall is not growth


def test_moved_states_first_latest_and_the_span() -> None:
    assert _evidence(10, 50, 90).moved("n", " MB") == "10 -> 90 MB in 4.0 s"
    assert _evidence(3).moved("n") == "3 -> 3 in 0.0 s"


def test_memory_mb_reads_a_real_memory_info_in_megabytes() -> None:
    mem = psutil.Process().memory_info()
    shown = memory_mb(mem)
    assert shown == {"rss_mb": round(mem.rss / MB, 2), "vms_mb": round(mem.vms / MB, 2)}
    assert shown["rss_mb"] > 1
    assert mb(3 * MB + MB // 2) == 3.5 and mb(MB // 3, 1) == 0.3


_CHILD = """
import sys
held = []
print(0, flush=True)  # started: the interpreter has closed what it read to start
for line in sys.stdin:
    held += [open(sys.executable, "rb") for _ in range(int(line))]
    print(len(held), flush=True)
"""


def test_another_process_opening_files_is_an_fd_growth_finding() -> None:
    child = subprocess.Popen(
        [sys.executable, "-c", _CHILD], stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True
    )
    assert child.stdin is not None and child.stdout is not None
    try:
        assert child.stdout.readline().strip() == "0"
        skill = ExternalProcessSkill(child.pid)
        ev = Evidence(context={"reason": ""})

        def take() -> None:
            ev.snapshots.append(skill.snapshot())
            ev.snapshot_ids.append(f"s{len(ev.snapshot_ids)}")
            ev.snapshot_times.append(time.time())

        take()
        child.stdin.write("40\n")
        child.stdin.flush()
        assert child.stdout.readline().strip() == "40"  # the files are open now
        take()
        first, latest = ev.snapshots[0], ev.snapshots[-1]
        assert latest["rss_mb"] > 0 and latest["vms_mb"] >= latest["rss_mb"]
        assert latest["open_fds"] - first["open_fds"] == 40
        found = [f for f in skill.rules()[0].judge(ev) if f.anomaly_type == "fd_growth"]
        assert len(found) == 1
        assert found[0].context.startswith(
            f"open fds {first['open_fds']} -> {latest['open_fds']} in "
        )
        assert found[0].observation.startswith("+40 file descriptors")
    finally:
        child.stdin.close()
        child.wait(10)


def test_a_count_growth_rule_asks_for_its_details_once_the_count_rose() -> None:
    from lensbook.skills.aio import TaskGrowth
    from lensbook.skills.threads import ThreadGrowth

    rule = ThreadGrowth()
    assert rule.wants(_evidence(4, key="app_threads")) == []  # one snapshot: no trend yet
    assert rule.wants(_evidence(4, 7, key="app_threads")) == []  # under the floor of 4
    asked = rule.wants(_evidence(4, 8, key="app_threads"))
    assert asked == [ProbeCall("threads_groups", {"limit": 3})]
    asked[0].arguments["limit"] = 99  # a caller's change stays with that call
    assert rule.wants(_evidence(4, 8, key="app_threads"))[0].arguments == {"limit": 3}
    assert TaskGrowth().wants(_evidence(100, 149, key="user_tasks")) == []  # under half
    assert [c.name for c in TaskGrowth().wants(_evidence(100, 150, key="user_tasks"))] == [
        "asyncio_tasks"
    ]
