"""The `process` skill: what this OS process holds: file descriptors, sockets, children, limits.

The snapshot is kept to calls that barely touch the GIL (one ``stat`` of ``/proc/self/fd``,
``getrusage``, ``getrlimit``); listings that read one entry per descriptor or per mapping are
probes, capped and stating their cost. Open descriptors are grouped by *path pattern* (digits,
hex runs, UUIDs and tempfile names replaced by ``*``), so a leak of many similar files shows as
one group with a count: ``/tmp/tmp*/leak-*.log x 412``.
"""

from __future__ import annotations

import contextlib
import itertools
import os
import re
import sys
import threading
import time
from collections import Counter, deque
from collections.abc import Iterator, Sequence
from typing import Any, ClassVar

import psutil

from lensbook.sampling import store as metrics_store
from lensbook.skills import _heap
from lensbook.skills._frames import type_module, type_name
from lensbook.skills._heap import Pacer
from lensbook.skills._history import MetricChange, metric_change
from lensbook.skills._static import stored_attr
from lensbook.skills._trend import slope as _slope
from lensbook.skills._units import MB
from lensbook.skills._units import mb as _mb
from lensbook.skills.base import Skill, probe
from lensbook.skills.history_metrics import course
from lensbook.skills.redact import clip, redact_text
from lensbook.skills.rules import Chain, Evidence, Finding, ProbeCall, Rule, as_number
from lensbook.skills.untrusted import from_process

if sys.platform != "win32":  # resource limits and usage are Unix only
    import resource

__all__ = [
    "ChildZombies",
    "FdGrowth",
    "FdPressure",
    "ProcessSkill",
    "count_children",
    "count_fds",
    "fd_kind",
    "path_pattern",
]

_PROC_FD = "/proc/self/fd"

_UUID = re.compile(r"[0-9a-fA-F]{8}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{12}")
# tempfile's names: "tmp" + 8 characters of [a-z0-9_] (mkdtemp, mkstemp, NamedTemporaryFile)
_TEMPNAME = re.compile(r"(?<![A-Za-z0-9])tmp[a-z0-9_]{8}(?=$|[./\-])")
_HEXRUN = re.compile(r"(?<![A-Za-z0-9])[0-9a-fA-F]{8,}(?![A-Za-z0-9])")
_DIGITS = re.compile(r"\d+")
_STARS = re.compile(r"\*+")


def path_pattern(path: str) -> str:
    """`path` with its variable parts (UUIDs, hex ids, tempfile names, numbers) replaced by ``*``.

    ``/tmp/tmpk3j4_x8q/leak-17.log`` -> ``/tmp/tmp*/leak-*.log``; ``socket:[8812]`` ->
    ``socket:[*]``. Many files that differ only by a counter or an id share one pattern.
    """
    text = _UUID.sub("*", path)
    text = _TEMPNAME.sub("tmp*", text)
    text = _HEXRUN.sub(lambda m: "*" if any(c.isdigit() for c in m.group()) else m.group(), text)
    text = _DIGITS.sub("*", text)
    return _STARS.sub("*", text)


def fd_kind(target: str) -> str:
    """The kind of descriptor a ``/proc/self/fd`` link target names."""
    if target.startswith("socket:"):
        return "socket"
    if target.startswith("pipe:"):
        return "pipe"
    if target.startswith("anon_inode:"):
        return "anon_inode"
    if target.startswith("/dev/"):
        return "device"
    if target.startswith("/"):
        return "file"
    return "other"


def count_fds() -> int:
    """Open file descriptors of this process, as cheaply as the OS allows.

    Linux 6.2+ reports the count as the size of ``/proc/self/fd`` (one ``stat``, O(1)); older
    kernels list the directory (O(fds), ~0.85 ms at 2k fds); other systems ask psutil.
    """
    try:
        size = os.stat(_PROC_FD).st_size
        if size > 0:
            return size
        # the listing holds one descriptor of its own while it reads
        return len(os.listdir(_PROC_FD)) - 1
    except OSError:
        pass
    proc = psutil.Process()
    if hasattr(proc, "num_fds"):
        return int(proc.num_fds())
    return int(getattr(proc, "num_handles", lambda: -1)())


_PROC_TASKS = "/proc/self/task"


def count_children() -> int:
    """Child processes of this process (direct children, zombies included), as cheaply as the
    OS allows.

    Linux kernels built with ``CONFIG_PROC_CHILDREN`` list each thread's children in
    ``/proc/self/task/<tid>/children``: one small read per thread (~10 µs for a few threads),
    independent of how many processes the host runs. Elsewhere psutil walks every process's
    parent id (~0.7 ms per 100 processes on the host). -1 when neither can tell.
    """
    try:
        tasks = os.listdir(_PROC_TASKS)
        total = 0
        for tid in tasks:
            try:
                with open(f"{_PROC_TASKS}/{tid}/children", "rb") as f:
                    total += len(f.read().split())
            except FileNotFoundError:
                if not os.path.exists(f"{_PROC_TASKS}/{tid}"):
                    continue  # the thread ended while we listed: it had no children to count
                raise  # no children file at all: a kernel without CONFIG_PROC_CHILDREN
        return total
    except OSError:
        pass
    try:
        return len(psutil.Process().children())
    except psutil.Error:
        return -1


def _nofile_limits() -> tuple[int | None, int | None]:
    """(soft, hard) RLIMIT_NOFILE, None for unlimited or unknown."""
    if sys.platform == "win32":
        return None, None
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    inf = resource.RLIM_INFINITY
    return (None if soft == inf else int(soft)), (None if hard == inf else int(hard))


def _list_fds(max_fds: int) -> tuple[list[tuple[int, str]], int]:
    """(fd, link target) pairs, at most `max_fds`, and how many descriptors there were."""
    try:
        names = os.listdir(_PROC_FD)
    except OSError:
        return _list_fds_psutil(max_fds)
    pairs: list[tuple[int, str]] = []
    for name in sorted(names, key=int)[:max_fds]:
        try:
            pairs.append((int(name), os.readlink(f"{_PROC_FD}/{name}")))
        except OSError:  # closed meanwhile (the listing's own descriptor, for one)
            continue
    return pairs, len(names) - 1


def _list_fds_psutil(max_fds: int) -> tuple[list[tuple[int, str]], int]:
    """Fallback where there is no /proc: regular files by path, the rest only counted."""
    proc = psutil.Process()
    pairs = [(f.fd, f.path) for f in proc.open_files()][:max_fds]
    with contextlib.suppress(psutil.AccessDenied, OSError):
        pairs += [(c.fd, f"socket:[{c.type.name}]") for c in proc.net_connections("all")]
    return pairs[:max_fds], count_fds()


class ProcessSkill(Skill):
    id = "process"
    title = "OS process resources"
    description = (
        "File descriptors and sockets (grouped by path pattern), fd growth, children, I/O, limits"
    )
    system_prompt = (
        "You are the process operator of a live Python process. You watch what the process "
        "holds from the operating system: open file descriptors (files, sockets, pipes), how "
        "their count changes over time, child processes, I/O and context switches, memory "
        "mappings and resource limits. A descriptor leak shows as a steady rise of open_fds "
        "between snapshots and one large group of similar paths (a path pattern with a count): "
        "name that pattern, the growth with numbers, and how close the count is to the "
        "RLIMIT_NOFILE soft limit. A few dozen descriptors that come and go are normal; do not "
        "report a count that is stable."
    )
    # what the coordinator and the watcher know of it (see `Skill`)
    keywords = ("fd", "file", "descriptor", "socket", "child", "zombie", "subprocess")
    families: ClassVar[dict[str, tuple[str, ...]]] = {
        "descriptor exhaustion": ("fd_leak", "fd_growth", "fd_pressure")
    }
    investigates = ("descriptor exhaustion",)
    chains = (
        Chain(
            ("descriptor exhaustion", "errors"),
            "when descriptors run out, open(), socket() and accept() fail with EMFILE and the "
            "failures are logged",
        ),
    )
    counters = frozenset(
        {
            "cpu_user_s",
            "cpu_system_s",
            "ctx_voluntary",
            "ctx_involuntary",
            "minor_faults",
            "major_faults",
            "block_reads",
            "block_writes",
        }
    )
    unwatched = frozenset({"fd_soft_limit"})
    watched = True

    def __init__(self) -> None:
        self._process = psutil.Process()
        self._lock = threading.Lock()
        #: (epoch seconds, open fds) of every snapshot, for fd_growth
        self._fd_samples: deque[tuple[float, int]] = deque(maxlen=720)
        #: the previous activity reading, for rates
        self._last_activity: tuple[float, dict[str, float]] | None = None
        #: the previous open_files grouping, to show which groups grew
        self._last_groups: tuple[float, dict[str, int]] | None = None

    # -- snapshot -------------------------------------------------------------------------

    def snapshot(self) -> dict[str, Any]:
        """Cost: ~5 µs: one stat of /proc/self/fd, getrusage, getrlimit; no /proc file reads."""
        now = time.time()
        fds = count_fds()
        soft, _hard = _nofile_limits()
        data: dict[str, Any] = {
            "open_fds": fds,
            "fd_soft_limit": soft if soft is not None else -1,
            "fd_percent": round(100.0 * fds / soft, 2) if soft else 0.0,
            "python_threads": threading.active_count(),
        }
        if sys.platform != "win32":
            ru = resource.getrusage(resource.RUSAGE_SELF)
            data.update(
                {
                    "cpu_user_s": round(ru.ru_utime, 3),
                    "cpu_system_s": round(ru.ru_stime, 3),
                    "ctx_voluntary": ru.ru_nvcsw,
                    "ctx_involuntary": ru.ru_nivcsw,
                    "minor_faults": ru.ru_minflt,
                    "major_faults": ru.ru_majflt,
                    "block_reads": ru.ru_inblock,
                    "block_writes": ru.ru_oublock,
                }
            )
        with self._lock:
            self._fd_samples.append((now, fds))
        return data

    # -- probes ---------------------------------------------------------------------------

    @probe
    def open_files(self, limit: int = 15, max_fds: int = 20000) -> dict[str, Any]:
        """Open file descriptors grouped by kind and path pattern, largest groups first.

        Paths have digits, hex ids, UUIDs and tempfile names replaced by ``*``, so many similar
        files (a leak) show as one group with a count, its fd range and two example paths.
        Groups that grew since the previous call of this probe show their growth.

        Args:
            limit: how many groups to return (the rest are counted).
            max_fds: how many descriptors to read at most.

        Cost: one readlink per descriptor (~3 µs each: ~6 ms at 2k fds), capped by max_fds.
        """
        limit = max(1, min(limit, 100))
        pairs, total = _list_fds(max(1, min(max_fds, 200_000)))
        groups: dict[tuple[str, str], dict[str, Any]] = {}
        kinds: Counter[str] = Counter()
        for fd, target in pairs:
            kind = fd_kind(target)
            kinds[kind] += 1
            key = (kind, path_pattern(target))
            group = groups.get(key)
            if group is None:
                groups[key] = {
                    "kind": kind,
                    # masking digits first could cut a secret in the path into pieces that
                    # redaction no longer recognises: the shown pattern is built redacted
                    "pattern": from_process(path_pattern(redact_text(target))),
                    "count": 1,
                    "fd_min": fd,
                    "fd_max": fd,
                    "examples": [from_process(target)],
                }
            else:
                group["count"] += 1
                group["fd_max"] = max(group["fd_max"], fd)
                if len(group["examples"]) < 2 and target not in group["examples"]:
                    group["examples"].append(from_process(target))
        ordered = sorted(groups.values(), key=lambda g: (-g["count"], -g["fd_max"]))
        now = time.time()
        previous = self._last_groups
        self._last_groups = (now, {f"{k[0]} {k[1]}": g["count"] for k, g in groups.items()})
        if previous is not None:
            _since, counts = previous
            for k, g in groups.items():
                g["growth_since_last_call"] = g["count"] - counts.get(f"{k[0]} {k[1]}", 0)
        soft, hard = _nofile_limits()
        highest = max(pairs, default=None)
        return {
            "open_fds": total,
            "scanned": len(pairs),
            "fd_soft_limit": soft,
            "fd_hard_limit": hard,
            "by_kind": dict(kinds.most_common()),
            "groups": ordered[:limit],
            "other_groups": max(0, len(ordered) - limit),
            "highest_fd": None
            if highest is None
            else {"fd": highest[0], "target": from_process(highest[1])},
            "seconds_since_last_call": None if previous is None else round(now - previous[0], 2),
        }

    @probe
    def sockets(self, limit: int = 15) -> dict[str, Any]:
        """This process's sockets grouped by family, type, status and remote endpoint.

        Args:
            limit: how many groups to return.

        Cost: reads the host's socket tables (/proc/net/tcp, udp, unix; O(host sockets)),
        typically under 5 ms.
        """
        conns = self._process.net_connections("all")
        by_status: Counter[str] = Counter()
        groups: Counter[tuple[str, str, str, str]] = Counter()
        for c in conns:
            family = getattr(c.family, "name", str(c.family)).removeprefix("AF_")
            stype = getattr(c.type, "name", str(c.type)).removeprefix("SOCK_")
            status = c.status or "NONE"
            by_status[status] += 1
            # unix sockets carry paths (str) where the stubs only know tuples
            raddr: Any = c.raddr
            laddr: Any = c.laddr
            if raddr:
                remote = _endpoint(raddr)
            elif laddr:
                # a listening or unconnected socket: its own port, or its path pattern
                local = _endpoint(laddr)
                # (a path is redacted before its digits are masked, as in open_files)
                shown = path_pattern(redact_text(local)) if family == "UNIX" else local
                remote = f"local {shown}"
            else:
                remote = "unbound"
            groups[(family, stype, status, remote)] += 1
        return {
            "sockets": len(conns),
            "by_status": dict(by_status.most_common()),
            "groups": [
                {"family": f, "type": t, "status": s, "endpoint": from_process(r), "count": n}
                for (f, t, s, r), n in groups.most_common(max(1, min(limit, 100)))
            ],
            "other_groups": max(0, len(groups) - limit),
        }

    @probe
    def fd_growth(self, window_s: float = 600.0) -> dict[str, Any]:
        """How the open fd count moved over time, with its slope and time to the soft limit.

        Reads the metrics store's ``open_fds`` series (recorded by snapshots and the sampler)
        and this skill's own snapshot samples, plus one fresh count.

        Args:
            window_s: how far back to look, in seconds.

        Cost: O(samples in the window), under 1 ms; no descriptors are listed.
        """
        now = time.time()
        since = now - max(window_s, 1.0)
        points: dict[float, float] = {}
        for t, v in metrics_store.series(self.id, "open_fds", since):
            points[round(t, 3)] = v
        with self._lock:
            for t, n in self._fd_samples:
                if t >= since:
                    points.setdefault(round(t, 3), float(n))
        current = count_fds()
        points[round(now, 3)] = float(current)
        series = sorted(points.items())
        soft, _ = _nofile_limits()
        slope = _slope(series)
        first_t, first_v = series[0]
        out: dict[str, Any] = {
            "open_fds": current,
            "points": len(series),
            "span_s": round(now - first_t, 1),
            "first": int(first_v),
            "min": int(min(v for _, v in series)),
            "max": int(max(v for _, v in series)),
            "change": int(current - first_v),
            "slope_per_min": None if slope is None else round(slope * 60, 2),
            "fd_soft_limit": soft,
            "series": [[round(t - now, 1), int(v)] for t, v in _downsample(series, 20)],
        }
        if slope and slope > 0 and soft:
            out["seconds_to_soft_limit"] = round(max(soft - current, 0) / slope, 1)
        if len(series) < 3:
            out["note"] = "few samples: take snapshots some seconds apart to see a trend"
        return out

    @probe
    def limits(self) -> dict[str, Any]:
        """Resource limits (soft, hard) with current usage where known, RLIMIT_NOFILE first.

        Cost: a few getrlimit calls and one batched /proc/self read (~50 µs).
        """
        if sys.platform == "win32":
            return {"error": "resource limits are not available on this platform"}
        fds = count_fds()
        soft, hard = _nofile_limits()
        out: dict[str, Any] = {
            "nofile": {
                "soft": soft,
                "hard": hard,
                "open_fds": fds,
                "percent_of_soft": round(100.0 * fds / soft, 2) if soft else None,
                "headroom": soft - fds if soft else None,
                "soft_can_be_raised_to": hard,
            }
        }
        proc = self._process
        with proc.oneshot():
            usage = {
                "RLIMIT_NPROC": proc.num_threads(),
                "RLIMIT_AS": proc.memory_info().vms,
                "RLIMIT_CPU": sum(proc.cpu_times()[:2]),
            }
        for name in (
            "RLIMIT_NPROC",
            "RLIMIT_AS",
            "RLIMIT_DATA",
            "RLIMIT_RSS",
            "RLIMIT_STACK",
            "RLIMIT_CORE",
            "RLIMIT_CPU",
            "RLIMIT_MEMLOCK",
            "RLIMIT_FSIZE",
        ):
            const = getattr(resource, name, None)
            if const is None:
                continue
            s, h = resource.getrlimit(const)
            entry: dict[str, Any] = {
                "soft": "unlimited" if s == resource.RLIM_INFINITY else s,
                "hard": "unlimited" if h == resource.RLIM_INFINITY else h,
            }
            if name in usage:
                entry["current"] = round(usage[name], 2)
                if name == "RLIMIT_NPROC":
                    entry["note"] = (
                        "counts all processes/threads of the user; current = this process's threads"
                    )
            out[name.removeprefix("RLIMIT_").lower()] = entry
        return out

    @probe(budget=8.0, intrusive="tracemalloc")  # a window of up to 5 s, then one pass
    def created(self, kind: str = "socket", seconds: float = 1.0) -> dict[str, Any]:
        """Where new handles are created: the user code (function, file:line) that allocated
        the open sockets, files or child processes (`subprocess.Popen`) created during a short
        tracemalloc window.

        Args:
            kind: "socket", "file" or "child".
            seconds: the window (0.2 to 5).

        Cost: allocations are traced for `seconds` (slower meanwhile), then one pass over the
        collector's objects (~30 ms at 1M objects).
        """
        if kind not in _CREATED_KINDS:
            raise ValueError(f"kind must be one of {', '.join(_CREATED_KINDS)}")
        from lensbook.skills.creation import created_where

        result = created_where(lambda: _open_handles(kind), seconds)
        return {"kind": kind, **result}

    @probe
    def children(self, limit: int = 20) -> dict[str, Any]:
        """Child processes (recursive): pid, name, status, age, RSS, CPU; zombies counted.

        Command lines are shown only when the user opted in (`share_command_lines` or
        ``$LENSBOOK_SHARE_COMMAND_LINES=1``).

        Args:
            limit: how many children to list (oldest first); all are counted.

        Cost: builds the host's parent map from /proc (O(host processes), ~1-3 ms), then a
        batched read per listed child.
        """
        kids = self._process.children(recursive=True)
        statuses: Counter[str] = Counter()
        listed: list[dict[str, Any]] = []
        now = time.time()
        rows: list[tuple[float, dict[str, Any]]] = []
        for child in kids:
            try:
                with child.oneshot():
                    status = child.status()
                    created = child.create_time()
                    row: dict[str, Any] = {
                        "pid": child.pid,
                        "ppid": child.ppid(),
                        "name": from_process(child.name()),
                        "status": status,
                        "age_s": round(now - created, 1),
                    }
                    if status != psutil.STATUS_ZOMBIE:
                        cpu = child.cpu_times()
                        row["rss_mb"] = _mb(child.memory_info().rss)
                        row["cpu_s"] = round(cpu.user + cpu.system, 2)
                        shown = self.command_line(child.cmdline(), 160)
                        if shown is not None:
                            row["cmdline"] = shown
            except (psutil.NoSuchProcess, psutil.AccessDenied):
                continue
            statuses[status] += 1
            rows.append((created, row))
        rows.sort(key=lambda r: r[0])
        listed = [r for _, r in rows[: max(1, min(limit, 200))]]
        zombies = {r["pid"]: r for r in listed if r["status"] == psutil.STATUS_ZOMBIE}
        # a zombie has no command line left in /proc: the Popen that started it still knows
        for pid, command in _popen_commands(set(zombies)).items():
            # (this process's own Popen object: the user's data, redacted, marked as such)
            zombies[pid]["popen_args"] = from_process(command)
        return {
            "children": len(rows),
            "by_status": dict(statuses.most_common()),
            "zombies": statuses.get(psutil.STATUS_ZOMBIE, 0),
            "listed": listed,
        }

    @probe
    def activity(self, interval: float = 0.5) -> dict[str, Any]:
        """I/O counters, context switches, CPU times and page faults, with rates per second.

        Rates are over the time since this probe's previous reading; when there is none (or it
        is older than 5 minutes) the probe measures over `interval` seconds.

        Args:
            interval: seconds to measure over when there is no recent previous reading (<= 2).

        Cost: one batched psutil read (/proc/self/io, stat, status; ~60 µs), plus the
        interval's sleep when it has to measure.
        """
        now = time.time()
        previous = self._last_activity
        if previous is None or now - previous[0] > 300 or now - previous[0] < 0.05:
            previous = (time.time(), self._activity_counters())
            time.sleep(min(max(interval, 0.05), 2.0))
            now = time.time()
        counters = self._activity_counters()
        self._last_activity = (now, counters)
        span = now - previous[0]
        rates = {
            f"{k}_per_s": round((v - previous[1].get(k, v)) / span, 2)
            for k, v in counters.items()
            if span > 0 and k != "threads"
        }
        return {"window_s": round(span, 2), "totals": counters, "rates": rates}

    def _activity_counters(self) -> dict[str, float]:
        proc = self._process
        out: dict[str, float] = {}
        with proc.oneshot():
            cpu = proc.cpu_times()
            ctx = proc.num_ctx_switches()
            out["cpu_user_s"] = round(cpu.user, 3)
            out["cpu_system_s"] = round(cpu.system, 3)
            out["ctx_voluntary"] = ctx.voluntary
            out["ctx_involuntary"] = ctx.involuntary
            out["threads"] = proc.num_threads()
            try:
                io = proc.io_counters()
            except (psutil.AccessDenied, AttributeError, OSError):
                io = None
            if io is not None:
                out["io_read_calls"] = io.read_count
                out["io_write_calls"] = io.write_count
                out["io_disk_read_mb"] = _mb(io.read_bytes)
                out["io_disk_write_mb"] = _mb(io.write_bytes)
                for name in ("read_chars", "write_chars"):
                    if hasattr(io, name):
                        out[f"io_{name}_mb"] = _mb(getattr(io, name))
        if sys.platform != "win32":
            ru = resource.getrusage(resource.RUSAGE_SELF)
            out["minor_faults"] = ru.ru_minflt
            out["major_faults"] = ru.ru_majflt
        return out

    @probe
    def memory_maps(self, limit: int = 12) -> dict[str, Any]:
        """Memory mappings summarised: RSS/PSS/swap by category (heap, anonymous, stacks,
        shared libraries, other files) and the largest mappings by RSS.

        Args:
            limit: how many of the largest mappings to list.

        Cost: reads /proc/self/smaps (O(mappings): ~10 ms at 100 mappings with pandas loaded,
        more with many mappings).
        """
        maps = self._process.memory_maps(grouped=True)
        cats: dict[str, dict[str, float]] = {}
        rows: list[tuple[int, dict[str, Any]]] = []
        for m in maps:
            path = m.path or "[anon]"
            cat = _map_category(path)
            c = cats.setdefault(cat, {"mappings": 0, "rss_mb": 0.0, "pss_mb": 0.0, "swap_mb": 0.0})
            c["mappings"] += 1
            c["rss_mb"] += m.rss / MB
            c["pss_mb"] += getattr(m, "pss", 0) / MB
            c["swap_mb"] += getattr(m, "swap", 0) / MB
            rows.append(
                (
                    m.rss,
                    {
                        "path": from_process(path),
                        "category": cat,
                        "rss_mb": _mb(m.rss),
                        "swap_mb": _mb(getattr(m, "swap", 0)),
                    },
                )
            )
        rows.sort(key=lambda r: -r[0])
        return {
            "mappings": len(maps),
            "rss_mb": _mb(sum(r for r, _ in rows)),
            "by_category": {
                k: {kk: round(vv, 2) for kk, vv in v.items()}
                for k, v in sorted(cats.items(), key=lambda kv: -kv[1]["rss_mb"])
            },
            "largest": [r for _, r in rows[: max(1, min(limit, 50))]],
        }

    def rules(self) -> Sequence[Rule]:
        return (FdGrowth(), FdPressure(), ChildZombies(), GrowthSinceLoad())


def _endpoint(addr: Any) -> str:
    """``ip:port`` for inet addresses, the path for unix ones."""
    if isinstance(addr, tuple) and len(addr) == 2:
        return f"{addr[0]}:{addr[1]}"
    return str(addr)


def _map_category(path: str) -> str:
    if path == "[heap]":
        return "heap"
    if path.startswith("[stack"):
        return "stack"
    if path in ("[vdso]", "[vvar]", "[vsyscall]") or path.startswith("[vvar"):
        return "kernel"
    if path.startswith("["):
        return "anonymous"
    if ".so" in os.path.basename(path) or path.endswith((".dylib", ".pyd")):
        return "shared_libraries"
    return "files"


def _downsample(points: Sequence[tuple[float, float]], n: int) -> list[tuple[float, float]]:
    if len(points) <= n:
        return list(points)
    step = (len(points) - 1) / (n - 1)
    return [points[round(i * step)] for i in range(n)]


# -- rules for the offline investigator ---------------------------------------------------

_FD_WORDS = re.compile(
    r"\b(fds?|file ?descriptors?|descriptors?|open files?|sockets?|"
    r"too many open files|emfile|handles?)\b",
    re.I,
)

#: growth of open fds between two snapshots that is worth a look (absolute and relative)
FD_GROWTH_MIN = 16
FD_GROWTH_MIN_FRACTION = 0.02


def _fd_growth(ev: Evidence) -> tuple[float, float, float, float | None]:
    """(first, last, change, rate per second) of open_fds across the run's snapshots."""
    first, last = as_number(ev.first("open_fds")), as_number(ev.latest("open_fds"))
    return first, last, last - first, ev.rate("open_fds")


def _is_growing(ev: Evidence) -> bool:
    if len(ev.snapshots) < 2:
        return False
    first, _last, change, _rate = _fd_growth(ev)
    values = [as_number(s.get("open_fds")) for s in ev.snapshots]
    # a leak only rises: each snapshot at or above the one before (small dips allowed)
    rising = all(b >= a - 2 for a, b in itertools.pairwise(values))
    return rising and change >= _growth_threshold(first)


def _top_group(ev: Evidence) -> dict[str, Any] | None:
    listing = ev.result("process_open_files")
    if not isinstance(listing, dict):
        return None
    groups = [g for g in listing.get("groups") or [] if isinstance(g, dict)]
    if not groups:
        return None
    # the group that grew most since the previous listing, else the largest
    grown = [g for g in groups if as_number(g.get("growth_since_last_call")) > 0]
    if grown:
        return max(grown, key=lambda g: as_number(g.get("growth_since_last_call")))
    return max(groups, key=lambda g: as_number(g.get("count")))


def _group_text(g: dict[str, Any]) -> str:
    examples = ", ".join(str(e) for e in g.get("examples") or [])
    text = (
        f"{g.get('count')} x {g.get('kind')} '{g.get('pattern')}' "
        f"(fds {g.get('fd_min')}..{g.get('fd_max')}"
    )
    return text + (f"; e.g. {examples})" if examples else ")")


def _limit_text(ev: Evidence) -> str:
    soft = as_number(ev.latest("fd_soft_limit"), -1)
    fds = as_number(ev.latest("open_fds"))
    if soft <= 0:
        return "RLIMIT_NOFILE is unlimited"
    used = f"{100 * fds / soft:.1f}% used, {int(soft - fds)} left"
    return f"RLIMIT_NOFILE soft limit {int(soft)} ({used})"


def _socket_groups(ev: Evidence, n: int = 3) -> str:
    found = ev.result("process_sockets")
    if not isinstance(found, dict):
        return ""
    groups = [g for g in found.get("groups") or [] if isinstance(g, dict)][:n]
    return ", ".join(
        f"{g.get('count')} x {g.get('family')} {g.get('type')} {g.get('status')} "
        f"{g.get('endpoint')}"
        for g in groups
    )


def _history_growth(ev: Evidence) -> dict[str, Any] | None:
    """The fd_growth result when the stored history (a minute or more) shows a steady rise."""
    history = ev.result("process_fd_growth")
    if not isinstance(history, dict) or as_number(history.get("span_s")) < 60:
        return None
    values = [
        as_number(p[1]) for p in history.get("series") or [] if isinstance(p, list) and len(p) == 2
    ]
    if len(values) < 4:
        return None
    quarter = max(1, len(values) // 4)
    # a steady rise: the last quarter's lowest point above the first quarter's highest
    steady = min(values[-quarter:]) > max(values[:quarter])
    change = values[-1] - values[0]
    return history if steady and change >= _growth_threshold(values[0]) else None


def _growth_threshold(first: float) -> float:
    return max(FD_GROWTH_MIN, FD_GROWTH_MIN_FRACTION * first)


def _hypothesis(top: dict[str, Any] | None) -> str:
    if top is None:
        return (
            "descriptors are opened and never closed; list them with process_open_files to "
            "find the pattern"
        )
    return (
        f"{top.get('kind')}s matching '{top.get('pattern')}' are opened and never closed (a "
        "missing close() or `with` block, or objects holding them kept alive); when the limit "
        "is hit, open() fails with EMFILE 'Too many open files'"
    )


class FdGrowth(Rule):
    """Open fds rising steadily: a descriptor leak, named by its path pattern.

    Judged from the run's snapshots (`gap` seconds apart) and from the metrics store's longer
    history (`process_fd_growth`), which catches leaks too slow to show in a few seconds.
    """

    name = "fd_growth"
    snapshots_needed = 2
    gap = 2.0

    def wants(self, ev: Evidence) -> Sequence[ProbeCall]:
        if not ev.snapshots:
            return ()
        calls = [ProbeCall("process_fd_growth", {"window_s": 3600.0})]
        if _FD_WORDS.search(ev.reason):
            # a first listing, so the one after the growth shows which group grew
            calls.append(ProbeCall("process_open_files", {"limit": 15}))
        if _is_growing(ev) or _history_growth(ev) is not None:
            calls.append(ProbeCall("process_open_files", {"limit": 10}))
            top = _top_group(ev)
            if top is not None and top.get("kind") == "socket":
                # a socket's path says nothing: the endpoints name the culprit
                calls.append(ProbeCall("process_sockets", {"limit": 5}))
            if top is not None and top.get("kind") in ("socket", "file"):
                # and the code that keeps creating them names it in the user's terms
                calls.append(ProbeCall("process_created", {"kind": top["kind"]}))
        return calls

    def judge(self, ev: Evidence) -> Sequence[Finding]:
        soft = as_number(ev.latest("fd_soft_limit"), -1)
        last = as_number(ev.latest("open_fds"))
        top = _top_group(ev)
        history = _history_growth(ev)
        if _is_growing(ev):
            first, last, change, rate = _fd_growth(ev)
            span = ev.elapsed()
            per_s = rate if rate is not None else 0.0
            observation = (
                f"open file descriptors grew from {int(first)} to {int(last)} "
                f"(+{int(change)} in {span:.1f} s, {per_s:.1f}/s) across "
                f"{len(ev.snapshots)} snapshots"
            )
        elif history is not None:
            per_s = as_number(history.get("slope_per_min")) / 60
            observation = (
                f"open file descriptors grew from {history.get('first')} to "
                f"{history.get('open_fds')} (+{history.get('change')} in "
                f"{as_number(history.get('span_s')):.0f} s, {per_s * 60:.1f}/min) in the sampled "
                "history; the run's own snapshots are too close together to show it"
            )
        else:
            return []
        if top is not None:
            observation += f"; the largest group of open descriptors is {_group_text(top)}"
            grown = as_number(top.get("growth_since_last_call"))
            if grown > 0:
                observation += f", +{int(grown)} since the previous listing"
            endpoints = _socket_groups(ev) if top.get("kind") == "socket" else ""
            if endpoints:
                observation += f"; sockets by endpoint: {endpoints}"
            if top.get("kind") in ("socket", "file"):
                observation += _created_text(ev, str(top["kind"]))
        context = _limit_text(ev)
        if history is not None and _is_growing(ev):
            context += (
                f"; the sampled history agrees: {history.get('first')} -> "
                f"{history.get('open_fds')} over {as_number(history.get('span_s')):.0f} s"
            )
        eta = (soft - last) / per_s if soft > 0 and per_s > 0 else None
        if eta is not None:
            context += f"; at this rate the soft limit is reached in about {_duration(eta)}"
        critical = (eta is not None and eta < 120) or (soft > 0 and last / soft >= 0.9)
        return [
            Finding(
                "fd_leak",
                "critical" if critical else "warning",
                context=context,
                observation=observation,
                hypothesis=_hypothesis(top),
            )
        ]


class FdPressure(Rule):
    """Open fds close to the RLIMIT_NOFILE soft limit, growing or not."""

    name = "fd_pressure"
    warning_percent = 75.0
    critical_percent = 90.0

    def _percent(self, ev: Evidence) -> float:
        soft = as_number(ev.latest("fd_soft_limit"), -1)
        return 100.0 * as_number(ev.latest("open_fds")) / soft if soft > 0 else 0.0

    def wants(self, ev: Evidence) -> Sequence[ProbeCall]:
        if self._percent(ev) >= self.warning_percent:
            return [ProbeCall("process_open_files", {"limit": 10}), ProbeCall("process_limits")]
        return ()

    def judge(self, ev: Evidence) -> Sequence[Finding]:
        pct = self._percent(ev)
        if pct < self.warning_percent:
            return []
        top = _top_group(ev)
        open_fds = int(as_number(ev.latest("open_fds")))
        observation = f"{open_fds} descriptors are open: {_limit_text(ev)}"
        if top is not None:
            observation += f"; the largest group is {_group_text(top)}"
        lim = ev.result("process_limits")
        hard = lim.get("nofile", {}).get("hard") if isinstance(lim, dict) else None
        context = "new open()/socket()/pipe() calls fail with EMFILE once the soft limit is reached"
        if hard:
            context += f"; the hard limit is {hard} (the soft limit can be raised to it)"
        return [
            Finding(
                "fd_pressure",
                "critical" if pct >= self.critical_percent else "warning",
                context=context,
                observation=observation,
                hypothesis="descriptors are held longer than needed (a leak or an oversized pool)",
            )
        ]


#: OS threads more than the flight recorder's baseline that count (and this share more)
THREADS_SINCE_LOAD_MIN = 20
THREADS_SINCE_LOAD_SHARE = 0.5
#: child processes more than at the baseline that count (a pool of workers started once is
#: a handful; a Popen per request never waited for grows without end)
CHILDREN_SINCE_LOAD_MIN = 8
CHILDREN_SINCE_LOAD_SHARE = 0.5


class GrowthSinceLoad(Rule):
    """Open descriptors, OS threads and child processes that grew since lensbook loaded, from
    the flight recorder's sampled metrics; the descriptors only where `FdGrowth` does not
    report them."""

    name = "process_growth_since_load"
    history_kinds = ("metrics",)

    def judge(self, ev: Evidence) -> Sequence[Finding]:
        grown: list[tuple[str, MetricChange]] = []
        fds = metric_change(ev.history, "open_fds")
        if (
            fds is not None
            and not (_is_growing(ev) or _history_growth(ev) is not None)
            and fds.change >= max(4 * FD_GROWTH_MIN, 0.5 * fds.first)
        ):
            grown.append(("open file descriptors", fds))
        threads = metric_change(ev.history, "threads")
        if threads is not None and threads.change >= max(
            THREADS_SINCE_LOAD_MIN, THREADS_SINCE_LOAD_SHARE * threads.first
        ):
            grown.append(("OS threads", threads))
        children = metric_change(ev.history, "children")
        if children is not None and children.change >= max(
            CHILDREN_SINCE_LOAD_MIN, CHILDREN_SINCE_LOAD_SHARE * children.first
        ):
            grown.append(("child processes", children))
        if not grown:
            return []
        parts = [f"{label} went from {course(change)}" for label, change in grown]
        ids = list(dict.fromkeys(i for _, change in grown for i in change.ids))
        steady = any(change.steady for _, change in grown)
        return [
            Finding(
                anomaly_type="process_growth_since_load",
                severity="warning" if steady else "info",
                context="judged on the runtime metrics the flight recorder sampled before the run",
                observation="; ".join(parts),
                hypothesis=(
                    "resources opened or started per task and not released; "
                    "process_open_files groups descriptors by path, the threads skill names "
                    "which code starts the threads, process_children lists the children "
                    "(a Popen never waited for, a pool never closed) with their commands"
                ),
                history_ids=tuple(ids),
            )
        ]


class ChildZombies(Rule):
    """Exited children never reaped (zombies), named by the command their Popen ran.

    The children are always listed once (a few ms): zombies are evidence whatever the reason
    says.
    """

    name = "child_zombies"
    threshold = 3

    def wants(self, ev: Evidence) -> Sequence[ProbeCall]:
        if not ev.snapshots:
            return ()
        kids = ev.result("process_children")
        if isinstance(kids, dict) and as_number(kids.get("zombies")) >= self.threshold:
            return [ProbeCall("process_created", {"kind": "child"})]
        return [ProbeCall("process_children", {"limit": 20})]

    def judge(self, ev: Evidence) -> Sequence[Finding]:
        kids = ev.result("process_children")
        if not isinstance(kids, dict) or as_number(kids.get("zombies")) < self.threshold:
            return []
        names = Counter(
            str(k.get("name"))
            for k in kids.get("listed") or []
            if isinstance(k, dict) and k.get("status") == psutil.STATUS_ZOMBIE
        )
        named = ", ".join(f"{n} x {c}" for n, c in names.most_common(3)) or "unnamed"
        commands = Counter(
            _command_pattern(str(k["popen_args"]))
            for k in kids.get("listed") or []
            if isinstance(k, dict) and k.get("popen_args")
        )
        if commands:
            named += (
                "; started by subprocess.Popen("
                + ", ".join(f"{c!r} x {n}" for c, n in commands.most_common(3))
                + ") objects still alive, never wait()ed"
            )
        named += _created_text(ev, "child")
        return [
            Finding(
                "zombie_children",
                "warning",
                context=f"{kids.get('children')} child processes, "
                f"by status {kids.get('by_status')}",
                observation=f"{int(as_number(kids.get('zombies')))} children exited and were never "
                f"reaped (zombies: {named})",
                hypothesis="subprocess.Popen objects are dropped or never wait()ed/communicate()d; "
                "each zombie keeps a pid and its exit status",
            )
        ]


_CREATED_KINDS = ("socket", "file", "child")


def _open_handles(kind: str, seconds: float = 2.0) -> list[Any]:
    """Live, open objects of a kind, found among the collector's objects in at most `seconds`
    (a paced walk); no user code runs (types are matched by `type`'s own checks, and only
    built-in methods and stored attributes are read)."""
    import _io

    found: list[Any] = []
    if kind == "socket":
        native = sys.modules.get("_socket")
        if native is None:
            return []
        # (the C socket: the stdlib's and its subclasses'; another library's socket class,
        # gevent's, is not one, and its fileno would be its own code)
        for obj in _live(native.socket, seconds):
            if native.socket.fileno(obj) >= 0:
                found.append(obj)
    elif kind == "child":
        for obj in _live(_popen_class(), seconds):
            if stored_attr(obj, "returncode") is not None:
                continue
            found.append(obj)
    else:  # (io.IOBase is an ABC: its subclass check would run Python code)
        for obj in _live(_io._IOBase, seconds):
            if _io_closed(obj) is False:
                found.append(obj)
    return found


def _io_closed(obj: Any) -> bool | None:
    """Whether a built-in file object is closed, read at its innermost layer (a text wrapper's
    buffer, a buffer's raw file) when every layer is a built-in one; None otherwise (a wrapper
    asks what it wraps, and that may be the program's class, whose code would run)."""
    layer = obj
    for _ in range(4):
        if type_module(type(layer)) != "_io":
            return None
        inner = next(
            (stored_attr(layer, n) for n in ("buffer", "raw") if stored_attr(layer, n) is not None),
            None,
        )
        if inner is None:
            try:
                return bool(layer.closed)
            except Exception:  # (a detached wrapper raises ValueError)
                return None
        layer = inner
    return None


def _popen_class() -> type | None:
    """`subprocess.Popen` if the process imported it and it is a plain class (not a mock)."""
    module = sys.modules.get("subprocess")
    popen = stored_attr(module, "Popen") if module is not None else None
    return popen if type(popen) is type else None


def _live(wanted: type | None, seconds: float) -> Iterator[Any]:
    """The tracked objects whose type is `wanted` or derives from it, in a paced walk of at
    most `seconds`."""
    if wanted is None:
        return
    deadline = time.perf_counter() + seconds
    pace = Pacer()  # made first: the heap step counts as work, and is followed by a rest
    heap = _heap.objects()
    for hits in heap.of_types(lambda t: issubclass(t, wanted), deadline, pace):
        yield from hits
        del hits
    del heap


def _created_text(ev: Evidence, kind: str) -> str:
    """'; new sockets are created at f.py:12 in fetch (9 in the 1.0 s window)' or ''."""
    result = next(
        (v for a, v in ev.results.get("process_created", []) if a.get("kind") == kind), None
    )
    if not isinstance(result, dict) or not result.get("sites"):
        return ""
    lead = result["sites"][0]
    via = f" (via {lead['via']})" if lead.get("via") else ""
    noun = {"socket": "sockets", "file": "files", "child": "child processes"}[kind]
    return (
        f"; new {noun} still open are created at {lead['site']}{via}: {lead['count']} in the "
        f"{result.get('window_s')} s window"
    )


def _command_pattern(command: str) -> str:
    """A command with its numbers replaced by ``*``, so one call site's children group."""
    return re.sub(r"\d+", "*", command)


def _popen_commands(pids: set[int]) -> dict[int, str]:
    """pid -> the (redacted) command of the live `subprocess.Popen` objects of these pids.

    Cost: one paced walk of the collector's objects (at most 1 s), only when asked.
    """
    found: dict[int, str] = {}
    if not pids:
        return found
    for obj in _live(_popen_class(), 1.0):
        pid = stored_attr(obj, "pid")
        if type(pid) is not int or pid not in pids:
            continue
        args = stored_attr(obj, "args")
        words = list(args) if type(args) in (list, tuple) else [args]
        text = " ".join(map(_word, words))
        found[pid] = clip(text, 160, marker="")
        if len(found) == len(pids):
            break
    return found


def _word(arg: Any) -> str:
    """One argument of a command as the user wrote it (strings, bytes and paths of the
    standard library; anything else by its type, whose str() could be the program's code)."""
    if type(arg) is str:
        return arg
    if type(arg) is bytes:
        return arg.decode(errors="replace")
    if (type_module(type(arg)) or "").startswith("pathlib"):  # (3.13: pathlib._local)
        return str(os.fspath(arg))
    return f"<{type_name(type(arg))}>"


def _duration(seconds: float) -> str:
    if seconds < 120:
        return f"{seconds:.0f} s"
    if seconds < 7200:
        return f"{seconds / 60:.0f} min"
    return f"{seconds / 3600:.1f} h"
