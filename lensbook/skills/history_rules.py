"""Rules that read the flight recorder's history (`Evidence.history`): what happened before the
run was asked for, not only what changes during its snapshots.

Each names the `history_kinds` it reads; the offline investigator asks for them once, and a
finding cites the events it rests on (`Finding.history_ids`, "h-..."). They answer for the past,
so each steps aside where its skill's live rule already reports the same thing from the run's own
probes (the same exception site in the last minute, a burst still going on).

Thresholds are module constants, named once here.
"""

from __future__ import annotations

import os
import time
from collections.abc import Iterable, Sequence
from typing import Any

from lensbook.skills._history import by_route
from lensbook.skills._history import clock as _clock
from lensbook.skills.rules import Evidence, Finding, Rule
from lensbook.types import Severity

__all__ = [
    "CellErrorsSinceLoad",
    "GcPausesSinceLoad",
    "PastErrorLogBursts",
    "PastExceptionBursts",
    "PastLoopStalls",
    "PastThreadDeaths",
    "PastUncaught",
    "ThreadGrowthByKind",
    "bursts",
]

#: a burst: at least this many occurrences at this rate (per second) or more
BURST_MIN = 10
BURST_RATE = 1.0
#: windows of one signature closer than this (seconds) belong to one burst
BURST_GAP_S = 25.0
#: the live rules see the last few seconds; a burst that ended longer ago is history's to tell
LIVE_WINDOW_S = 10.0
#: threads of one kind alive (started while recording and not ended) that make growth, when
#: they belong to this many pools started from one place (a pool per call), or alone
GROWTH_ALIVE = 5
GROWTH_POOLS = 3
GROWTH_WARNING = 50
#: a loop stall worth a notification (ms), or this many stalls of any length
STALL_MS = 250.0
STALL_COUNT = 3
#: error records per logger that make a burst
ERROR_LOG_MIN = 20
#: cells failing at one site this many times (a cell rerun into the same error), or this many
#: failing cells in all
CELL_SAME_SITE = 3
CELL_ERRORS = 10
#: a full-collection pause (ms) that, twice or more, makes the finding a warning (each recorded
#: one is over the recorder's own threshold, 50 ms; a single one is information)
GC_PAUSE_WARNING_MS = 250.0


def _ago(at: float, now: float) -> str:
    seconds = max(now - at, 0.0)
    if seconds < 120:
        return f"{seconds:.0f} s ago"
    if seconds < 7200:
        return f"{seconds / 60:.0f} min ago"
    return f"{seconds / 3600:.1f} h ago"


def _now(ev: Evidence) -> float:
    return ev.snapshot_times[-1] if ev.snapshot_times and ev.snapshot_times[-1] else time.time()


def _site(where: str) -> str:
    """file name and line of a "path:line" or "path:line in function" text."""
    path = where.split(" in ", 1)[0]
    return os.path.basename(path)


def _ids(events: Iterable[dict[str, Any]], limit: int = 8) -> tuple[str, ...]:
    ids = [str(e["id"]) for e in events if e.get("id")]
    return tuple(ids[-limit:])


def _live_uncaught_sites(ev: Evidence) -> set[tuple[str, str]]:
    """(type, site) of the groups the exceptions skill's own probes saw in their window."""
    top = ev.result("exceptions_top")
    groups = top.get("groups", []) if isinstance(top, dict) else []
    return {
        (str(g.get("type")), _site(str(g.get("where", ""))))
        for g in groups
        if isinstance(g, dict) and g.get("in_window")
    }


class PastUncaught(Rule):
    """Exceptions nobody handled since the recorder started (threads that died, failed tasks,
    uncaught errors in the main thread or a cell), including those before the run."""

    name = "past_uncaught_exceptions"
    history_kinds = ("exception", "thread_died")

    def judge(self, ev: Evidence) -> Sequence[Finding]:
        live = _live_uncaught_sites(ev)
        events = [
            e
            for e in ev.history_of("exception")
            if (e["detail"].get("type"), _site(str(e["detail"].get("where", "")))) not in live
        ]
        if not events:
            return []
        now = _now(ev)
        deaths = [e for e in events if e["detail"].get("route") == "thread"]
        lead = (deaths or events)[-1]
        d = lead["detail"]
        died = next(
            (
                x
                for x in ev.history_of("thread_died")
                if x["detail"].get("thread") == d.get("thread")
                and x["detail"].get("where") == d.get("where")
            ),
            None,
        )
        started = (
            f"; the thread ran {died['detail'].get('target')}, started from "
            f"{died['detail'].get('started_from')}"
            if died and died["detail"].get("started_from")
            else ""
        )
        routes = sorted({str(e["detail"].get("route")) for e in events})
        trace = " <- ".join(reversed([str(s) for s in d.get("stack", [])][-4:]))
        how = (
            f"ended thread {d.get('thread')!r}"
            if lead in deaths
            else f"was not handled ({d.get('route')})"
        )
        return [
            Finding(
                anomaly_type="thread_died" if deaths else "uncaught_exception",
                severity="warning",
                context=(
                    f"{len(events)} unhandled exception(s) recorded by the flight recorder "
                    f"(routes: {', '.join(routes)}), {len(deaths)} of them ended a thread; the "
                    f"latest at {_clock(lead['time'])} UTC, {_ago(lead['time'], now)}"
                ),
                observation=(
                    f"{d.get('type')}({d.get('message', '')!r}) {how}: raised at {d.get('where')} "
                    f"in {d.get('function')}{started}"
                    + (f"; traceback (innermost first): {trace}" if trace else "")
                ),
                hypothesis=(
                    f"the work that thread did stopped silently when {d.get('type')} escaped "
                    f"{d.get('function')}: nothing catches it there"
                    if lead in deaths
                    else f"nothing catches {d.get('type')} raised at {d.get('where')}"
                ),
                history_ids=_ids([lead, *([died] if died else []), *events[-5:]]),
            )
        ]


def bursts(events: Sequence[dict[str, Any]], key: str = "where") -> list[dict[str, Any]]:
    """Consecutive rate windows of one key merged into bursts: count, first, last, rate, ids."""
    found: dict[Any, list[dict[str, Any]]] = {}
    for e in events:
        d = e["detail"]
        group = (d.get("type"), d.get(key), d.get("level"))
        runs = found.setdefault(group, [])
        first = float(d.get("first") or e["time"] - float(d.get("window_s") or 0))
        last = float(d.get("last") or e["time"])
        if runs and first - runs[-1]["last"] <= BURST_GAP_S:
            run = runs[-1]
            run["count"] += int(d.get("count") or 0)
            run["last"] = max(run["last"], last)
            run["ids"].append(e["id"])
        else:
            runs.append(
                {
                    "detail": d,
                    "count": int(d.get("count") or 0),
                    "first": first,
                    "last": last,
                    "ids": [e["id"]],
                }
            )
    out = []
    for runs in found.values():
        for run in runs:
            run["rate_per_s"] = run["count"] / max(run["last"] - run["first"], 1.0)
            out.append(run)
    return sorted(out, key=lambda r: -r["count"])


class PastExceptionBursts(Rule):
    """One exception raised many times a second, even if the storm came and went before the run."""

    name = "past_exception_bursts"
    history_kinds = ("exception_rate",)

    def judge(self, ev: Evidence) -> Sequence[Finding]:
        now = _now(ev)
        live = ev.result("exceptions_summary")
        live_rate = (
            ((live or {}).get("last_10s") or {}).get("per_s") if isinstance(live, dict) else None
        )
        found = [
            b
            for b in bursts(ev.history_of("exception_rate"))
            if b["count"] >= BURST_MIN
            and b["rate_per_s"] >= BURST_RATE
            # a burst still going on is the live rule's to report, when it sees it
            and not (live_rate and live_rate >= BURST_RATE and now - b["last"] < LIVE_WINDOW_S)
        ]
        if not found:
            return []
        lead = found[0]
        d = lead["detail"]
        severity: Severity = "critical" if lead["rate_per_s"] >= 50 else "warning"
        kind = "uncaught" if d.get("uncaught") else "handled or logged"
        return [
            Finding(
                anomaly_type="exception_burst",
                severity=severity,
                context=(
                    f"{len(found)} burst(s) of exceptions in the flight recorder's history; the "
                    f"largest: {lead['count']} in {max(lead['last'] - lead['first'], 0.0):.1f} s"
                ),
                observation=(
                    f"burst of {lead['count']} {d.get('type')} ({kind}) raised at {d.get('where')} "
                    f"in {d.get('function')}, {lead['rate_per_s']:.1f}/s, from "
                    f"{_clock(lead['first'])} to {_clock(lead['last'])} UTC (ended "
                    f"{_ago(lead['last'], now)}); {d.get('total')} since recording started"
                ),
                hypothesis=(
                    f"a failure repeating in a loop: {d.get('type')} at {d.get('where')} again and "
                    "again (a retry without backoff, bad input replayed, a dependency down)"
                ),
                history_ids=_ids([{"id": i} for i in lead["ids"]]),
            )
        ]


class PastThreadDeaths(Rule):
    """Threads that died by an exception since the recorder started: their work stopped."""

    name = "past_thread_deaths"
    history_kinds = ("thread_died",)

    def judge(self, ev: Evidence) -> Sequence[Finding]:
        died = ev.history_of("thread_died")
        if not died:
            return []
        now = _now(ev)
        lead = died[-1]
        d = lead["detail"]
        names = ", ".join(sorted({repr(e["detail"].get("thread")) for e in died})[:5])
        return [
            Finding(
                anomaly_type="thread_died",
                severity="warning",
                context=(
                    f"{len(died)} thread(s) ended by an exception since the flight recorder "
                    f"started ({names}); the latest at {_clock(lead['time'])} UTC, "
                    f"{_ago(lead['time'], now)}"
                ),
                observation=(
                    f"thread {d.get('thread')!r} (target {d.get('target', '?')}, started from "
                    f"{d.get('started_from', '?')}) died on "
                    f"{d.get('type')}({d.get('message', '')!r}) at {d.get('where')} in "
                    f"{d.get('function')}"
                ),
                hypothesis="whatever that thread consumed or produced has stopped since then",
                history_ids=_ids(died),
            )
        ]


class ThreadGrowthByKind(Rule):
    """Threads of one kind (target and starting code) keep starting and do not end."""

    name = "thread_growth_by_kind"
    history_kinds = ("thread_growth",)

    def judge(self, ev: Evidence) -> Sequence[Finding]:
        groups = ev.result("threads_groups")
        if isinstance(groups, dict) and groups.get("groups"):
            return []  # the threads skill saw the growth during the run: its live rule tells it
        latest: dict[tuple[Any, ...], dict[str, Any]] = {}
        windows: dict[tuple[Any, ...], list[dict[str, Any]]] = {}
        for e in ev.history_of("thread_growth"):
            d = e["detail"]
            key = (d.get("target"), d.get("started_from"))
            latest[key] = e
            if d.get("started"):
                windows.setdefault(key, []).append(e)

        def grows(d: dict[str, Any]) -> bool:
            alive = int(d.get("alive") or 0)
            pools = int(d.get("pools") or 0)
            # a fixed pool started once is not growth; many pools from one place, or very
            # many live threads of one kind, is
            return alive >= GROWTH_WARNING or (alive >= GROWTH_ALIVE and pools >= GROWTH_POOLS)

        growing = sorted(
            (e for e in latest.values() if grows(e["detail"])),
            key=lambda e: -int(e["detail"].get("alive") or 0),
        )
        if not growing:
            return []
        lead = growing[0]
        d = lead["detail"]
        key = (d.get("target"), d.get("started_from"))
        spread = len(windows.get(key, []))
        severity: Severity = "warning"
        return [
            Finding(
                anomaly_type="thread_growth",
                severity=severity,
                context=(
                    f"{len(growing)} kind(s) of thread keep growing since the flight recorder "
                    f"began; the largest started threads in {spread} recording window(s)"
                ),
                observation=(
                    f"{d.get('alive')} thread(s) of kind {d.get('kind')!r} alive of "
                    f"{d.get('started_total')} started (target {d.get('target')})"
                    + (f" in {d.get('pools')} pools" if d.get("pools") else "")
                    + f", all started from {d.get('started_from')} in {d.get('function')}"
                ),
                hypothesis=(
                    "a new pool or thread per request that is never shut down"
                    if "concurrent.futures" in str(d.get("target"))
                    else f"{d.get('function')} starts threads that do not finish"
                ),
                history_ids=_ids(windows.get(key, [lead])),
            )
        ]


class PastLoopStalls(Rule):
    """An event loop blocked by synchronous code, named by coroutine and blocking call."""

    name = "past_loop_stalls"
    history_kinds = ("loop_lag",)

    def judge(self, ev: Evidence) -> Sequence[Finding]:
        groups: dict[tuple[Any, ...], list[dict[str, Any]]] = {}
        for e in ev.history_of("loop_lag"):
            d = e["detail"]
            if e.get("source") == "lens loop":
                continue  # lensbook's own loop: not the program's
            key = (d.get("thread"), d.get("coroutine"), d.get("where"))
            groups.setdefault(key, []).append(e)
        notable = [
            g
            for g in groups.values()
            if len(g) >= STALL_COUNT
            or max(float(e["detail"].get("lag_ms") or 0) for e in g) >= STALL_MS
        ]
        if not notable:
            return []
        now = _now(ev)
        notable.sort(key=lambda g: -sum(float(e["detail"].get("lag_ms") or 0) for e in g))
        group = notable[0]
        sampled = [e for e in group if e["detail"].get("sampled")]
        lead = (sampled or group)[-1]
        d = lead["detail"]
        worst = max(float(e["detail"].get("lag_ms") or 0) for e in group)
        blocked = (
            f"; it was blocked in coroutine {d.get('coroutine') or '?'} at {d.get('where')}, in "
            f"{d.get('function')}: {d.get('blocking_call')}"
            if d.get("sampled")
            else "; no stack sample caught the stall"
        )
        return [
            Finding(
                anomaly_type="event_loop_blocked",
                severity="warning" if worst >= 1000 or len(group) >= STALL_COUNT else "info",
                context=(
                    f"{sum(len(g) for g in notable)} stall(s) of event loops recorded; loop in "
                    f"thread {d.get('thread')!r}: {len(group)} stall(s), up to {worst:.0f} ms, the "
                    f"latest at {_clock(lead['time'])} UTC ({_ago(lead['time'], now)})"
                ),
                observation=(
                    f"{lead.get('source')} ran a callback {d.get('lag_ms')} ms late{blocked}"
                ),
                hypothesis=(
                    f"synchronous code inside a coroutine: {d.get('blocking_call')} blocks the "
                    "loop; run it with `await loop.run_in_executor(...)` or an async equivalent"
                    if d.get("sampled")
                    else "synchronous code blocks the loop"
                ),
                history_ids=_ids(group),
            )
        ]


class PastErrorLogBursts(Rule):
    """A logger that wrote errors at a high rate, even if it stopped before the run."""

    name = "past_error_log_bursts"
    history_kinds = ("log_rate",)

    def judge(self, ev: Evidence) -> Sequence[Finding]:
        now = _now(ev)
        errors = [
            e
            for e in ev.history_of("log_rate")
            if e["detail"].get("level") in ("ERROR", "CRITICAL")
        ]
        found = [
            b
            for b in bursts(errors, key="logger")
            if b["count"] >= ERROR_LOG_MIN
            and b["rate_per_s"] >= BURST_RATE
            and now - b["last"] >= LIVE_WINDOW_S  # a storm still on is ErrorStorm's to report
        ]
        if not found:
            return []
        lead = found[0]
        d = lead["detail"]
        return [
            Finding(
                anomaly_type="error_storm",
                severity="warning",
                context=(
                    f"{len(found)} past burst(s) of error records in the flight recorder's history"
                ),
                observation=(
                    f"logger {d.get('logger')!r} wrote {lead['count']} {d.get('level')} records at "
                    f"{lead['rate_per_s']:.1f}/s from {_clock(lead['first'])} to "
                    f"{_clock(lead['last'])} UTC (ended {_ago(lead['last'], now)})"
                ),
                hypothesis="a failure that repeated for a while and stopped (or moved elsewhere)",
                history_ids=_ids([{"id": i} for i in lead["ids"]]),
            )
        ]


class CellErrorsSinceLoad(Rule):
    """Notebook cells that raised since the recorder started: the same error again and again
    (a cell rerun into one failure), or many failing cells."""

    name = "cell_errors_since_load"
    history_kinds = ("exception",)

    def judge(self, ev: Evidence) -> Sequence[Finding]:
        cells = by_route(ev.history, "cell")
        if not cells:
            return []
        groups: dict[tuple[Any, Any], list[dict[str, Any]]] = {}
        for e in cells:
            groups.setdefault((e["detail"].get("type"), e["detail"].get("where")), []).append(e)
        repeated = max(groups.values(), key=len)
        if len(repeated) < CELL_SAME_SITE and len(cells) < CELL_ERRORS:
            return []
        now = _now(ev)
        d = repeated[-1]["detail"]
        numbers = [e["detail"].get("execution_count") for e in repeated]
        numbered = ", ".join(f"In [{n}]" for n in numbers[-5:] if isinstance(n, int))
        kinds = ", ".join(
            f"{t} at {w} x{len(g)}"
            for (t, w), g in sorted(groups.items(), key=lambda kv: -len(kv[1]))[:3]
        )
        return [
            Finding(
                anomaly_type="cell_errors",
                severity="info",
                context=(
                    f"{len(cells)} cell(s) ended in an exception since the flight recorder "
                    f"started, {len(groups)} distinct; the latest at "
                    f"{_clock(cells[-1]['time'])} UTC ({_ago(cells[-1]['time'], now)})"
                ),
                observation=(
                    f"most often {d.get('type')}({d.get('message', '')!r}) at {d.get('where')} "
                    f"in {d.get('function')}, {len(repeated)} time(s)"
                    + (f" ({numbered})" if numbered else "")
                    + f"; by error: {kinds}"
                ),
                hypothesis=(
                    f"the same cell keeps failing on {d.get('type')} at {d.get('where')}: "
                    "rerunning it will not help until that is fixed (each failure also keeps "
                    "its traceback's frames alive in sys.last_value)"
                    if len(repeated) >= CELL_SAME_SITE
                    else "many cells fail: an earlier cell may have left the namespace broken"
                ),
                history_ids=_ids([*cells[-5:], repeated[0]]),
            )
        ]


class GcPausesSinceLoad(Rule):
    """Full (generation-2) collections that paused the whole process for longer than the
    recorder's threshold since it started ("gc pauses since load")."""

    name = "gc_pauses_since_load"
    history_kinds = ("gc_pause",)

    def judge(self, ev: Evidence) -> Sequence[Finding]:
        pauses = ev.history_of("gc_pause")
        if not pauses:
            return []
        now = _now(ev)
        longest = max(pauses, key=lambda e: float(e["detail"].get("duration_ms", 0.0)))
        d = longest["detail"]
        total_ms = sum(float(e["detail"].get("duration_ms", 0.0)) for e in pauses)
        lost = sum(int(e["detail"].get("uncollectable", 0)) for e in pauses)
        latest = pauses[-1]
        # one long full collection in a large heap happens to healthy processes too: an alarm
        # takes them repeating (a single one is reported, as information)
        long_ones = sum(
            1 for e in pauses if float(e["detail"].get("duration_ms", 0.0)) >= GC_PAUSE_WARNING_MS
        )
        return [
            Finding(
                anomaly_type="gc_pauses_since_load",
                severity="warning" if long_ones >= 2 else "info",
                context=(
                    f"{len(pauses)} full collection(s) over {d.get('threshold_ms', '?')} ms since "
                    f"the flight recorder started, {total_ms:.0f} ms in all; the latest at "
                    f"{_clock(latest['time'])} UTC, {_ago(latest['time'], now)}"
                ),
                observation=(
                    f"the longest paused every thread for {d.get('duration_ms')} ms at "
                    f"{_clock(longest['time'])} UTC, collecting {d.get('collected')} object(s)"
                    + (f"; {lost} uncollectable in all" if lost else "")
                ),
                hypothesis=(
                    "a large heap of tracked container objects (each full collection walks all "
                    "of them); gc.freeze() after startup, fewer long-lived containers or a "
                    "higher generation-2 threshold shortens or spaces the pauses"
                ),
                history_ids=_ids(pauses),
            )
        ]
