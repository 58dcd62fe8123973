"""What the notebook views show, kept apart from any widget: folded from events, rendered as text.

Each model takes events (`apply`) and renders itself as plain text (terminals, nbconvert, notebook
diffs) and HTML (the widgets' content). They import neither IPython nor ipywidgets, so the text
fallback works without them and the rendering is testable on its own.
"""

from __future__ import annotations

import html
from collections import OrderedDict, deque
from collections.abc import Iterable
from datetime import datetime, timezone
from typing import TYPE_CHECKING, Any

from lensbook.cards import SEVERITY_COLOURS, CardModel
from lensbook.charts import Mark, Series, describe, render_png
from lensbook.events import Event, EventKind
from lensbook.evidence import (
    BASE_TOOLS,
    PROBE_QUOTE_CHARS,
    Evidence,
    ProbeResult,
    SnapshotSeen,
)
from lensbook.types import CompletionResult, Notification

if TYPE_CHECKING:
    import pandas as pd

    from lensbook.sampling import MetricsStore

__all__ = [
    "FEED_EVENTS",
    "METRICS_EVENTS",
    "FeedModel",
    "MetricsModel",
    "status_html",
    "status_text",
]

FEED_EVENTS: frozenset[EventKind] = frozenset({"snapshot", "notification", "tool_result"})
METRICS_EVENTS: frozenset[EventKind] = frozenset(
    {"snapshot", "run_completed", "notification", "state_changed"}
)

_esc = html.escape


class FeedModel:
    """Notifications, newest first, with what they rest on: the snapshots they cite (and when
    they were taken) and the probe results before them (both bounded)."""

    def __init__(
        self,
        operator: str | None = None,
        max_entries: int = 50,
        max_snapshots: int = 256,
        max_probes: int = 64,
    ) -> None:
        self.operator = operator
        self.max_entries = max_entries
        self.max_snapshots = max_snapshots
        self.entries: list[dict[str, Any]] = []  # oldest first
        self.total = 0
        self.snapshots: OrderedDict[str, dict[str, Any]] = OrderedDict()
        self.snapshot_at: dict[str, float] = {}
        #: (operator, probe result) of the probes answered, newest last
        self.probes: deque[tuple[str, ProbeResult]] = deque(maxlen=max_probes)
        self._seen: set[str] = set()

    def wants(self, event: Event) -> bool:
        return self.operator is None or event.operator == self.operator

    def apply(self, event: Event) -> bool:
        """Fold one event in; True when the visible feed changed."""
        if event.kind == "snapshot":
            data = event.data.get("data")
            sid = event.data.get("id")
            if isinstance(sid, str) and isinstance(data, dict):
                self.add_snapshot(sid, data, event.at)
            return False
        if event.kind == "tool_result":
            name = str(event.data.get("name") or "")
            if name and name not in BASE_TOOLS:
                content = str(event.data.get("content") or "")[: PROBE_QUOTE_CHARS * 2]
                probe = ProbeResult(name, event.at, content, bool(event.data.get("is_error")))
                self.probes.append((event.operator, probe))
            return False
        if event.kind == "notification":
            note = event.data.get("notification")
            if isinstance(note, dict):
                return self.add(note)
        return False

    def add_snapshot(self, sid: str, data: dict[str, Any], at: float | None = None) -> None:
        self.snapshots[sid] = data
        self.snapshots.move_to_end(sid)
        if at is not None:
            self.snapshot_at[sid] = at
        while len(self.snapshots) > self.max_snapshots:
            old, _ = self.snapshots.popitem(last=False)
            self.snapshot_at.pop(old, None)

    def add(self, note: dict[str, Any]) -> bool:
        nid = str(note.get("id", ""))
        if nid and nid in self._seen:
            return False
        if self.operator is not None and note.get("operator") != self.operator:
            return False
        self._seen.add(nid)
        self.entries.append(note)
        self.total += 1
        if len(self.entries) > self.max_entries:
            dropped = self.entries.pop(0)
            self._seen.discard(str(dropped.get("id", "")))
        return True

    def merge(self, notes: Iterable[dict[str, Any]]) -> None:
        """Add notifications kept elsewhere, keeping the feed in order of detection."""
        known = {str(n.get("id", "")): n for n in self.entries}
        for note in notes:
            known.setdefault(str(note.get("id", "")), note)
        self.entries, self.total = [], 0
        self._seen.clear()
        for note in sorted(known.values(), key=lambda n: str(n.get("detected_at", ""))):
            self.add(note)

    def seed(self, results: Iterable[CompletionResult]) -> None:
        """Add what earlier runs found, oldest first."""
        notes: list[tuple[datetime, Notification]] = []
        for result in results:
            for snap in result.snapshots:
                self.add_snapshot(snap.id, snap.data, snap.captured_at.timestamp())
            notes.extend((n.detected_at, n) for n in result.notifications)
        for _, note in sorted(notes, key=lambda pair: pair[0]):
            self.add(note.to_dict())

    def text(self) -> str:
        who = f" from {self.operator}" if self.operator else ""
        if not self.entries:
            return f"No notifications{who} yet."
        lines = [f"{self.total} notification(s){who}, newest first:"]
        for note in reversed(self.entries):
            lines.append(
                f"[{str(note.get('severity', '?')).upper()}] {note.get('operator', '?')}: "
                f"{note.get('anomaly_type', '?')} - {note.get('observation', '')}"
            )
        if self.total > len(self.entries):
            lines.append(f"... and {self.total - len(self.entries)} older")
        return "\n".join(lines)

    def html(self) -> str:
        if not self.entries:
            who = f" from <code>{_esc(self.operator)}</code>" if self.operator else ""
            return f'<div style="color:#6b7280"><i>No notifications{who} yet.</i></div>'
        items = [
            self._entry_html(note, newest=(i == 0)) for i, note in enumerate(reversed(self.entries))
        ]
        more = ""
        if self.total > len(self.entries):
            older = self.total - len(self.entries)
            more = f'<div style="color:#6b7280">... and {older} older</div>'
        return f'<div class="lensbook-feed" style="line-height:1.45">{"".join(items)}{more}</div>'

    def evidence(self, note: dict[str, Any]) -> Evidence:
        """What a notification rests on, as far as this feed saw it."""
        seen = {
            sid: SnapshotSeen(sid, self.snapshot_at.get(sid), data)
            for sid, data in self.snapshots.items()
        }
        who = note.get("operator")
        probes = [p for op, p in self.probes if op == who]
        history = {
            str(i): line
            for i in note.get("snapshot_ids") or ()
            if (line := _history_line(str(i))) is not None
        }
        return Evidence.of(note, seen, probes, history=history)

    @staticmethod
    def entry_title(note: dict[str, Any]) -> str:
        """A notification's one-line title: severity, operator, anomaly, time."""
        when = str(note.get("detected_at", ""))[11:19]
        return (
            f"{str(note.get('severity', 'info')).upper()} {note.get('operator', '')}: "
            f"{note.get('anomaly_type', '')}  {when}"
        )

    def entry_body(self, note: dict[str, Any]) -> str:
        """A notification's content as HTML: its text fields and its evidence."""
        fields = [
            ("context", note.get("context")),
            ("observation", note.get("observation")),
            ("hypothesis", note.get("hypothesis")),
        ]
        body = "".join(
            f"<div><b>{name}</b> {_esc(str(value))}</div>" for name, value in fields if value
        )
        evidence = self.evidence(note)
        if evidence.snapshot_ids or evidence.probes:
            body += evidence.html()
        return f'<div style="font-size:0.9em;line-height:1.45">{body}</div>'

    def _entry_html(self, note: dict[str, Any], newest: bool) -> str:
        severity = str(note.get("severity", "info"))
        colour = SEVERITY_COLOURS.get(severity, "#6b7280")
        when = str(note.get("detected_at", ""))[11:19]
        return (
            f'<details class="lensbook-notification" {"open" if newest else ""} '
            f'style="border-left:4px solid {colour};padding:2px 8px;margin:4px 0">'
            f'<summary><b style="color:{colour}">{_esc(severity.upper())}</b> '
            f"<b>{_esc(str(note.get('operator', '')))}</b>: "
            f"{_esc(str(note.get('anomaly_type', '')))} <small>{_esc(when)}</small></summary>"
            f"{self.entry_body(note)}</details>"
        )


#: metrics charted first when a view has more series than charts
PREFERRED_METRICS = (
    "rss_mb",
    "open_fds",
    "python_threads",
    "threads",
    "gc_collections",
    "cpu_percent",
    "vms_mb",
)


class MetricsModel:
    """The latest sampled values and the series a view has seen change (from the metrics store)."""

    def __init__(
        self, skill: str | None = None, max_charts: int = 4, store: MetricsStore | None = None
    ) -> None:
        from lensbook.sampling import store as live

        # the live sampler's store, or another (a recorded run's own numbers)
        self.store = store if store is not None else live
        self.skill = skill
        self.max_charts = max_charts
        self.touched: set[tuple[str, str]] = set(self.store.keys(skill))
        self.snapshots_seen = 0
        #: notifications and state changes seen, marked on the charts' time axis (bounded)
        self.marks: deque[Mark] = deque(maxlen=20)

    def wants(self, event: Event) -> bool:
        if event.kind in ("notification", "state_changed"):
            return self.skill is None or event.operator == self.skill
        if event.kind != "snapshot":
            return False
        return self.skill is None or (event.data.get("skill") or event.operator) == self.skill

    def apply(self, event: Event) -> bool:
        if event.kind == "notification":
            note = event.data.get("notification") or {}
            self.marks.append(
                Mark(
                    event.at,
                    f"[{note.get('severity')}] {note.get('anomaly_type')}",
                    "notification",
                    str(note.get("severity")),
                )
            )
            return True
        if event.kind == "state_changed":
            d = event.data
            self.marks.append(
                Mark(
                    event.at,
                    f"{d.get('previous')} -> {d.get('state')}",
                    "state",
                    str(d.get("state")),
                )
            )
            return True
        data = event.data.get("data")
        if not isinstance(data, dict):
            return False
        skill = str(event.data.get("skill") or event.operator)
        for key, value in data.items():
            if isinstance(value, (int, float)):
                self.touched.add((skill, key))
        self.snapshots_seen += 1
        return True

    def table(self) -> pd.DataFrame:
        """One row per series: latest value, change over the kept window, points, last update."""
        import pandas as pd

        rows = []
        for skill, metric in sorted(self.touched):
            points = self.store.series(skill, metric)
            if not points:
                continue
            first, last = points[0][1], points[-1][1]
            rows.append(
                {
                    "skill": skill,
                    "metric": metric,
                    "value": last,
                    "change": last - first,
                    "points": len(points),
                    "updated": datetime.fromtimestamp(points[-1][0], timezone.utc).strftime(
                        "%H:%M:%S"
                    ),
                }
            )
        columns = ["skill", "metric", "value", "change", "points", "updated"]
        return pd.DataFrame(rows, columns=columns)

    def chart_keys(self) -> list[tuple[str, str]]:
        """The series worth a chart: preferred metrics first, then any that moved."""
        candidates = [k for k in self.touched if len(self.store.series(*k)) >= 2]
        rank = {name: i for i, name in enumerate(PREFERRED_METRICS)}
        moved = [k for k in candidates if _moved(self.store.series(*k))]
        preferred = sorted(
            (k for k in candidates if k[1] in rank), key=lambda k: (rank[k[1]], k[0])
        )
        others = sorted(k for k in moved if k[1] not in rank)
        return (preferred + others)[: self.max_charts]

    def _series(self) -> list[Series]:
        keys = self.chart_keys()
        many_skills = len({skill for skill, _ in keys}) > 1
        return [
            Series(f"{skill}.{metric}" if many_skills else metric, self.store.series(skill, metric))
            for skill, metric in keys
        ]

    def chart_png(self) -> bytes:
        """Small multiples of `chart_keys()` as a PNG (b"" when there is nothing to chart),
        with the notifications and state changes seen marked (see `lensbook.charts`).

        Cost: ~30-80 ms of Agg rendering (holds the GIL); callers throttle it to seconds.
        """
        series = self._series()
        if not series:
            return b""
        t0 = min(s.points[0][0] for s in series)
        return render_png(series, [m for m in self.marks if m.at >= t0], t0=t0)

    def chart_text(self) -> str:
        """The charts' text alternative: each series' change and the marks, in words."""
        series = self._series()
        if not series:
            return "No chart yet: no series has two points."
        t0 = min(s.points[0][0] for s in series)
        return describe(series, [m for m in self.marks if m.at >= t0], t0)

    def text(self) -> str:
        frame = self.table()
        if frame.empty:
            return "No metrics sampled yet."
        return str(frame.to_string(index=False, max_rows=40))

    def html(self) -> str:
        frame = self.table()
        if frame.empty:
            return '<div style="color:#6b7280"><i>No metrics sampled yet.</i></div>'
        table = frame.to_html(index=False, max_rows=40, float_format=lambda v: f"{v:.6g}", border=0)
        # widget HTML inherits a 28 px line height from ipywidgets: a table needs less
        return f'<div class="lensbook-metrics-table" style="line-height:1.35">{table}</div>'


def _history_line(event_id: str) -> str | None:
    """A cited flight-recorder event (h-...) in one line, while the recorder still has it."""
    from lensbook.recorder import clock, describe, history_event

    event = history_event(event_id)
    if event is None:
        return None
    return f"{clock(event.time)} UTC {event.kind}: {describe(event)}"


def _moved(points: list[tuple[float, float]]) -> bool:
    return len({v for _, v in points}) > 1


def status_text(rows: list[CardModel]) -> str:
    if not rows:
        return "No operators started (lensbook.start() or %lens run SKILL)."
    return "\n".join(row.text() for row in rows)


def status_html(rows: list[CardModel]) -> str:
    if not rows:
        return (
            "<i>No operators started "
            "(<code>lensbook.start()</code> or <code>%lens run SKILL</code>).</i>"
        )
    return "".join(
        f'<div style="border:1px solid #e5e7eb;border-radius:6px;padding:4px 8px;margin:4px 0">'
        f"{row.html()}</div>"
        for row in rows
    )
