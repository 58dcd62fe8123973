"""Investigating another local process from outside, with what psutil (and py-spy) can see.

Used by ``lensbook run --pid PID``. Nothing runs inside the target: memory, CPU, threads, file
descriptors and children come from /proc through psutil; Python stacks come from py-spy when it
is installed (``pip install py-spy``; it may need ptrace permission), and the probe says so when
it is not.
"""

from __future__ import annotations

import re
import shutil
import subprocess
from collections import Counter
from typing import Any

import psutil

from lensbook.skills._units import memory_mb
from lensbook.skills.base import Skill, probe
from lensbook.skills.redact import clip
from lensbook.skills.rules import Evidence, Finding, ProbeCall, Rule
from lensbook.skills.untrusted import from_process

__all__ = ["ExternalProcessSkill"]

_NUMBERS = re.compile(r"\d+")


class ExternalProcessSkill(Skill):
    """A skill bound to one other process, seen from outside."""

    id = "pid"
    title = "External process"
    description = "Another local process seen from outside: memory, CPU, threads, fds, stacks"
    system_prompt = (
        "You investigate another local process from outside: you see its memory, CPU, threads, "
        "open files, children and, where py-spy is available, its Python stacks. You cannot "
        "run code inside it. Compare snapshots over time before you conclude."
    )

    def __init__(self, pid: int) -> None:
        self.pid = pid
        self.proc = psutil.Process(pid)
        self.proc.cpu_percent(None)  # prime the baseline

    def snapshot(self) -> dict[str, Any]:
        """Cost: one batched psutil read of the target (~0.1 ms)."""
        p = self.proc
        with p.oneshot():
            mem = p.memory_info()
            return {
                "pid": self.pid,
                **memory_mb(mem),
                "cpu_percent": p.cpu_percent(None),
                "threads": p.num_threads(),
                "open_fds": _safe(p.num_fds, -1),
                "children": len(p.children()),
                "status": p.status(),
            }

    def rules(self) -> list[Rule]:
        return [_Growth()]

    @probe
    def overview(self) -> dict[str, Any]:
        """Name, status, start time, user, memory, CPU times and context switches.

        The command line is shown only when the user opted in (`share_command_lines` or
        ``$LENSBOOK_SHARE_COMMAND_LINES=1``).

        Cost: a few /proc reads (<1 ms).
        """
        p = self.proc
        with p.oneshot():
            shown = self.command_line(_safe(p.cmdline, []), 300)
            return {
                "name": from_process(_safe(p.name, "?")),
                **({"cmdline": shown} if shown is not None else {}),
                "status": p.status(),
                "create_time": p.create_time(),
                "username": _safe(p.username, "?"),
                "memory": p.memory_info()._asdict(),
                "cpu_times": p.cpu_times()._asdict(),
                "ctx_switches": p.num_ctx_switches()._asdict(),
            }

    @probe
    def open_files(self, top: int = 10) -> dict[str, Any]:
        """Open files grouped by path pattern (digits replaced by '*'), largest groups first.

        Args:
            top: how many groups to return.
        Cost: lists /proc/PID/fd (~31 ms at 2,000 fds).
        """
        files = _safe(self.proc.open_files, [])
        groups = Counter(_NUMBERS.sub("*", f.path) for f in files)
        return {"total": len(files), "groups": groups.most_common(max(1, top))}

    @probe
    def threads(self, top: int = 10) -> list[dict[str, Any]]:
        """OS threads of the target by CPU time (user+system seconds), busiest first.

        Args:
            top: how many threads to return.
        Cost: reads /proc/PID/task (~1 ms at 100 threads).
        """
        rows = [
            {"tid": t.id, "cpu_s": round(t.user_time + t.system_time, 3)}
            for t in self.proc.threads()
        ]
        return sorted(rows, key=lambda r: -float(r["cpu_s"]))[: max(1, top)]

    @probe(budget=15.0)
    def stacks(self) -> dict[str, Any]:
        """Python stacks of every thread of the target, via py-spy dump (if installed).

        Cost: py-spy pauses the target briefly (~10-100 ms); needs ptrace permission.
        """
        exe = shutil.which("py-spy")
        if exe is None:
            return {
                "available": False,
                "note": "py-spy is not installed; stacks of another process need it "
                "(pip install py-spy)",
            }
        out = subprocess.run(
            [exe, "dump", "--pid", str(self.pid)], capture_output=True, text=True, timeout=12
        )
        text = out.stdout if out.returncode == 0 else out.stderr
        return {"available": out.returncode == 0, "dump": from_process(clip(text, 5000))}


def _safe(fn: Any, default: Any) -> Any:
    try:
        return fn()
    except (psutil.AccessDenied, psutil.ZombieProcess, OSError):
        return default


class _Growth(Rule):
    """RSS, fd and thread growth of the target between two snapshots."""

    name = "external_growth"
    snapshots_needed = 2
    gap = 2.0

    def wants(self, ev: Evidence) -> list[ProbeCall]:
        calls = [ProbeCall("pid_overview")]
        if len(ev.snapshots) >= 2:
            if ev.delta("open_fds") >= 20:
                calls.append(ProbeCall("pid_open_files"))
            if (ev.latest("cpu_percent", 0) or 0) > 80:
                calls += [ProbeCall("pid_threads"), ProbeCall("pid_stacks")]
        return calls

    def judge(self, ev: Evidence) -> list[Finding]:
        found: list[Finding] = []
        grew, rate = ev.delta("rss_mb"), ev.rate("rss_mb") or 0.0
        if grew >= 20 and rate >= 2:
            found.append(
                Finding(
                    anomaly_type="memory_growth",
                    severity="warning",
                    context=f"pid {ev.latest('pid')}: RSS {ev.moved('rss_mb', ' MB')}",
                    observation=f"resident memory grows by {rate:.1f} MB/s",
                    hypothesis="a leak; run lensbook inside that process (memory skill) to name "
                    "the allocation site",
                )
            )
        fds = ev.delta("open_fds")
        if fds >= 20:
            files = ev.result("pid_open_files") or {}
            groups = files.get("groups") if isinstance(files, dict) else None
            top = f"; largest path group {groups[0][0]} x{groups[0][1]}" if groups else ""
            found.append(
                Finding(
                    anomaly_type="fd_growth",
                    severity="warning",
                    context=f"open fds {ev.moved('open_fds')}",
                    observation=f"+{fds:.0f} file descriptors{top}",
                    hypothesis="files opened and never closed",
                )
            )
        cpu = [s.get("cpu_percent", 0) or 0 for s in ev.snapshots[1:]]
        if cpu and min(cpu) > 90:
            stacks = ev.result("pid_stacks") or {}
            found.append(
                Finding(
                    anomaly_type="cpu_busy",
                    severity="info",
                    context=f"pid {ev.latest('pid')} CPU {', '.join(f'{c:.0f}%' for c in cpu)}",
                    observation="the process keeps a core busy"
                    + (
                        ""
                        if isinstance(stacks, dict) and stacks.get("available")
                        else " (no py-spy: stacks unavailable)"
                    ),
                )
            )
        return found
