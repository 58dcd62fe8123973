"""The `runtime` skill: the interpreter at a glance, the first skill a run usually touches."""

from __future__ import annotations

import gc
import os
import platform
import sys
import threading
import time
import tracemalloc
from typing import Any, ClassVar

import psutil

from lensbook.sampling import store as metrics_store
from lensbook.skills import _heap
from lensbook.skills._history import error_rate
from lensbook.skills._rss import NATIVE_MAX_SHARE, Growth, python_share, rss_growth
from lensbook.skills._trend import RISING_SHARE, summary
from lensbook.skills._units import mb, memory_mb
from lensbook.skills.base import Skill, probe
from lensbook.skills.history_rules import ThreadGrowthByKind
from lensbook.skills.rules import Evidence, Finding, ProbeCall, Rule, as_dict
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
    # what the coordinator and the watcher know of it (see `Skill`)
    families: ClassVar[dict[str, tuple[str, ...]]] = {
        "memory growth": ("memory_growth",),
        "GC pressure": ("gc_uncollectable",),
        "CPU saturation": ("cpu_busy",),
        "errors": ("error_storm",),
        "descriptor exhaustion": ("fd_growth", "fd_exhaustion"),
    }
    counters = frozenset({"gc_collections"})
    unwatched = frozenset({"uptime_s", "host_available_mb"})

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
            **memory_mb(mem),
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
            _ErrorRate(),
            _CpuSaturation(),
            _Uncollectable(),
            ThreadGrowthByKind(),  # the flight recorder's answer to "which threads, from where"
        ]

    @probe(cheap=True)
    def trends(self, window_s: float = 600.0) -> dict[str, Any]:
        """How RSS and the thread count moved over the metrics sampled before and during this
        run, and the error rate in the flight recorder's history.

        Args:
            window_s: how far back to look, in seconds.

        Cost: microseconds; reads lensbook's metrics store and history, never the heap.
        """
        now = time.time()
        since = now - max(window_s, 1.0)
        rss_now = mb(self._process.memory_info().rss)
        rss = sorted(
            metrics_store.series("runtime", "rss_mb", since)
            + metrics_store.series("memory", "rss_mb", since)
        )
        rss.append((now, rss_now))
        threads = metrics_store.series("runtime", "python_threads", since)
        threads.append((now, float(threading.active_count())))
        errors = error_rate(min(window_s, 120.0), now)
        return {
            "rss": summary(rss),
            "threads": summary(threads),
            "errors": {
                "window_s": round(errors.window_s, 1),
                "count": errors.count,
                "per_s": round(errors.per_s, 2),
                "top": [{"where": w, "count": n} for w, n in errors.top],
                "history_ids": errors.ids,
                "recording": errors.recording,
            },
        }

    @probe(budget=8.0)
    def allocation_sites(self, seconds: float = 1.5, top: int = 3) -> dict[str, Any]:
        """Where the growing memory is allocated, attributed to the first frame in the user's
        code: a short tracemalloc window (6 frames) run by the memory skill.

        The memory skill traces in bursts (a share of the window), so a leak that allocates a
        few large blocks a second can fall between the bursts of a short window: when the
        window found nothing, it stays open a little longer (up to `ALLOCATION_WINDOW_MAX_S`)
        until a burst sees an allocation.

        Args:
            seconds: length of the window (0.5 to 5).
            top: sites to return (at most 10).

        Cost: slows allocation-heavy code for the window's length (tracing, ~x10 at 6
        frames, for the memory skill's traced share of it), then a snapshot and one pass over
        the traced blocks (bounded to ~6 s).
        """
        from lensbook.skills import resolve_skill

        memory = resolve_skill("memory")
        started = memory.trace_start(frames=6, max_seconds=30.0)  # type: ignore[attr-defined]
        if "tracing" not in started:  # no window opened (a retention call still bursts)
            return dict(started)
        opened = time.monotonic()
        time.sleep(min(max(seconds, 0.5), 5.0))
        while time.monotonic() - opened < ALLOCATION_WINDOW_MAX_S:
            seen = memory.allocation_diff(top=1, stop=False)  # type: ignore[attr-defined]
            # found growth worth naming (not a few stray blocks), or traced throughout
            if seen.get("growth_kb", 0) >= ALLOCATION_SEEN_KB or seen.get("bursts") is None:
                break
            time.sleep(0.25)
        diff: dict[str, Any] = memory.allocation_diff(  # type: ignore[attr-defined]
            top=min(max(top, 1), 10)
        )
        diff["started_by"] = started.get("started_by")
        return diff

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
            "enabled": _heap.collector_enabled(),
            "thresholds": gc.get_threshold(),
            "counts": gc.get_count(),
            "stats": gc.get_stats(),
            "garbage": len(gc.garbage),
            "frozen": gc.get_freeze_count(),
        }

    @probe
    def object_estimate(self) -> dict[str, Any]:
        """A cheap estimate of live GC-tracked objects: the young generation plus counters.

        Cost: O(generation 0) only (about a millisecond, after up to 0.25 s behind another heap
        step; it waits for no tracing burst); the full count is the memory skill's census.
        """
        young = len(_heap.objects(generation=0))
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
            uss = mb(getattr(full, "uss", 0))
        except (psutil.AccessDenied, OSError):
            uss = None
        mem = proc.memory_info()
        host = psutil.virtual_memory()
        return {
            **memory_mb(mem),
            "uss_mb": uss,
            "host_available_mb": mb(host.available, 1),
            "host_percent": host.percent,
        }


#: the longest a runtime_allocation_sites window stays open waiting for a burst to see a site
ALLOCATION_WINDOW_MAX_S = 5.0
#: held growth a window must have seen before it closes early (a few stray blocks are not it)
ALLOCATION_SEEN_KB = 64.0


class _MemoryGrowth(Rule):
    """RSS that grows steadily, judged on every sample since before the run (the metrics
    store) and relative to the process's size: points at the user's allocation site."""

    name = "runtime_memory_growth"
    snapshots_needed = 2
    gap = 1.5

    def wants(self, ev: Evidence) -> list[ProbeCall]:
        calls = [ProbeCall("runtime_trends")]
        if _growth(ev) is not None:
            calls.append(ProbeCall("runtime_memory_info"))
            if _shape_known(ev):  # a window of tracing only for a rise that is surely steady
                calls.append(ProbeCall("runtime_allocation_sites"))
        return calls

    def judge(self, ev: Evidence) -> list[Finding]:
        found = _growth(ev)
        if found is None:
            return []
        start, end, span, rate = found.start_mb, found.end_mb, found.span_s, found.mb_per_s
        samples = found.samples
        info = ev.result("runtime_memory_info") or {}
        available = info.get("host_available_mb") if isinstance(info, dict) else None
        severity: Severity = "warning"
        hypothesis = "something allocates and keeps what it allocates"
        if not _shape_known(ev):
            # samples bunched at the ends: a leak and a warm-up look the same; say so, no alarm
            severity = "info"
            hypothesis = (
                "RSS rose, but the samples cannot tell a steady leak from a heap warming up "
                "to its plateau; look again later (the metrics keep sampling), or run the "
                "memory skill"
            )
        if (
            severity == "warning"
            and isinstance(available, (int, float))
            and rate > 0
            and available / rate < 15 * 60
        ):
            severity = "critical"
            hypothesis += (
                f"; at this rate the host's {available:.0f} MB available last about "
                f"{available / rate / 60:.0f} min"
            )
        window = as_dict(ev.result("runtime_allocation_sites"))
        sites = [s for s in window.get("sites") or [] if isinstance(s, dict)]
        observation = (
            f"resident memory grows by {rate:.2f} MB/s: {start:.1f} -> {end:.1f} MB "
            f"(+{(end - start) / max(start, 1e-9):.0%}) over {span:.0f} s and {samples} samples"
        )
        python = python_share(found, window)
        if python is not None and python.native:
            observation += f"; {python.stated()}, in a {window.get('window_s')} s window"
            hypothesis = (
                f"{hypothesis}, outside Python's allocators: native code (a C extension, "
                "ctypes or cffi, a library's own allocator), or freed memory the C allocator "
                "keeps (fragmentation); the memory skill weighs the two"
            )
        elif sites:
            top = sites[0]
            observation += (
                f"; top allocation site {top.get('site')}"
                + (f" in {top['function']}" if top.get("function") else "")
                + f" (`{top.get('code', '')}`): "
                f"+{float(top.get('kb', 0)) / 1024:.1f} MB in a {window.get('window_s')} s window"
            )
            if top.get("via"):
                observation += " via " + " -> ".join(reversed(top["via"][:3]))
            in_function = f" ({top['function']})" if top.get("function") else ""
            if python is not None and python.conclusive and python.share < 0.5:
                # part of it Python's, the rest not: say how much, and where Python's is
                hypothesis = (
                    f"{hypothesis}: Python's allocations hold {python.share:.0%} of it, the "
                    f"most at {top.get('site')}{in_function}; the rest is outside Python's "
                    "allocators (native code, or freed memory the C allocator keeps)"
                )
            elif python is None or python.share >= NATIVE_MAX_SHARE:
                hypothesis = (
                    f"{hypothesis}: the user's code at {top.get('site')}{in_function} "
                    "allocates most of it; "
                    "the memory skill names what keeps it alive (memory_referrers)"
                )
            else:  # little held, but too little traced to say the rest is not Python's
                hypothesis = (
                    f"{hypothesis}; the window held {python.share:.0%} of it, the most at "
                    f"{top.get('site')}{in_function}, in {python.traced_s:.2f} s traced: too "
                    "little to tell Python's memory from native; the memory skill looks longer"
                )
        else:
            hypothesis += "; the memory skill names the allocation site and what keeps it alive"
        return [
            Finding(
                anomaly_type="memory_growth",
                severity=severity,
                context=f"RSS {end:.1f} MB; host has {available if available is not None else '?'}"
                " MB available; judged on the metrics sampled before and during the run",
                observation=observation,
                hypothesis=hypothesis,
            )
        ]


def _shape_known(ev: Evidence) -> bool:
    """Whether the RSS samples cover the window well enough to call a rise steady (the run's
    own snapshots alone, two of them, count as known: that is the old two-point rule)."""
    trend = as_dict(as_dict(ev.result("runtime_trends")).get("rss"))
    if int(trend.get("samples") or 0) >= 3 and float(trend.get("span_s") or 0) >= 2.0:
        return bool(trend.get("shape_known"))
    return True


def _growth(ev: Evidence) -> Growth | None:
    """The RSS rise by the relative rule (`_rss.rss_growth`) over the metrics sampled."""
    return rss_growth(as_dict(as_dict(ev.result("runtime_trends")).get("rss")), ev)


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
                    context=f"open fds {ev.moved('open_fds')}",
                    observation=f"+{grew:.0f} file descriptors between snapshots",
                    hypothesis="a descriptor leak; the process skill groups open files by path",
                )
            ]
        return []


#: thread growth that counts: at least this many more threads, and this share more
THREAD_GROWTH_MIN = 20
THREAD_GROWTH_SHARE = 0.5


class _ThreadCount(Rule):
    """Thread growth from the sampled counts, or many threads: only when the flight recorder's
    history has no answer, since `ThreadGrowthByKind` says the same with the kind of thread
    and the code that starts them."""

    name = "runtime_thread_count"
    history_kinds = ThreadGrowthByKind.history_kinds

    def wants(self, ev: Evidence) -> list[ProbeCall]:
        return [ProbeCall("runtime_trends")]

    def judge(self, ev: Evidence) -> list[Finding]:
        if ThreadGrowthByKind().judge(ev):
            return []  # one fact, one notification: the history's, which names the starter
        threads = ev.latest("python_threads", 0) or 0
        trend = as_dict(as_dict(ev.result("runtime_trends")).get("threads"))
        first, last = trend.get("first"), trend.get("last")
        if (
            isinstance(first, (int, float))
            and isinstance(last, (int, float))
            and last - first >= max(THREAD_GROWTH_MIN, THREAD_GROWTH_SHARE * first)
            and float(trend.get("rising_share") or 0) >= RISING_SHARE
        ):
            return [
                Finding(
                    anomaly_type="thread_growth",
                    severity="warning",
                    context=f"{last:.0f} Python threads alive ({ev.latest('threads')} OS "
                    "threads); judged on the metrics sampled before and during the run",
                    observation=f"the thread count rose from {first:.0f} to {last:.0f} over "
                    f"{trend.get('span_s')} s ({trend.get('samples')} samples)",
                    hypothesis="threads started per task and never joined or ended; the "
                    "threads skill lists them and where they were started",
                )
            ]
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


#: errors per second in the history that count, and the fewest errors for a rate to mean much
ERROR_RATE_MIN_PER_S = 1.0
ERROR_MIN_COUNT = 20


class _ErrorRate(Rule):
    """Errors in the flight recorder's history (uncaught, logged with a traceback, ERROR
    logs): a steady rate is a symptom to name even when memory and CPU look fine."""

    name = "runtime_error_rate"

    def wants(self, ev: Evidence) -> list[ProbeCall]:
        return [ProbeCall("runtime_trends")]

    def judge(self, ev: Evidence) -> list[Finding]:
        errors = as_dict(as_dict(ev.result("runtime_trends")).get("errors"))
        count, rate = int(errors.get("count") or 0), float(errors.get("per_s") or 0.0)
        if count < ERROR_MIN_COUNT or rate < ERROR_RATE_MIN_PER_S:
            return []
        top = [t for t in errors.get("top") or [] if isinstance(t, dict)]
        where = ", ".join(f"{t.get('where')} x{t.get('count')}" for t in top) or "unknown"
        ids = ", ".join(errors.get("history_ids") or [])
        return [
            Finding(
                anomaly_type="error_storm",
                severity="warning",
                context=f"{count} errors in the last {errors.get('window_s')} s of the flight "
                f"recorder's history" + (f" ({ids})" if ids else ""),
                observation=f"errors at {rate:.1f}/s; most from {where}",
                hypothesis="one failure repeating; the logs and exceptions skills name the "
                "logger, message and raising line",
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
