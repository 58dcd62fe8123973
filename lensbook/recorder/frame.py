"""The history as pandas (`lensbook.history()`) and as one line of text per event.

`describe` is the one place an event becomes a sentence: the DataFrame's ``summary`` column, the
text timeline of ``%lens history`` and the rules' observations all use it.
"""

from __future__ import annotations

import time
from collections.abc import Iterable, Sequence
from datetime import datetime, timezone
from typing import TYPE_CHECKING, Any

from lensbook.recorder.event import HistoryEvent

if TYPE_CHECKING:
    import pandas as pd

__all__ = ["clock", "describe", "history_frame", "text_timeline"]


def clock(at: float) -> str:
    """HH:MM:SS (UTC) of an epoch time."""
    return datetime.fromtimestamp(at, tz=timezone.utc).strftime("%H:%M:%S")


def describe(event: HistoryEvent | dict[str, Any]) -> str:
    """One line saying what an event records, with its numbers."""
    e = event.to_dict() if isinstance(event, HistoryEvent) else event
    d: dict[str, Any] = e.get("detail") or {}
    kind, source = e.get("kind", "?"), e.get("source", "?")
    if kind in ("exception", "logged_exception", "thread_died"):
        how = {
            "exception": f"uncaught ({d.get('route', '?')})",
            "logged_exception": f"logged by {d.get('logger', source)}",
            "thread_died": f"ended thread {d.get('thread', source)!r}",
        }[kind]
        return (
            f"{d.get('type', '?')}({d.get('message', '')!r}) {how} at {d.get('where', '?')} in "
            f"{d.get('function', '?')} (thread {d.get('thread', '?')!r}"
            + (f", occurrence {d['count']}" if d.get("count") else "")
            + ")"
        )
    if kind == "exception_rate":
        return (
            f"{d.get('count')} x {d.get('type')} at {d.get('where')} in {d.get('function')} "
            f"({d.get('rate_per_s')}/s over {d.get('window_s')} s, "
            f"{clock(d.get('first') or 0)}-{clock(d.get('last') or 0)} UTC)"
        )
    if kind == "log":
        return f"{d.get('level')} {source}: {d.get('message', '')!r} at {d.get('where')}"
    if kind == "log_rate":
        return (
            f"{d.get('count')} {d.get('level')} record(s) from {d.get('logger')} "
            f"({d.get('rate_per_s')}/s over {d.get('window_s')} s)"
        )
    if kind in ("thread_started", "thread_ended"):
        verb = "started" if kind == "thread_started" else "ended"
        return (
            f"thread {d.get('thread', source)!r} {verb} (target {d.get('target')}, started from "
            f"{d.get('started_from')}" + (", died" if d.get("died") else "") + ")"
        )
    if kind == "thread_growth":
        return (
            f"{d.get('started')} thread(s) of kind {d.get('kind')!r} started, {d.get('ended')} "
            f"ended in {d.get('window_s')} s; {d.get('alive')} alive (target {d.get('target')}, "
            f"started from {d.get('started_from')} in {d.get('function')})"
        )
    if kind == "loop_lag":
        blocked = (
            f"; blocked in {d.get('coroutine') or d.get('function')} at {d.get('where')}: "
            f"{d.get('blocking_call')}"
            if d.get("sampled")
            else ""
        )
        still = " (still blocked)" if d.get("still_blocked") else ""
        return f"{source} ran a callback {d.get('lag_ms')} ms late{still}{blocked}"
    if kind == "metrics":
        what = "baseline" if d.get("baseline") else "moved: " + ", ".join(d.get("moved") or ["-"])
        return (
            f"metrics ({what}): RSS {d.get('rss_mb')} MB, {d.get('python_threads')} threads, "
            f"{d.get('open_fds')} fds, {d.get('gc_gen2_collections')} full collections; host "
            f"memory {d.get('host_memory_percent')}%, load/CPU {d.get('host_load_per_cpu')}"
        )
    if kind == "trace":
        timing = f", p95 {d.get('p95_ms')} ms, max {d.get('max_ms')} ms" if "p95_ms" in d else ""
        return (
            f"traced {source} for {d.get('window_s')} s: {d.get('calls')} call(s) "
            f"({d.get('calls_per_s')}/s){timing}, {d.get('exceptions')} raised"
        )
    return f"{kind} from {source}"


def history_frame(
    kinds: Iterable[str] | str | None = None, since: float | None = None
) -> pd.DataFrame:
    """Events as a DataFrame: id, time (UTC), kind, source, summary, detail."""
    import pandas as pd

    # the recorder itself, not the package root (which exports this module's text helpers)
    from lensbook.recorder.api import recorder

    wanted = (kinds,) if isinstance(kinds, str) else (None if kinds is None else tuple(kinds))
    rows = [
        (e.id, e.time, e.kind, e.source, describe(e), e.detail)
        for e in recorder.events(since, wanted, None)
    ]
    df = pd.DataFrame(rows, columns=["id", "time", "kind", "source", "summary", "detail"])
    df["time"] = pd.to_datetime(df["time"], unit="s", utc=True)
    return df


def text_timeline(events: Sequence[HistoryEvent], now: float | None = None) -> str:
    """The events as a terminal timeline: one line each, newest last, with their ids."""
    if not events:
        return "history: nothing recorded (is the recorder on? lensbook.start() starts it)"
    now = time.time() if now is None else now
    lines = [
        f"history: {len(events)} event(s), {clock(events[0].time)}-{clock(events[-1].time)} UTC"
    ]
    for e in events:
        ago = now - e.time
        lines.append(f"{clock(e.time)} ({ago:6.0f} s ago) {e.id} {e.kind:<16} {describe(e)}")
    return "\n".join(lines)
