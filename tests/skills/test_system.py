"""The system skill: host CPU, memory, disks, network, top processes, and conservative rules."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from collections.abc import Iterator
from typing import Any

import psutil
import pytest

from lensbook.skills import resolve_skill
from lensbook.skills.base import render_output
from lensbook.skills.rules import Evidence, Finding
from lensbook.skills.system import (
    DiskFull,
    SwapActivity,
    SystemSkill,
)
from lensbook.skills.untrusted import undelimit

pytestmark = pytest.mark.skipif(not sys.platform.startswith("linux"), reason="reads /proc")

SPIN = "import time\nend = time.monotonic() + {s}\nwhile time.monotonic() < end: pass\n"
HOLD = "import sys, time\nx = b'x' * ({mb} * 2**20)\nsys.stdout.write('ready\\n')\n"
HOLD += "sys.stdout.flush()\ntime.sleep(30)\n"


def call(skill: SystemSkill, name: str, **kwargs: Any) -> Any:
    tool = {t.name: t for t in skill.probes()}[name]
    return undelimit(json.loads(render_output(tool.fn(**tool.validate(kwargs)), tool.max_chars)))


@pytest.fixture
def spinners() -> Iterator[list[subprocess.Popen[bytes]]]:
    procs: list[subprocess.Popen[bytes]] = []
    yield procs
    for p in procs:
        p.kill()
        p.wait()


def spin(procs: list[subprocess.Popen[bytes]], seconds: float, n: int = 1) -> None:
    for _ in range(n):
        procs.append(subprocess.Popen([sys.executable, "-c", SPIN.format(s=seconds)]))


# -- snapshot ----------------------------------------------------------------------------------


def test_snapshot_numbers_match_the_host() -> None:
    skill = SystemSkill()
    time.sleep(0.3)
    snap = skill.snapshot()
    assert all(isinstance(v, (int, float)) for v in snap.values())
    assert snap["cpu_count"] == os.cpu_count()
    assert snap["cpu_window_s"] >= 0.3
    assert 0 <= snap["cpu_percent"] <= 100
    vm = psutil.virtual_memory()
    assert abs(snap["mem_total_mb"] - vm.total / 2**20) < 1
    assert abs(snap["mem_available_percent"] - 100 * vm.available / vm.total) < 5
    assert snap["load1_per_core"] == pytest.approx(snap["load1"] / snap["cpu_count"], abs=0.01)
    assert snap["procs_running"] >= 1
    assert 0 <= snap["disk_root_percent"] <= 100
    swap = psutil.swap_memory()
    assert abs(snap["swap_total_mb"] - swap.total / 2**20) < 1


def test_cpu_percent_is_measured_from_the_previous_snapshot(
    spinners: list[subprocess.Popen[bytes]],
) -> None:
    skill = SystemSkill()
    skill.snapshot()
    spin(spinners, 1.5, n=os.cpu_count() or 1)
    time.sleep(1.0)
    snap = skill.snapshot()
    assert snap["cpu_window_s"] >= 1.0
    assert snap["cpu_percent"] > 40  # every core spun for most of the window
    quick = skill.snapshot()  # a window too short to judge keeps the baseline
    assert quick["cpu_window_s"] < 0.25


def kept(path: str) -> list[int]:
    """This process's descriptors open on `path`."""
    fds = []
    for name in os.listdir("/proc/self/fd"):
        try:
            if os.readlink(f"/proc/self/fd/{name}") == path:
                fds.append(int(name))
        except OSError:
            continue
    return fds


def test_snapshot_keeps_proc_files_open_and_close_releases_them() -> None:
    before = set(kept("/proc/stat"))
    skill = SystemSkill()
    skill.snapshot()
    mine = set(kept("/proc/stat")) - before
    assert len(mine) == 1
    skill.snapshot()
    assert set(kept("/proc/stat")) - before == mine  # re-read, not reopened
    skill.close()
    assert set(kept("/proc/stat")) - before == set()
    assert skill.snapshot()["mem_total_mb"] > 0  # reopens on demand
    assert len(set(kept("/proc/stat")) - before) == 1
    del skill  # a dropped skill does not leak its descriptors
    assert set(kept("/proc/stat")) - before == set()


def test_snapshot_survives_its_descriptor_being_closed_and_reused(tmp_path: Any) -> None:
    before = set(kept("/proc/stat"))
    skill = SystemSkill()
    skill.snapshot()
    [fd] = set(kept("/proc/stat")) - before
    os.close(fd)  # as a careless library closing descriptors would
    (tmp_path / "other").write_text("not /proc/stat\n")
    reused = os.open(tmp_path / "other", os.O_RDONLY)
    try:
        assert reused == fd  # the lowest free number is given out again
        snap = skill.snapshot()
        assert snap["cpu_count"] == os.cpu_count() and snap["procs_running"] >= 1
        assert os.pread(reused, 100, 0) == b"not /proc/stat\n"  # left alone
    finally:
        os.close(reused)
        skill.close()


# -- probes ------------------------------------------------------------------------------------


def test_cpu_probe_per_core(spinners: list[subprocess.Popen[bytes]]) -> None:
    skill = SystemSkill()
    spin(spinners, 2.0)
    result = call(skill, "system_cpu", interval=0.5)
    assert result["window_s"] >= 0.5
    assert len(result["per_core_busy"]) == os.cpu_count()
    assert max(result["per_core_busy"]) > 30
    assert set(result["percent"]) >= {"busy", "user", "system", "iowait", "steal"}
    assert result["ctx_switches_per_s"] > 0
    assert len(result["load"]) == 3


def test_memory_probe() -> None:
    result = call(SystemSkill(), "system_memory")
    assert result["memory_mb"]["total"] > result["memory_mb"]["available"] > 0
    assert 0 < result["available_percent"] <= 100
    assert "percent" in result["swap_mb"]
    cgroup = result["cgroup"]
    assert cgroup is None or cgroup["limit_mb"] > 0
    again = call(SystemSkill(), "system_memory")
    assert "swap_mb_per_s" not in again  # a new skill has no previous reading
    skill = SystemSkill()
    call(skill, "system_memory")
    assert call(skill, "system_memory")["swap_mb_per_s"]["in"] >= 0


def test_disks_and_network() -> None:
    skill = SystemSkill()
    disks = call(skill, "system_disks")
    mounts = {f["mount"] for f in disks["filesystems"]}
    assert "/" in mounts or disks["filesystems"]
    assert disks["io_window_s"] >= 0.1
    net = call(skill, "system_network")
    assert "lo" in {n["nic"] for n in net["interfaces"]}
    assert isinstance(net["tcp_states"], dict)


def test_top_processes_primes_cpu_and_finds_the_culprits(
    spinners: list[subprocess.Popen[bytes]],
) -> None:
    spin(spinners, 6.0)
    holder = subprocess.Popen([sys.executable, "-c", HOLD.format(mb=400)], stdout=subprocess.PIPE)
    spinners.append(holder)
    assert holder.stdout is not None and holder.stdout.readline() == b"ready\n"
    skill = SystemSkill()
    first = call(skill, "system_top_processes", limit=15, interval=0.5)
    assert first["window_s"] >= 0.5  # primed, then measured
    by_cpu = {p["pid"]: p for p in first["by_cpu"]}
    assert spinners[0].pid in by_cpu and by_cpu[spinners[0].pid]["cpu_percent"] > 20
    by_mem = {p["pid"]: p for p in first["by_memory"]}
    assert holder.pid in by_mem and by_mem[holder.pid]["rss_mb"] >= 390
    assert first["processes"] == sum(first["by_status"].values())
    time.sleep(0.2)
    second = call(skill, "system_top_processes", limit=3)
    assert second["window_s"] < first["window_s"] + 1  # measured since the first call
    assert len(second["by_memory"]) == 3


def test_registered_and_probes_state_their_cost() -> None:
    skill = resolve_skill("system")
    assert isinstance(skill, SystemSkill)
    names = {t.name for t in skill.probes()}
    assert names == {
        "system_cpu",
        "system_memory",
        "system_disks",
        "system_network",
        "system_top_processes",
    }
    for tool in skill.probes():
        assert "Cost:" in (tool.fn.__doc__ or ""), tool.name
    assert "baseline" in (SystemSkill.top_processes.__doc__ or "")


# -- rules -------------------------------------------------------------------------------------


def host(**values: float) -> dict[str, Any]:
    """A snapshot of an idle 2-core host with 16 GB, `values` overriding."""
    base: dict[str, Any] = {
        "cpu_count": 2,
        "cpu_percent": 3.0,
        "cpu_iowait_percent": 0.0,
        "cpu_steal_percent": 0.0,
        "cpu_window_s": 1.5,
        "load1": 0.1,
        "load5": 0.1,
        "load15": 0.1,
        "load1_per_core": 0.05,
        "procs_running": 1,
        "procs_blocked": 0,
        "mem_total_mb": 16000.0,
        "mem_available_mb": 12000.0,
        "mem_available_percent": 75.0,
        "swap_total_mb": 2048.0,
        "swap_used_mb": 0.0,
        "swap_percent": 0.0,
        "swap_in_mb": 10.0,
        "swap_out_mb": 20.0,
        "disk_root_percent": 40.0,
        "disk_root_free_gb": 60.0,
    }
    base.update(values)
    return base


def evidence(*snaps: dict[str, Any], gap: float = 1.5) -> Evidence:
    return Evidence(
        context={"reason": "routine check"},
        snapshots=list(snaps),
        snapshot_ids=[f"s{i}" for i in range(len(snaps))],
        snapshot_times=[1000.0 + gap * i for i in range(len(snaps))],
    )


TOP = {
    "window_s": 0.5,
    "processes": 120,
    "by_status": {"running": 6, "sleeping": 114},
    "by_cpu": [
        {"pid": 4242, "name": "ffmpeg", "cpu_percent": 180.0, "rss_mb": 300.0},
        {"pid": 77, "name": "python", "cpu_percent": 95.0, "rss_mb": 900.0, "self": True},
    ],
    "by_memory": [
        {"pid": 77, "name": "python", "cpu_percent": 95.0, "rss_mb": 14100.0, "self": True},
        {"pid": 4242, "name": "ffmpeg", "cpu_percent": 180.0, "rss_mb": 300.0},
    ],
}


def judge_all(ev: Evidence, results: dict[str, Any] | None = None) -> list[Finding]:
    """Wanted probes answered from `results` (or left unanswered), then every rule's findings."""
    skill = SystemSkill()
    for rule in skill.rules():
        for c in rule.wants(ev):
            if results and c.name in results and not ev.called(c):
                ev.results.setdefault(c.name, []).append((c.arguments, results[c.name]))
    return [f for rule in skill.rules() for f in rule.judge(ev)]


def alarms(findings: list[Finding]) -> list[Finding]:
    return [f for f in findings if f.severity in ("warning", "critical")]


def test_idle_host_raises_nothing() -> None:
    assert judge_all(evidence(host(), host())) == []


def test_busy_two_core_ci_machine_is_no_alarm() -> None:
    # both cores pinned, load a little above the core count: busy, not broken
    busy = host(cpu_percent=100.0, load1=2.6, load5=2.2, load15=1.9, load1_per_core=1.3)
    findings = judge_all(evidence(busy, busy), {"system_top_processes": TOP, "system_cpu": {}})
    assert alarms(findings) == []
    assert [f.anomaly_type for f in findings] == ["host_cpu_busy"]
    assert "ffmpeg (pid 4242) 180.0% CPU" in findings[0].observation


def test_a_new_cpu_burst_is_noted_before_the_load_average_catches_up() -> None:
    burst = host(cpu_percent=100.0, load1=0.4, load1_per_core=0.2)
    burst["procs_running"] = 4
    findings = judge_all(evidence(burst, burst))
    assert [(f.anomaly_type, f.severity) for f in findings] == [("host_cpu_busy", "info")]
    assert "4 runnable" in findings[0].observation


def test_load_near_core_count_alone_is_nothing() -> None:
    loaded = host(cpu_percent=60.0, load1=2.1, load1_per_core=1.05)
    assert judge_all(evidence(loaded, loaded)) == []


def test_oversubscribed_cpu_is_a_warning_naming_the_top_process() -> None:
    hot = host(cpu_percent=99.5, load1=8.4, load5=7.0, load15=5.0, load1_per_core=4.2)
    hot["procs_running"] = 9
    findings = judge_all(evidence(hot, hot), {"system_top_processes": TOP, "system_cpu": {}})
    assert [(f.anomaly_type, f.severity) for f in findings] == [("cpu_saturation", "warning")]
    assert "load 8.40/7.00/5.00 on 2 cores (4.20 per core)" in findings[0].observation
    assert "ffmpeg (pid 4242)" in findings[0].observation


def test_short_cpu_windows_are_not_judged() -> None:
    noisy = host(cpu_percent=100.0, cpu_window_s=0.01, load1=9.0, load1_per_core=4.5)
    assert judge_all(evidence(noisy, noisy)) == []


def test_low_host_memory_is_critical_and_names_the_largest_process() -> None:
    low = host(mem_available_mb=600.0, mem_available_percent=3.75)
    memory = {"pressure": {"some_avg10": 35.0, "full_avg10": 12.0}, "cgroup": None}
    findings = judge_all(evidence(low, low), {"system_top_processes": TOP, "system_memory": memory})
    assert [(f.anomaly_type, f.severity) for f in findings] == [
        ("host_memory_pressure", "critical")
    ]
    assert "600 MB (3.8%)" in findings[0].observation
    assert "python (pid 77, this process) 14100.0 MB RSS" in findings[0].observation
    assert "some 35.0%" in findings[0].context


def test_container_limit_is_judged_over_the_host() -> None:
    memory = {
        "cgroup": {
            "limit_mb": 2048.0,
            "usage_mb": 2040.0,
            "working_set_mb": 1990.0,
            "working_set_percent": 97.2,
        }
    }
    findings = judge_all(evidence(host(), host()), {"system_memory": memory})
    assert [(f.anomaly_type, f.severity) for f in findings] == [
        ("container_memory_pressure", "critical")
    ]
    assert "2048.0 MB" in findings[0].context and "97.2%" in findings[0].observation


def test_swap_activity_between_snapshots() -> None:
    a = host(swap_used_mb=900.0, swap_in_mb=100.0, swap_out_mb=200.0)
    b = host(swap_used_mb=990.0, swap_in_mb=130.0, swap_out_mb=260.0)  # 90 MB in 1.5 s
    findings = judge_all(evidence(a, b))
    assert [(f.anomaly_type, f.severity) for f in findings] == [("swap_activity", "warning")]
    assert "(60.0 MB/s)" in findings[0].observation
    low = host(
        mem_available_percent=4.0, mem_available_mb=640.0, swap_in_mb=130.0, swap_out_mb=260.0
    )
    thrash = judge_all(evidence(a, low))
    assert ("swap_thrashing", "critical") in [(f.anomaly_type, f.severity) for f in thrash]


def test_swap_in_use_but_quiet_is_nothing() -> None:
    parked = host(swap_used_mb=1500.0, swap_percent=73.0)
    assert judge_all(evidence(parked, parked)) == []
    assert list(SwapActivity().judge(evidence(parked))) == []


def test_full_disk() -> None:
    full = host(disk_root_percent=97.5, disk_root_free_gb=1.2)
    disks = {"filesystems": [{"mount": "/", "percent": 97.5}]}
    findings = judge_all(evidence(full, full), {"system_disks": disks})
    assert [(f.anomaly_type, f.severity) for f in findings] == [("disk_full", "warning")]
    assert "97.5% full (1.20 GB free)" in findings[0].observation
    assert list(DiskFull().wants(evidence(host()))) == []


def test_real_host_findings_match_real_conditions() -> None:
    skill = SystemSkill()
    time.sleep(0.6)
    a = skill.snapshot()
    time.sleep(0.6)
    b = skill.snapshot()
    ev = evidence(a, b, gap=0.6)
    for rule in skill.rules():
        for c in rule.wants(ev):
            if not ev.called(c):
                ev.results.setdefault(c.name, []).append((c.arguments, call(skill, c.name)))
    assert "system_memory" in ev.results  # memory (and its cgroup) is always looked at
    for f in (f for rule in skill.rules() for f in rule.judge(ev)):
        # every alarm on this machine must be backed by its own numbers
        if f.anomaly_type == "cpu_saturation":
            assert b["cpu_percent"] >= 95 and b["load1_per_core"] >= 3
        elif f.anomaly_type == "host_memory_pressure":
            assert b["mem_available_percent"] < 10
        elif f.anomaly_type == "disk_full":
            assert b["disk_root_percent"] >= 95
        else:
            assert f.anomaly_type in ("host_cpu_busy", "container_memory_pressure")
