"""The `system` skill: the host the process runs on: CPU, load, memory, swap, disks, network.

The snapshot reads two or three small /proc files on Linux (``/proc/stat``, ``/proc/meminfo``,
``/proc/vmstat`` only when swap exists) plus ``getloadavg`` and one ``statvfs``; elsewhere it
asks psutil. CPU percentages are computed from the skill's own previous reading (a *baseline*
taken when the skill is created, then at each snapshot), so they never depend on who else calls
``psutil.cpu_percent``. Judging a host as saturated is deliberately conservative: a 2-core CI
machine running flat out with a load near its core count is busy, not broken.
"""

from __future__ import annotations

import contextlib
import os
import sys
import threading
import time
from collections import Counter
from collections.abc import Callable, Sequence
from typing import Any, ClassVar, TypeVar

import psutil

from lensbook.skills._units import MB, mb
from lensbook.skills.base import Skill, probe
from lensbook.skills.history_metrics import HostPressureSinceLoad
from lensbook.skills.rules import Evidence, Finding, ProbeCall, Rule, as_number
from lensbook.skills.untrusted import from_process

__all__ = [
    "CpuSaturation",
    "DiskFull",
    "HostMemoryPressure",
    "SwapActivity",
    "SystemSkill",
]

T = TypeVar("T")

_ON_LINUX = sys.platform.startswith("linux")
#: /proc/stat cpu fields, in order (guest time is already counted in user)
_CPU_FIELDS = ("user", "nice", "system", "idle", "iowait", "irq", "softirq", "steal")


Reader = Callable[[str], "str | None"]


def _pread_all(fd: int) -> str:
    chunks: list[bytes] = []
    offset = 0
    while True:
        chunk = os.pread(fd, 1 << 16, offset)
        chunks.append(chunk)
        if len(chunk) < 1 << 16:
            return b"".join(chunks).decode("ascii", "replace")
        offset += len(chunk)


def _read(path: str) -> str | None:
    """A small /proc or /sys file's text; os-level calls keep GIL hand-offs to three."""
    try:
        fd = os.open(path, os.O_RDONLY)
    except OSError:
        return None
    try:
        return _pread_all(fd)
    except OSError:
        return None
    finally:
        os.close(fd)


#: the first bytes of the host-wide files kept open, to notice a descriptor closed behind us
_KEEP = {"/proc/stat": "cpu", "/proc/meminfo": "MemTotal:", "/proc/vmstat": "nr_"}


class _KeptFiles:
    """Host-wide /proc files kept open and re-read with one ``pread`` each.

    Every syscall releases the GIL, and under a busy main thread each release can cost the
    5 ms switch interval to get it back: one pread instead of open/read/close keeps the
    snapshot's waits to one per file. Only files that are the same for every process are
    kept (no /proc/self), so a forked child reading them sees the right thing.
    """

    def __init__(self) -> None:
        self._fds: dict[str, int] = {}
        self._lock = threading.Lock()

    def read(self, path: str) -> str | None:
        expect = _KEEP.get(path)
        if expect is None:
            return _read(path)
        with self._lock:
            fd = self._fds.get(path)
        if fd is None:
            try:
                fd = os.open(path, os.O_RDONLY | getattr(os, "O_CLOEXEC", 0))
            except OSError:
                return None
            with self._lock:
                if path in self._fds:
                    os.close(fd)
                    fd = self._fds[path]
                else:
                    self._fds[path] = fd
        try:
            text: str | None = _pread_all(fd)
        except OSError:
            text = None
        if text is None or not text.startswith(expect):
            # closed (and maybe reused) by someone else: forget it, never close it
            with self._lock:
                if self._fds.get(path) == fd:
                    del self._fds[path]
            return _read(path)
        return text

    def __del__(self) -> None:
        # at interpreter exit module globals (os, contextlib) may already be None
        try:  # noqa: SIM105
            self.close()
        except Exception:
            pass

    def close(self) -> None:
        with self._lock:
            fds = list(self._fds.values())
            self._fds.clear()
        for fd in fds:
            with contextlib.suppress(OSError):
                os.close(fd)


class _CpuReading:
    """One reading of the host's CPU time counters (seconds or ticks, all cpus and per core)."""

    __slots__ = ("at", "cores", "ctxt", "intr", "procs_blocked", "procs_running", "total")

    def __init__(self) -> None:
        self.at = time.monotonic()
        self.total: tuple[float, ...] = ()
        self.cores: list[tuple[float, ...]] = []
        self.ctxt = self.intr = self.procs_running = self.procs_blocked = 0

    @classmethod
    def take(cls, read: Reader = _read) -> _CpuReading:
        reading = cls()
        text = read("/proc/stat") if _ON_LINUX else None
        if text is None:
            reading.total = _psutil_cpu(psutil.cpu_times())
            reading.cores = [_psutil_cpu(c) for c in psutil.cpu_times(percpu=True)]
            return reading
        for line in text.splitlines():
            name, _, rest = line.partition(" ")
            if name == "cpu":
                reading.total = _fields(rest)
            elif name.startswith("cpu"):
                reading.cores.append(_fields(rest))
            elif name == "ctxt":
                reading.ctxt = int(rest)
            elif name == "intr":
                reading.intr = int(rest.split(" ", 1)[0])
            elif name == "procs_running":
                reading.procs_running = int(rest)
            elif name == "procs_blocked":
                reading.procs_blocked = int(rest)
        return reading


def _fields(rest: str) -> tuple[float, ...]:
    values = [float(v) for v in rest.split()[: len(_CPU_FIELDS)]]
    return tuple(values + [0.0] * (len(_CPU_FIELDS) - len(values)))


def _psutil_cpu(times: Any) -> tuple[float, ...]:
    return tuple(float(getattr(times, f, 0.0)) for f in _CPU_FIELDS)


def _shares(before: tuple[float, ...], after: tuple[float, ...]) -> dict[str, float]:
    """Percent of CPU time per field between two readings, and `busy` (not idle nor iowait)."""
    deltas = [max(a - b, 0.0) for a, b in zip(after, before, strict=False)]
    total = sum(deltas)
    if total <= 0:
        return {"busy": 0.0, **dict.fromkeys(_CPU_FIELDS, 0.0)}
    out = {f: round(100.0 * d / total, 1) for f, d in zip(_CPU_FIELDS, deltas, strict=False)}
    out["busy"] = round(100.0 - out["idle"] - out["iowait"], 1)
    return out


def _meminfo(read: Reader = _read) -> dict[str, int]:
    """Host memory in bytes: total, available, swap_total, swap_free (and more on Linux)."""
    text = read("/proc/meminfo") if _ON_LINUX else None
    if text is None:
        vm, sw = psutil.virtual_memory(), psutil.swap_memory()
        return {
            "MemTotal": vm.total,
            "MemAvailable": vm.available,
            "SwapTotal": sw.total,
            "SwapFree": sw.free,
            "_sin": sw.sin,
            "_sout": sw.sout,
        }
    out: dict[str, int] = {}
    for line in text.splitlines():
        key, _, rest = line.partition(":")
        parts = rest.split()
        if parts:
            out[key] = int(parts[0]) * (1024 if len(parts) > 1 else 1)
    if "MemAvailable" not in out:  # kernels before 3.14
        out["MemAvailable"] = sum(out.get(k, 0) for k in ("MemFree", "Buffers", "Cached"))
    return out


def _swap_io(mem: dict[str, int], read: Reader = _read) -> tuple[int, int]:
    """Bytes swapped in and out since boot (0, 0 when the host has no swap)."""
    if "_sin" in mem:
        return mem["_sin"], mem["_sout"]
    if not mem.get("SwapTotal"):
        return 0, 0
    text = read("/proc/vmstat") or ""
    pages = {}
    for line in text.splitlines():
        key, _, value = line.partition(" ")
        if key in ("pswpin", "pswpout"):
            pages[key] = int(value)
    size = os.sysconf("SC_PAGE_SIZE")
    return pages.get("pswpin", 0) * size, pages.get("pswpout", 0) * size


def _pressure(resource_name: str) -> dict[str, float] | None:
    """Linux PSI for cpu, memory or io: % of time some (or all) tasks stalled, avg10/avg60."""
    text = _read(f"/proc/pressure/{resource_name}") if _ON_LINUX else None
    if not text:
        return None
    out: dict[str, float] = {}
    for line in text.splitlines():
        kind, *pairs = line.split()
        for pair in pairs:
            key, _, value = pair.partition("=")
            if key in ("avg10", "avg60"):
                out[f"{kind}_{key}"] = float(value)
    return out


def _cgroup_memory() -> dict[str, Any] | None:
    """This process's cgroup memory limit and working set (v2 or v1), None when unlimited."""
    if not _ON_LINUX:
        return None
    text = _read("/proc/self/cgroup") or ""
    v2 = v1 = None
    for line in text.splitlines():
        hid, controllers, path = [*line.split(":", 2), "", ""][:3]
        if hid == "0" and controllers == "":
            v2 = path
        elif "memory" in controllers.split(","):
            v1 = path
    candidates: list[tuple[str, str, str, str]] = []
    if v2 is not None:
        base = "/sys/fs/cgroup" + v2.rstrip("/")
        candidates.append(
            (f"{base}/memory.max", f"{base}/memory.current", f"{base}/memory.stat", "inactive_file")
        )
    if v1 is not None:
        for root in ("/sys/fs/cgroup/memory" + v1.rstrip("/"), "/sys/fs/cgroup/memory"):
            candidates.append(
                (
                    f"{root}/memory.limit_in_bytes",
                    f"{root}/memory.usage_in_bytes",
                    f"{root}/memory.stat",
                    "total_inactive_file",
                )
            )
    host_total = _meminfo().get("MemTotal", 0)
    for limit_path, usage_path, stat_path, inactive_key in candidates:
        limit_text, usage_text = _read(limit_path), _read(usage_path)
        if not limit_text or not usage_text:
            continue
        limit_text = limit_text.strip()
        if limit_text == "max" or int(limit_text) >= host_total:
            return None  # no limit below the host's memory
        limit, usage = int(limit_text), int(usage_text.strip())
        inactive = 0
        for line in (_read(stat_path) or "").splitlines():
            key, _, value = line.partition(" ")
            if key == inactive_key:
                inactive = int(value)
        working = max(usage - inactive, 0)
        return {
            "limit_mb": mb(limit, 1),
            "usage_mb": mb(usage, 1),
            "working_set_mb": mb(working, 1),
            "working_set_percent": round(100.0 * working / limit, 1),
        }
    return None


class SystemSkill(Skill):
    id = "system"
    title = "Host system"
    description = "Host CPU per core, load, memory, swap, disks, network, top processes"
    system_prompt = (
        "You are the system operator: you watch the host a Python process runs on: CPU per core "
        "(busy, iowait, steal), load averages against the number of cores, memory available, "
        "swap use and swapping activity, container memory limits, disk space, network "
        "counters, and which processes use the most CPU and memory. Saturation is sustained: "
        "memory available under 10% or active swapping, CPU pinned with a run queue several "
        "times the core count. A busy machine (CPU high, load near the core count) is normal "
        "for CI and batch work; say so without raising an alarm. Name the processes responsible."
    )
    # what the coordinator and the watcher know of it (see `Skill`)
    keywords = ("host", "disk", "swap", "container", "machine")
    families: ClassVar[dict[str, tuple[str, ...]]] = {
        "host memory pressure": ("host_memory_pressure", "container_memory_pressure"),
        "CPU saturation": ("cpu_saturation", "host_cpu_busy"),
    }
    investigates = ("host memory pressure",)
    unwatched = frozenset(
        {
            "cpu_window_s",
            "cpu_count",
            "mem_total_mb",
            "mem_available_mb",
            "mem_available_percent",
            "swap_total_mb",
            "load1",
            "load5",
            "load15",
            "load1_per_core",
            "procs_running",
            "procs_blocked",
            "disk_root_percent",
            "disk_root_free_gb",
        }
    )

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._cores = os.cpu_count() or 1
        self._files = _KeptFiles()
        # the baseline for CPU percentages: the first snapshot measures from here
        self._cpu_base = _CpuReading.take()
        self._last: dict[str, tuple[float, Any]] = {}
        self._top_primed: float | None = None
        self._disk: tuple[float, dict[str, float]] | None = None

    def close(self) -> None:
        """Close the /proc files the snapshot keeps open (they reopen on the next snapshot)."""
        self._files.close()

    # -- snapshot -------------------------------------------------------------------------

    def snapshot(self) -> dict[str, Any]:
        """Cost: ~50 µs: one pread each of /proc/stat and /proc/meminfo (and /proc/vmstat when
        there is swap), kept open; getloadavg; statvfs('/') at most every 5 s.

        CPU percentages need a baseline: they are over `cpu_window_s`, since the previous
        snapshot (or the skill's creation); a window under 0.5 s is noisy, and rules ignore it.
        """
        cpu = _CpuReading.take(self._files.read)
        with self._lock:
            base = self._cpu_base
            if cpu.at - base.at >= 0.25:  # keep a short window from replacing a useful one
                self._cpu_base = cpu
        shares = _shares(base.total, cpu.total)
        mem = _meminfo(self._files.read)
        swap_in, swap_out = _swap_io(mem, self._files.read)
        total, avail = mem.get("MemTotal", 0), mem.get("MemAvailable", 0)
        swap_total = mem.get("SwapTotal", 0)
        swap_used = max(swap_total - mem.get("SwapFree", 0), 0)
        load1, load5, load15 = os.getloadavg() if hasattr(os, "getloadavg") else (0.0, 0.0, 0.0)
        data: dict[str, Any] = {
            "cpu_count": self._cores,
            "cpu_percent": shares["busy"],
            "cpu_iowait_percent": shares["iowait"],
            "cpu_steal_percent": shares["steal"],
            "cpu_window_s": round(cpu.at - base.at, 2),
            "load1": round(load1, 2),
            "load5": round(load5, 2),
            "load15": round(load15, 2),
            "load1_per_core": round(load1 / self._cores, 2),
            "procs_running": cpu.procs_running,
            "procs_blocked": cpu.procs_blocked,
            "mem_total_mb": mb(total, 1),
            "mem_available_mb": mb(avail, 1),
            "mem_available_percent": round(100.0 * avail / total, 1) if total else 0.0,
            "swap_total_mb": mb(swap_total, 1),
            "swap_used_mb": mb(swap_used, 1),
            "swap_percent": round(100.0 * swap_used / swap_total, 1) if swap_total else 0.0,
            "swap_in_mb": mb(swap_in),
            "swap_out_mb": mb(swap_out),
        }
        data.update(self._root_disk())
        return data

    def _root_disk(self) -> dict[str, float]:
        # a filesystem fills over minutes: a 5 s old statvfs saves a GIL hand-off per snapshot
        now = time.monotonic()
        cached = self._disk
        if cached is not None and now - cached[0] < 5.0:
            return cached[1]
        try:
            disk = psutil.disk_usage("/")
        except OSError:
            return {}
        values = {
            "disk_root_percent": disk.percent,
            "disk_root_free_gb": round(disk.free / 2**30, 2),
        }
        self._disk = (now, values)
        return values

    # -- probes ---------------------------------------------------------------------------

    def _since_last(self, key: str, read: Callable[[], T], interval: float) -> tuple[float, T, T]:
        """(window seconds, previous reading, new reading); measures over `interval` when the
        previous reading of `key` is missing, too recent (< 0.2 s) or stale (> 5 min)."""
        with self._lock:
            previous = self._last.get(key)
        if previous is None or not 0.2 <= time.monotonic() - previous[0] <= 300:
            previous = (time.monotonic(), read())
            time.sleep(min(max(interval, 0.1), 2.0))
        current = read()
        now = time.monotonic()
        with self._lock:
            self._last[key] = (now, current)
        return now - previous[0], previous[1], current

    @probe
    def cpu(self, interval: float = 0.5) -> dict[str, Any]:
        """Host CPU: busy/user/system/iowait/steal % overall and per core, load averages per
        core, run queue, context switches and interrupts per second, pressure (PSI).

        Percentages are over the time since this probe's previous call; on a first call (or
        after 5 minutes) it measures over `interval` seconds, because CPU percentages need a
        baseline.

        Args:
            interval: seconds to measure over when there is no recent baseline (0.1 to 2).

        Cost: two /proc/stat reads (~20 µs each) and possibly the interval's sleep.
        """
        window, before, after = self._since_last("cpu", _CpuReading.take, interval)
        overall = _shares(before.total, after.total)
        per_core = [_shares(b, a)["busy"] for b, a in zip(before.cores, after.cores, strict=False)]
        load = os.getloadavg() if hasattr(os, "getloadavg") else (0.0, 0.0, 0.0)
        out: dict[str, Any] = {
            "window_s": round(window, 2),
            "cores": self._cores,
            "percent": overall,
            "per_core_busy": per_core,
            "load": [round(x, 2) for x in load],
            "load_per_core": [round(x / self._cores, 2) for x in load],
            "procs_running": after.procs_running,
            "procs_blocked": after.procs_blocked,
        }
        if window > 0 and after.ctxt:
            out["ctx_switches_per_s"] = round((after.ctxt - before.ctxt) / window)
            out["interrupts_per_s"] = round((after.intr - before.intr) / window)
        affinity = getattr(os, "sched_getaffinity", None)
        if affinity is not None:
            out["usable_cores"] = len(affinity(0))
        quota = _cgroup_cpu_quota()
        if quota is not None:
            out["cgroup_cpu_quota_cores"] = quota
        pressure = _pressure("cpu")
        if pressure is not None:
            out["pressure"] = pressure
        return out

    @probe
    def memory(self) -> dict[str, Any]:
        """Host memory and swap in MB, swapping rates, pressure (PSI), and this process's
        container (cgroup) memory limit and working set when one applies.

        Cost: a few small /proc and /sys reads (~0.2 ms).
        """
        vm = psutil.virtual_memory()
        sw = psutil.swap_memory()
        fields = ("total", "available", "used", "free", "buffers", "cached", "shared", "slab")
        out: dict[str, Any] = {
            "memory_mb": {f: mb(getattr(vm, f), 1) for f in fields if hasattr(vm, f)},
            "available_percent": round(100.0 * vm.available / vm.total, 1) if vm.total else 0.0,
            "swap_mb": {
                "total": mb(sw.total, 1),
                "used": mb(sw.used, 1),
                "percent": sw.percent,
                "swapped_in_since_boot": mb(sw.sin, 1),
                "swapped_out_since_boot": mb(sw.sout, 1),
            },
        }
        with self._lock:
            previous = self._last.get("swap")
            now = time.monotonic()
            self._last["swap"] = (now, (sw.sin, sw.sout))
        if previous is not None and now > previous[0]:
            span = now - previous[0]
            out["swap_mb_per_s"] = {
                "in": round((sw.sin - previous[1][0]) / MB / span, 2),
                "out": round((sw.sout - previous[1][1]) / MB / span, 2),
                "window_s": round(span, 1),
            }
        pressure = _pressure("memory")
        if pressure is not None:
            out["pressure"] = pressure
        out["cgroup"] = _cgroup_memory()
        return out

    @probe
    def disks(self, limit: int = 10) -> dict[str, Any]:
        """Mounted filesystems (space and inode use) and per-disk I/O rates.

        Rates are since this probe's previous call, or over 0.5 s on a first call.

        Args:
            limit: how many filesystems and disks to list (fullest and busiest first).

        Cost: one statvfs per physical mount plus two /proc/diskstats reads (~1 ms).
        """
        limit = max(1, min(limit, 50))
        mounts: list[dict[str, Any]] = []
        seen: set[str] = set()
        for part in psutil.disk_partitions(all=False):
            if part.device in seen:
                continue
            seen.add(part.device)
            try:
                usage = psutil.disk_usage(part.mountpoint)
                vfs = os.statvfs(part.mountpoint) if hasattr(os, "statvfs") else None
            except OSError:
                continue
            entry: dict[str, Any] = {
                "mount": part.mountpoint,
                "fstype": part.fstype,
                "percent": usage.percent,
                "free_gb": round(usage.free / 2**30, 2),
                "total_gb": round(usage.total / 2**30, 2),
            }
            if vfs is not None and vfs.f_files:
                entry["inodes_percent"] = round(100.0 * (1 - vfs.f_ffree / vfs.f_files), 1)
            mounts.append(entry)
        mounts.sort(key=lambda m: -float(m["percent"]))

        def read_io() -> dict[str, Any]:
            return dict(psutil.disk_io_counters(perdisk=True) or {})

        window, before, after = self._since_last("disks", read_io, 0.5)
        rates = []
        for name, now in after.items():
            prev = before.get(name)
            if prev is None or window <= 0:
                continue
            moved = now.read_bytes + now.write_bytes - prev.read_bytes - prev.write_bytes
            if not moved and name.startswith(("loop", "ram", "zram")):
                continue  # idle virtual block devices are noise
            rates.append(
                {
                    "disk": name,
                    "read_mb_per_s": round((now.read_bytes - prev.read_bytes) / MB / window, 2),
                    "write_mb_per_s": round((now.write_bytes - prev.write_bytes) / MB / window, 2),
                    "busy_percent": round(
                        min(
                            100.0,
                            (getattr(now, "busy_time", 0) - getattr(prev, "busy_time", 0))
                            / 10.0
                            / window,
                        ),
                        1,
                    ),
                }
            )
        rates.sort(key=lambda r: -(r["read_mb_per_s"] + r["write_mb_per_s"]))
        return {
            "filesystems": mounts[:limit],
            "io_window_s": round(window, 2),
            "io": rates[:limit],
            "io_pressure": _pressure("io"),
        }

    @probe
    def network(self, limit: int = 8) -> dict[str, Any]:
        """Network interfaces' send/receive rates and totals, errors and drops, host TCP states.

        Rates are since this probe's previous call, or over 0.5 s on a first call.

        Args:
            limit: how many interfaces to list (busiest first).

        Cost: two /proc/net/dev reads and one read of /proc/net/tcp{,6} (O(host TCP sockets)).
        """

        def read_net() -> dict[str, Any]:
            return dict(psutil.net_io_counters(pernic=True) or {})

        window, before, after = self._since_last("network", read_net, 0.5)
        nics = []
        for name, now in after.items():
            prev = before.get(name, now)
            span = window if window > 0 else 1.0
            nics.append(
                {
                    "nic": name,
                    "sent_mb_per_s": round((now.bytes_sent - prev.bytes_sent) / MB / span, 3),
                    "recv_mb_per_s": round((now.bytes_recv - prev.bytes_recv) / MB / span, 3),
                    "sent_mb_total": mb(now.bytes_sent, 1),
                    "recv_mb_total": mb(now.bytes_recv, 1),
                    "errors": now.errin + now.errout,
                    "drops": now.dropin + now.dropout,
                }
            )
        nics.sort(key=lambda n: -(n["sent_mb_per_s"] + n["recv_mb_per_s"]))
        return {
            "window_s": round(window, 2),
            "interfaces": nics[: max(1, min(limit, 50))],
            "tcp_states": _tcp_states(),
        }

    @probe
    def top_processes(self, limit: int = 8, interval: float = 0.5) -> dict[str, Any]:
        """The host's processes using the most CPU and the most memory, and counts by status.

        Processes are shown by executable name and pid; their command lines only when the user
        opted in (`share_command_lines` or ``$LENSBOOK_SHARE_COMMAND_LINES=1``).

        Per-process CPU % needs a baseline: the first call (or one more than 60 s after the
        previous) primes every process's counter, sleeps `interval` seconds and measures;
        later calls measure since the previous call. 100% is one full core.

        Args:
            limit: how many processes in each list (by CPU, by memory).
            interval: seconds to measure CPU over when there is no recent baseline (0.1 to 2).

        Cost: one batched read per host process (~40 µs each: ~4 ms at 100 processes), twice
        when priming, plus the interval's sleep.
        """
        attrs = ["pid", "name", "cpu_percent", "memory_info", "status", "num_threads"]
        now = time.monotonic()
        # each /proc read gives the GIL away and waits to get it back (~5 ms when the main
        # thread is busy): stop walking in time to answer within the budget
        deadline = now + 3.5
        primed = self._top_primed
        if primed is None or not 0.1 <= now - primed <= 60:
            for _ in psutil.process_iter(["cpu_percent"]):
                if time.monotonic() > deadline - 2.0:
                    break
            primed = time.monotonic()
            time.sleep(min(max(interval, 0.1), 2.0))
        rows: list[dict[str, Any]] = []
        statuses: Counter[str] = Counter()
        me = os.getpid()
        partial = False
        for proc in psutil.process_iter(attrs):
            if time.monotonic() > deadline:
                partial = True
                break
            info = proc.info
            mem = info.get("memory_info")
            statuses[str(info.get("status"))] += 1
            rows.append(
                {
                    "pid": info["pid"],
                    "name": info.get("name") or "?",
                    "cpu_percent": round(float(info.get("cpu_percent") or 0.0), 1),
                    "rss_mb": mb(mem.rss, 1) if mem is not None else 0.0,
                    "threads": info.get("num_threads"),
                    "status": info.get("status"),
                    **({"self": True} if info["pid"] == me else {}),
                }
            )
        self._top_primed = time.monotonic()
        limit = max(1, min(limit, 30))
        # idle processes are no CPU culprits: list only those that used some
        busy = [r for r in rows if float(r["cpu_percent"]) > 0]
        by_cpu = sorted(busy, key=lambda r: -float(r["cpu_percent"]))[:limit]
        by_mem = sorted(rows, key=lambda r: -float(r["rss_mb"]))[:limit]
        share = self.shares_command_lines()
        for row in {id(r): r for r in by_cpu + by_mem}.values():
            row["name"] = from_process(row["name"])
            if not share:
                continue
            with contextlib.suppress(psutil.Error, OSError):
                shown = self.command_line(psutil.Process(int(row["pid"])).cmdline(), 160)
                if shown is not None:
                    row["cmdline"] = shown
        total_mb = psutil.virtual_memory().total / MB
        for row in by_mem:
            row["mem_percent"] = round(100.0 * float(row["rss_mb"]) / total_mb, 1)
        return {
            "window_s": round(time.monotonic() - primed, 2),
            "processes": len(rows),
            **({"partial": "the walk stopped at its deadline"} if partial else {}),
            "by_status": dict(statuses.most_common()),
            "by_cpu": by_cpu,
            "by_memory": by_mem,
        }

    def rules(self) -> Sequence[Rule]:
        return (
            CpuSaturation(),
            HostMemoryPressure(),
            SwapActivity(),
            DiskFull(),
            HostPressureSinceLoad(),
        )


def _cgroup_cpu_quota() -> float | None:
    """CPU cores this process's cgroup may use (cpu.max or cfs quota), None when unlimited."""
    if not _ON_LINUX:
        return None
    text = _read("/sys/fs/cgroup/cpu.max")
    if text:
        quota, _, period = text.strip().partition(" ")
        if quota != "max" and period:
            return round(int(quota) / int(period), 2)
        return None
    quota_text = _read("/sys/fs/cgroup/cpu/cpu.cfs_quota_us")
    period_text = _read("/sys/fs/cgroup/cpu/cpu.cfs_period_us")
    if quota_text and period_text and int(quota_text) > 0:
        return round(int(quota_text) / int(period_text), 2)
    return None


_TCP_STATES = {
    "01": "ESTABLISHED",
    "02": "SYN_SENT",
    "03": "SYN_RECV",
    "04": "FIN_WAIT1",
    "05": "FIN_WAIT2",
    "06": "TIME_WAIT",
    "07": "CLOSE",
    "08": "CLOSE_WAIT",
    "09": "LAST_ACK",
    "0A": "LISTEN",
    "0B": "CLOSING",
}


def _tcp_states(max_lines: int = 200_000) -> dict[str, int] | None:
    """Host TCP sockets counted by state, from /proc/net/tcp and tcp6 (Linux only)."""
    if not _ON_LINUX:
        return None
    counts: Counter[str] = Counter()
    for path in ("/proc/net/tcp", "/proc/net/tcp6"):
        try:
            with open(path, encoding="ascii", errors="replace") as fh:
                next(fh, None)  # header
                for i, line in enumerate(fh):
                    if i >= max_lines:
                        break
                    parts = line.split(None, 4)
                    if len(parts) > 3:
                        counts[_TCP_STATES.get(parts[3], parts[3])] += 1
        except OSError:
            continue
    return dict(counts.most_common())


# -- rules for the offline investigator ---------------------------------------------------


def _top_names(ev: Evidence, key: str, metric: str, unit: str, n: int = 3) -> str | None:
    top = ev.result("system_top_processes")
    if not isinstance(top, dict):
        return None
    rows = [r for r in top.get(key) or [] if isinstance(r, dict)][:n]
    if not rows:
        return None
    return ", ".join(
        f"{r.get('name')} (pid {r.get('pid')}{', this process' if r.get('self') else ''}) "
        f"{r.get(metric)}{unit}"
        for r in rows
    )


#: a CPU window shorter than this is too noisy to judge
MIN_CPU_WINDOW = 0.5


class CpuSaturation(Rule):
    """CPU pinned with a run queue several times the core count; a busy host is only noted.

    Two snapshots `gap` seconds apart give a CPU window worth judging (windows under 0.5 s are
    ignored). Warning needs every judged window >= 95% busy and a 1-minute load of at least 3
    runnable tasks per core (sustained oversubscription); a host >= 90% busy with a load of
    one per core, or as many runnable tasks as cores right now, is an info note (observing).
    """

    name = "cpu_saturation"
    snapshots_needed = 2
    gap = 1.5
    busy_percent = 90.0
    saturated_percent = 95.0
    saturated_load_per_core = 3.0

    def _windows(self, ev: Evidence) -> list[dict[str, Any]]:
        return [s for s in ev.snapshots if as_number(s.get("cpu_window_s")) >= MIN_CPU_WINDOW]

    def wants(self, ev: Evidence) -> Sequence[ProbeCall]:
        judged = self._windows(ev)
        if judged and as_number(judged[-1].get("cpu_percent")) >= self.busy_percent:
            return [ProbeCall("system_top_processes", {"limit": 5}), ProbeCall("system_cpu")]
        return ()

    def judge(self, ev: Evidence) -> Sequence[Finding]:
        judged = self._windows(ev)
        if not judged:
            return []
        last = judged[-1]
        busy = as_number(last.get("cpu_percent"))
        lpc = as_number(last.get("load1_per_core"))
        cores = int(as_number(last.get("cpu_count"), 1))
        # load1 lags a minute behind a new burst; the instant run queue shows it at once
        queued = as_number(last.get("procs_running")) >= cores
        if busy < self.busy_percent or (lpc < 1.0 and not queued):
            return []
        culprits = _top_names(ev, "by_cpu", "cpu_percent", "% CPU")
        facts = (
            f"host CPU {busy:.0f}% busy over {as_number(last.get('cpu_window_s')):.1f} s, "
            f"load {as_number(last.get('load1')):.2f}/{as_number(last.get('load5')):.2f}/"
            f"{as_number(last.get('load15')):.2f} on {cores} cores "
            f"({lpc:.2f} per core), {int(as_number(last.get('procs_running')))} runnable"
        )
        steal = as_number(last.get("cpu_steal_percent"))
        if steal >= 10:
            facts += f", {steal:.0f}% stolen by the hypervisor"
        sustained = all(as_number(s.get("cpu_percent")) >= self.saturated_percent for s in judged)
        if sustained and lpc >= self.saturated_load_per_core:
            return [
                Finding(
                    "cpu_saturation",
                    "warning",
                    context=f"{len(judged)} snapshot window(s) all >= "
                    f"{self.saturated_percent:.0f}% busy; a load of {lpc:.1f} per core "
                    "means each task gets about "
                    f"1/{lpc:.0f} of a core",
                    observation=facts + (f"; top CPU users: {culprits}" if culprits else ""),
                    hypothesis="more CPU-bound work than cores: the processes above compete for "
                    "CPU, so everything on the host runs slower",
                )
            ]
        return [
            Finding(
                "host_cpu_busy",
                "info",
                context="a host busy near its core count is normal for CI or batch work; not an "
                "alarm unless the run queue grows to several tasks per core",
                observation=facts + (f"; top CPU users: {culprits}" if culprits else ""),
            )
        ]


class HostMemoryPressure(Rule):
    """Host (or container) memory nearly exhausted, named with the largest processes."""

    name = "host_memory_pressure"
    warning_available = 10.0
    critical_available = 5.0
    cgroup_warning = 90.0
    cgroup_critical = 97.0

    def wants(self, ev: Evidence) -> Sequence[ProbeCall]:
        if not ev.snapshots:
            return ()
        calls = [ProbeCall("system_memory")]
        if as_number(ev.latest("mem_available_percent"), 100) < 2 * self.warning_available:
            calls.append(ProbeCall("system_top_processes", {"limit": 5}))
        cgroup = _cgroup_of(ev)
        if cgroup and as_number(cgroup.get("working_set_percent")) >= self.cgroup_warning:
            calls.append(ProbeCall("system_top_processes", {"limit": 5}))
        return calls

    def judge(self, ev: Evidence) -> Sequence[Finding]:
        findings: list[Finding] = []
        avail = as_number(ev.latest("mem_available_percent"), 100)
        culprits = _top_names(ev, "by_memory", "rss_mb", " MB RSS")
        mem = ev.result("system_memory")
        psi = mem.get("pressure") if isinstance(mem, dict) else None
        psi_text = ""
        if isinstance(psi, dict) and psi:
            psi_text = (
                f"; memory pressure (PSI): some {psi.get('some_avg10')}%, full "
                f"{psi.get('full_avg10')}% of the last 10 s stalled"
            )
        if avail < self.warning_available:
            findings.append(
                Finding(
                    "host_memory_pressure",
                    "critical" if avail < self.critical_available else "warning",
                    context=f"host memory {as_number(ev.latest('mem_total_mb')):.0f} MB; swap "
                    f"{as_number(ev.latest('swap_used_mb')):.0f} of "
                    f"{as_number(ev.latest('swap_total_mb')):.0f} MB used" + psi_text,
                    observation=f"only {as_number(ev.latest('mem_available_mb')):.0f} MB "
                    f"({avail:.1f}%) of host memory is available"
                    + (f"; largest processes: {culprits}" if culprits else ""),
                    hypothesis="the processes above hold most memory; the kernel will swap or the "
                    "OOM killer will end a process",
                )
            )
        cgroup = _cgroup_of(ev)
        if cgroup is not None:
            pct = as_number(cgroup.get("working_set_percent"))
            if pct >= self.cgroup_warning:
                findings.append(
                    Finding(
                        "container_memory_pressure",
                        "critical" if pct >= self.cgroup_critical else "warning",
                        context="this process runs in a cgroup limited to "
                        f"{cgroup.get('limit_mb')} MB; the OOM killer acts on the cgroup, "
                        "whatever the host has free",
                        observation="the cgroup's working set is "
                        f"{cgroup.get('working_set_mb')} MB, {pct:.1f}% of its limit"
                        + (f"; largest processes: {culprits}" if culprits else ""),
                        hypothesis="the container's memory limit is nearly reached",
                    )
                )
        return findings


def _cgroup_of(ev: Evidence) -> dict[str, Any] | None:
    mem = ev.result("system_memory")
    cgroup = mem.get("cgroup") if isinstance(mem, dict) else None
    return cgroup if isinstance(cgroup, dict) else None


class SwapActivity(Rule):
    """The host swapping pages in and out between snapshots (thrashing when memory is low)."""

    name = "swap_activity"
    snapshots_needed = 2
    gap = 1.5
    warning_mb_per_s = 2.0
    critical_mb_per_s = 20.0

    def _rate(self, ev: Evidence) -> float:
        span = ev.elapsed()
        if span <= 0 or as_number(ev.latest("swap_total_mb")) <= 0:
            return 0.0
        return (ev.delta("swap_in_mb") + ev.delta("swap_out_mb")) / span

    def wants(self, ev: Evidence) -> Sequence[ProbeCall]:
        if self._rate(ev) >= self.warning_mb_per_s:
            return [ProbeCall("system_top_processes", {"limit": 5})]
        return ()

    def judge(self, ev: Evidence) -> Sequence[Finding]:
        rate = self._rate(ev)
        if rate < self.warning_mb_per_s:
            return []
        avail = as_number(ev.latest("mem_available_percent"), 100)
        critical = rate >= self.critical_mb_per_s and avail < 10
        culprits = _top_names(ev, "by_memory", "rss_mb", " MB RSS")
        return [
            Finding(
                "swap_thrashing" if critical else "swap_activity",
                "critical" if critical else "warning",
                context=f"swap {as_number(ev.latest('swap_used_mb')):.0f} of "
                f"{as_number(ev.latest('swap_total_mb')):.0f} MB used; host memory "
                f"{avail:.1f}% available",
                observation=f"the host swapped {ev.delta('swap_in_mb'):.1f} MB in and "
                f"{ev.delta('swap_out_mb'):.1f} MB out in {ev.elapsed():.1f} s "
                f"({rate:.1f} MB/s)" + (f"; largest processes: {culprits}" if culprits else ""),
                hypothesis="the working set of the running processes exceeds RAM; every page "
                "fault that reads from swap stalls the process",
            )
        ]


class DiskFull(Rule):
    """The root filesystem nearly full (writes, logs and temp files will fail)."""

    name = "disk_full"
    warning_percent = 95.0
    critical_percent = 99.0

    def wants(self, ev: Evidence) -> Sequence[ProbeCall]:
        if as_number(ev.latest("disk_root_percent")) >= self.warning_percent - 5:
            return [ProbeCall("system_disks")]
        return ()

    def judge(self, ev: Evidence) -> Sequence[Finding]:
        pct = as_number(ev.latest("disk_root_percent"))
        if pct < self.warning_percent:
            return []
        disks = ev.result("system_disks")
        full = []
        if isinstance(disks, dict):
            full = [
                f"{d.get('mount')} {d.get('percent')}%"
                for d in disks.get("filesystems") or []
                if isinstance(d, dict) and as_number(d.get("percent")) >= self.warning_percent
            ]
        return [
            Finding(
                "disk_full",
                "critical" if pct >= self.critical_percent else "warning",
                context="writes fail with ENOSPC when a filesystem is full",
                observation=f"the root filesystem is {pct:.1f}% full "
                f"({as_number(ev.latest('disk_root_free_gb')):.2f} GB free)"
                + (f"; full filesystems: {', '.join(full)}" if full else ""),
            )
        ]
