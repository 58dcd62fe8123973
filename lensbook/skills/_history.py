"""The flight recorder's history as rules and triage read it, whether or not it is there.

The recorder (`lensbook.recorder`) keeps a bounded, redacted history of what happened between
investigations (exceptions, error logs and log rates, threads started and ended, loop lag).
Its contract: ``history_events(since, kinds, limit) -> list[HistoryEvent]`` and
``is_recording()``. This module is the one place that imports it, so a process (or a branch)
without a recorder reads an empty history instead of failing.

It also holds the helpers the skills' history rules share to read the events a run was shown
(dicts with id, time, kind, detail): `metric_change` reads one number's course through the
``metrics`` events (baseline, peak, latest), `by_route` groups exceptions by where they came in.
"""

from __future__ import annotations

import importlib
import itertools
import time
from collections import Counter
from collections.abc import Collection, Sequence
from dataclasses import dataclass, field
from datetime import datetime, timezone
from typing import Any

__all__ = [
    "ERROR_KINDS",
    "ErrorRate",
    "MetricChange",
    "by_route",
    "clock",
    "error_rate",
    "events",
    "metric_change",
    "recording",
]

#: history kinds that are errors (uncaught or logged with a traceback, or logged at ERROR+)
ERROR_KINDS = ("exception", "logged_exception", "thread_died")


def clock(at: float) -> str:
    """HH:MM:SS (UTC) of an epoch time, as the history rules write times."""
    return datetime.fromtimestamp(at, tz=timezone.utc).strftime("%H:%M:%S")


def _recorder() -> Any:
    try:
        return importlib.import_module("lensbook.recorder")
    except ImportError:
        return None


def _recording_since() -> float | None:
    recorder = _recorder()
    try:
        return None if recorder is None else recorder.recording_since()
    except Exception:
        return None


def recording() -> bool:
    """Whether a flight recorder is installed and recording."""
    recorder = _recorder()
    try:
        return bool(recorder is not None and recorder.is_recording())
    except Exception:
        return False


def write(kind: str, source: str, detail: dict[str, Any]) -> str | None:
    """Write an event observed on demand into the history; its id, or None when no recorder
    is recording (or it failed: an investigation never breaks on its history)."""
    recorder = _recorder()
    if recorder is None:
        return None
    try:
        event = recorder.record(kind, source, detail)
    except Exception:
        return None
    return str(event.id) if event is not None else None


def events(
    since: float | None = None, kinds: Collection[str] | None = None, limit: int | None = None
) -> list[Any]:
    """History events (chronological, redacted); empty without a recorder."""
    recorder = _recorder()
    if recorder is None:
        return []
    try:
        return list(recorder.history_events(since=since, kinds=kinds, limit=limit))
    except Exception:  # a broken recorder must not break an investigation
        return []


@dataclass
class ErrorRate:
    """Errors in the history over a window: how many, how fast, and where most came from."""

    window_s: float
    count: int = 0
    per_s: float = 0.0
    #: (where or source, count) most frequent first
    top: list[tuple[str, int]] = field(default_factory=list)
    ids: list[str] = field(default_factory=list)
    recording: bool = False


def error_rate(window_s: float = 120.0, now: float | None = None) -> ErrorRate:
    """Error events per second over the last `window_s` seconds, with their main sources.

    Logged errors are counted from ``log`` events at ERROR or above and from the periodic
    ``log_rate`` events (which carry ``count`` per logger and level) as well as exceptions.
    The rate is over the time the recorder has watched within the window (at least 1 s): 600
    errors in the 5 s since lensbook loaded are 120/s, not 5/s over a window it did not see.
    """
    now = time.time() if now is None else now
    since = now - window_s
    began = _recording_since()
    if began is not None and began > since:
        since = min(began, now - 1.0)
        window_s = now - since
    found = events(since=since, kinds=(*ERROR_KINDS, "log", "log_rate"))
    by_where: Counter[str] = Counter()
    ids: list[str] = []
    # a logger with periodic rate events is counted from those, not once more per record
    rated = {getattr(e, "source", "") for e in found if getattr(e, "kind", "") == "log_rate"}
    for event in found:
        detail = getattr(event, "detail", {}) or {}
        kind = getattr(event, "kind", "")
        level = str(detail.get("level", "")).upper()
        if kind in ("log", "log_rate") and level not in ("ERROR", "CRITICAL"):
            continue
        if kind in ("log", "logged_exception") and getattr(event, "source", "") in rated:
            continue  # the logger's rate events count every record, these included
        n = int(detail.get("count", 1) or 1) if kind == "log_rate" else 1
        where = detail.get("where") if kind != "log_rate" else None
        key = str(where or getattr(event, "source", "") or kind)
        by_where[key] += n
        if len(ids) < 5:
            ids.append(str(getattr(event, "id", "")))
    count = sum(by_where.values())
    return ErrorRate(
        window_s=window_s,
        count=count,
        per_s=count / window_s if window_s > 0 else 0.0,
        top=by_where.most_common(3),
        ids=[i for i in ids if i],
        recording=recording(),
    )


@dataclass(frozen=True)
class MetricChange:
    """One sampled number's course through the ``metrics`` events a run was shown."""

    key: str
    first: float
    last: float
    peak: float
    first_at: float
    last_at: float
    peak_at: float
    #: whether `first` is the recording's baseline (its first sample), not only the oldest shown
    baseline: bool
    #: ids of the first, peak and last events (each once)
    ids: tuple[str, ...]
    samples: int
    #: the share of steps between consecutive events that went up (1.0: it only rose)
    rising_share: float = 0.0

    @property
    def steady(self) -> bool:
        """Rose in at least three steps of four over four or more events: a trend, not one
        step (a notebook loading a data set moves once)."""
        return self.samples >= 4 and self.rising_share >= 0.75

    @property
    def change(self) -> float:
        return self.last - self.first

    @property
    def span_s(self) -> float:
        return self.last_at - self.first_at

    @property
    def per_min(self) -> float:
        return self.change / self.span_s * 60 if self.span_s > 0 else 0.0


def metric_change(history: Sequence[dict[str, Any]], key: str) -> MetricChange | None:
    """`key`'s first, peak and last values in the ``metrics`` events of `history` (oldest
    first), or None with fewer than two events carrying it."""
    points = [
        (float(e.get("time") or 0.0), float(e["detail"][key]), str(e.get("id", "")), e)
        for e in history
        if e.get("kind") == "metrics"
        and isinstance(e.get("detail"), dict)
        and isinstance(e["detail"].get(key), (int, float))
        and not isinstance(e["detail"].get(key), bool)
    ]
    if len(points) < 2:
        return None
    points.sort(key=lambda p: p[0])
    first, last = points[0], points[-1]
    peak = max(points, key=lambda p: p[1])
    ids = tuple(dict.fromkeys(i for i in (first[2], peak[2], last[2]) if i))
    rises = sum(1 for a, b in itertools.pairwise(points) if b[1] > a[1])
    return MetricChange(
        key=key,
        first=first[1],
        last=last[1],
        peak=peak[1],
        first_at=first[0],
        last_at=last[0],
        peak_at=peak[0],
        baseline=bool(first[3]["detail"].get("baseline")),
        ids=ids,
        samples=len(points),
        rising_share=rises / (len(points) - 1),
    )


def by_route(history: Sequence[dict[str, Any]], route: str) -> list[dict[str, Any]]:
    """The ``exception`` events of `history` that came in by `route` ("cell", "thread", ...)."""
    return [
        e
        for e in history
        if e.get("kind") == "exception"
        and isinstance(e.get("detail"), dict)
        and e["detail"].get("route") == route
    ]
