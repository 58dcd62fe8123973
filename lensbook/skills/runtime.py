"""The `runtime` skill: the interpreter at a glance, the first skill a run usually touches."""

from __future__ import annotations

import gc
import os
import platform
import sys
import threading
import time
import tracemalloc
from typing import Any

import psutil

from lensbook.skills.base import Skill, probe
from lensbook.skills.history_rules import ThreadGrowthByKind
from lensbook.skills.rules import Evidence, Finding, ProbeCall, Rule
from lensbook.skills.untrusted import from_process
from lensbook.types import Severity

__all__ = ["RuntimeSkill"]


class RuntimeSkill(Skill):
    id = "runtime"
    title = "Python runtime"
    description = "Interpreter overview: memory, CPU, threads, GC, fds, tracemalloc, uptime"
    system_prompt = (
        "You are the runtime operator of a live Python process. You see the interpreter at a "
        "glance: resident memory, CPU, threads, garbage collector counters, open file "
        "descriptors and tracemalloc. Compare snapshots over time before you conclude; growth "
        "between snapshots matters more than any single value."
    )

    def __init__(self) -> None:
        self._process = psutil.Process()
        self._process.cpu_percent(None)  # prime: the first call has no baseline

    def snapshot(self) -> dict[str, Any]:
        """Cost: ~50 µs (one batched psutil read, gc counters); never walks the heap."""
        proc = self._process
        with proc.oneshot():
            mem = proc.memory_info()
            cpu = proc.cpu_percent(None)
            threads = proc.num_threads()
            fds = proc.num_fds() if hasattr(proc, "num_fds") else -1
            created = proc.create_time()
        counts = gc.get_count()
        return {
            "rss_mb": round(mem.rss / 2**20, 2),
            "vms_mb": round(mem.vms / 2**20, 2),
            "cpu_percent": cpu,
            "threads": threads,
            "python_threads": threading.active_count(),
            "open_fds": fds,
            "gc_gen0": counts[0],
            "gc_gen1": counts[1],
            "gc_gen2": counts[2],
            "gc_collections": sum(s["collections"] for s in gc.get_stats()),
            "gc_uncollectable": sum(s["uncollectable"] for s in gc.get_stats()),
            "tracemalloc": tracemalloc.is_tracing(),
            "uptime_s": round(time.time() - created, 1),
        }

    def rules(self) -> list[Rule]:
        return [
            _MemoryGrowth(),
            _FdPressure(),
            _ThreadCount(),
            _CpuSaturation(),
            _Uncollectable(),
            ThreadGrowthByKind(),  # the flight recorder's answer to "which threads, from where"
        ]

    @probe
    def interpreter(self) -> dict[str, Any]:
        """Python version, implementation, platform, pid and executable.

        Cost: microseconds; reads only interpreter constants.
        """
        return {
            "version": platform.python_version(),
            "implementation": platform.python_implementation(),
            "platform": platform.platform(),
            "pid": os.getpid(),
            "executable": from_process(sys.executable),
            "argv0": from_process((sys.argv or [""])[0]),
            "gil_enabled": getattr(sys, "_is_gil_enabled", lambda: True)(),
        }

    @probe
    def gc_overview(self) -> dict[str, Any]:
        """GC thresholds, per-generation counts and stats, and whether GC is enabled.

        Cost: ~1 µs; no collection is forced.
        """
        return {
            "enabled": gc.isenabled(),
            "thresholds": gc.get_threshold(),
            "counts": gc.get_count(),
            "stats": gc.get_stats(),
            "garbage": len(gc.garbage),
            "frozen": gc.get_freeze_count(),
        }

    @probe
    def object_estimate(self) -> dict[str, Any]:
        """A cheap estimate of live GC-tracked objects: the young generation plus counters.

        Cost: O(generation 0) only (microseconds); the full count is the memory skill's census.
        """
        young = len(gc.get_objects(generation=0))
        return {
            "gen0_tracked": young,
            "allocations_since_gen0": gc.get_count()[0],
            "note": "a full census walks the heap; use the memory skill for it",
        }

    @probe
    def memory_info(self) -> dict[str, Any]:
        """RSS, VMS, USS (where the OS gives it) and the host's available memory, in MB.

        Cost: ~0.2 ms (memory_full_info reads /proc/self/smaps_rollup).
        """
        proc = self._process
        try:
            full = proc.memory_full_info()
            uss = round(getattr(full, "uss", 0) / 2**20, 2)
        except (psutil.AccessDenied, OSError):
            uss = None
        mem = proc.memory_info()
        host = psutil.virtual_memory()
        return {
            "rss_mb": round(mem.rss / 2**20, 2),
            "vms_mb": round(mem.vms / 2**20, 2),
            "uss_mb": uss,
            "host_available_mb": round(host.available / 2**20, 1),
            "host_percent": host.percent,
        }


class _MemoryGrowth(Rule):
    """RSS that grows between two snapshots: points at the memory skill."""

    name = "runtime_memory_growth"
    snapshots_needed = 2
    gap = 1.5

    def wants(self, ev: Evidence) -> list[ProbeCall]:
        if len(ev.snapshots) >= 2 and ev.delta("rss_mb") > 10:
            return [ProbeCall("runtime_memory_info")]
        return []

    def judge(self, ev: Evidence) -> list[Finding]:
        grew, rate = ev.delta("rss_mb"), ev.rate("rss_mb") or 0.0
        start = ev.first("rss_mb", 0.0) or 0.0
        if grew < 20 or rate < 2 or grew < 0.1 * start:
            return []
        severity: Severity = "critical" if rate > 50 else "warning"
        info = ev.result("runtime_memory_info") or {}
        return [
            Finding(
                anomaly_type="memory_growth",
                severity=severity,
                context=f"RSS went from {start:.1f} MB to {ev.latest('rss_mb'):.1f} MB in "
                f"{ev.elapsed():.1f} s; host has {info.get('host_available_mb', '?')} MB available",
                observation=f"resident memory grows by {rate:.1f} MB/s (+{grew:.1f} MB)",
                hypothesis="something allocates without releasing; the memory skill "
                "(memory_top_growth) names the allocation site",
            )
        ]


class _FdPressure(Rule):
    name = "runtime_fd_pressure"

    def judge(self, ev: Evidence) -> list[Finding]:
        fds = ev.latest("open_fds", -1)
        if not isinstance(fds, (int, float)) or fds < 0:
            return []
        try:
            import resource

            soft = resource.getrlimit(resource.RLIMIT_NOFILE)[0]
        except (ImportError, OSError, ValueError):
            return []
        grew = ev.delta("open_fds")
        if soft > 0 and fds > 0.8 * soft:
            return [
                Finding(
                    anomaly_type="fd_exhaustion",
                    severity="critical",
                    context=f"{fds:.0f} file descriptors open of a soft limit of {soft}",
                    observation=f"fd usage at {100 * fds / soft:.0f}% of RLIMIT_NOFILE"
                    + (f", +{grew:.0f} since the first snapshot" if grew else ""),
                    hypothesis="files or sockets are opened and not closed; the process skill "
                    "groups them by path",
                )
            ]
        if grew >= 50:
            return [
                Finding(
                    anomaly_type="fd_growth",
                    severity="warning",
                    context=f"open fds went from {ev.first('open_fds')} to {fds} in "
                    f"{ev.elapsed():.1f} s",
                    observation=f"+{grew:.0f} file descriptors between snapshots",
                    hypothesis="a descriptor leak; the process skill groups open files by path",
                )
            ]
        return []


class _ThreadCount(Rule):
    name = "runtime_thread_count"

    def judge(self, ev: Evidence) -> list[Finding]:
        threads = ev.latest("python_threads", 0) or 0
        if threads < 200:
            return []
        return [
            Finding(
                anomaly_type="many_threads",
                severity="warning",
                context=f"{threads} Python threads alive ({ev.latest('threads')} OS threads)",
                observation=f"thread count {threads}, change {ev.delta('python_threads'):+.0f} "
                "between snapshots",
                hypothesis="threads started per task and never joined; the threads skill "
                "lists them",
            )
        ]


class _CpuSaturation(Rule):
    name = "runtime_cpu"

    def judge(self, ev: Evidence) -> list[Finding]:
        if len(ev.snapshots) < 2:
            return []
        values = [s.get("cpu_percent", 0) or 0 for s in ev.snapshots[1:]]
        if min(values) < 90:
            return []
        return [
            Finding(
                anomaly_type="cpu_busy",
                severity="info",
                context=f"process CPU {', '.join(f'{v:.0f}%' for v in values)} across snapshots",
                observation="the process keeps at least one core busy",
                hypothesis="a hot loop or heavy work; the threads skill samples stacks to name it",
            )
        ]


class _Uncollectable(Rule):
    name = "runtime_uncollectable"

    def judge(self, ev: Evidence) -> list[Finding]:
        n = ev.latest("gc_uncollectable", 0) or 0
        if n <= 0:
            return []
        return [
            Finding(
                anomaly_type="gc_uncollectable",
                severity="info",
                context=f"the collector reported {n} uncollectable object(s)",
                observation=f"gc_uncollectable={n}",
                hypothesis="objects in gc.garbage; the gc skill shows their types",
            )
        ]
