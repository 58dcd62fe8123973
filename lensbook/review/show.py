"""What the cells of a postmortem notebook display: the timeline, each finding, insights, history.

Each function takes a recorded `Run` and returns a display object with a `text/plain` that says
everything (terminals, nbval, notebook diffs, screen readers) and a `text/html` for notebooks and
the HTML export. The timeline also carries its chart as ``image/png``, whose text alternative is
its ``alt`` and its caption. Nothing here needs IPython: a display object is any object with
`_repr_mimebundle_`.
"""

from __future__ import annotations

import base64
import html
import json
import warnings
from dataclasses import dataclass, field
from typing import Any

from lensbook.charts import Mark, Series, describe, render_png
from lensbook.records.reader import Run, load_run
from lensbook.types import Notification

__all__ = ["TIMELINE_METRICS", "Shown", "findings", "history", "insights", "timeline"]

_esc = html.escape

#: metrics charted first on a timeline, when the record has them
TIMELINE_METRICS = (
    "rss_mb",
    "heap_blocks",
    "gc_tracked",
    "traced_current_mb",
    "open_fds",
    "python_threads",
    "threads",
    "cpu_percent",
    "tasks",
    "errors_per_s",
)


@dataclass
class Shown:
    """A display object: text for everyone, HTML and an optional PNG for notebooks."""

    text: str
    html: str
    png: bytes = b""
    extra: dict[str, Any] = field(default_factory=dict)

    def _repr_mimebundle_(self, include: Any = None, exclude: Any = None) -> dict[str, Any]:
        bundle: dict[str, Any] = {"text/plain": self.text, "text/html": self.html}
        if self.png:
            bundle["image/png"] = base64.b64encode(self.png).decode("ascii")
        return bundle

    def __repr__(self) -> str:
        return self.text


def _chosen_metrics(run: Run, limit: int) -> list[str]:
    series = run.series()
    # a clock (uptime) always moves and says nothing about the incident
    moved = [s.name for s in series if len({v for _, v in s.points}) > 1 and "uptime" not in s.name]
    rank = {name: i for i, name in enumerate(TIMELINE_METRICS)}
    first = sorted((n for n in moved if n in rank), key=lambda n: rank[n])
    rest = [n for n in moved if n not in rank]
    return (first + rest)[:limit]


def _coordinated(run: Run, per_operator: int = 2) -> tuple[list[Series], list[Mark]]:
    """A coordinator run's timeline: its operators' metrics (``skill.metric``) and state
    changes, read from their records beside it, with its own notifications."""
    series: list[Series] = []
    marks = run.marks()
    for entry in run.operator_records:
        path = run.beside(entry.get("record"))
        if path is None or not path.exists():
            continue
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            operator_run = load_run(path)
        skill = str(entry.get("skill") or operator_run.skill)
        for s in operator_run.series(_chosen_metrics(operator_run, per_operator)):
            series.append(Series(f"{skill}.{s.name}", s.points))
        marks += [
            Mark(m.at, f"{skill} {m.label}", m.kind, m.level)
            for m in operator_run.marks()
            if m.kind == "state"
        ]
    return series, sorted(marks, key=lambda m: m.at)


def timeline(run: Run, metrics: list[str] | None = None, limit: int = 4) -> Shown:
    """The run's metrics over time with notifications and state changes marked on the axis
    (a coordinator run: its operators' metrics and state changes on one time axis)."""
    if run.kind == "coordinator" and metrics is None:
        series, marks = _coordinated(run)
    else:
        names = metrics if metrics is not None else _chosen_metrics(run, limit)
        series, marks = run.series(names), run.marks()
    t0 = run.started_at
    alt = describe(series, marks, t0)
    png = render_png(series, marks, t0=t0) if series else b""
    if not png:
        text = "No metric moved between the run's snapshots; nothing to chart.\n" + alt
        text = text.replace("\nNo metric series to chart.", "")
        return Shown(text, f"<pre>{_esc(text)}</pre>")
    data = base64.b64encode(png).decode("ascii")
    page = (
        '<figure class="lensbook-timeline" style="margin:0">'
        f'<img src="data:image/png;base64,{data}" alt="{_esc(alt, quote=True)}">'
        f"<figcaption><details><summary>text alternative</summary><pre>{_esc(alt)}</pre>"
        "</details></figcaption></figure>"
    )
    # html carries the image itself, so a front end that shows text/html shows it once
    return Shown(f"Timeline chart.\n{alt}", page)


def findings(run: Run) -> Shown:
    """Each notification with what it rests on: what moved, the probe results, the snapshots."""
    notes = run.notification_objects
    if not notes:
        text = "The run sent no notification."
        return Shown(text, f"<p><i>{text}</i></p>")
    texts, pages = [], []
    for i, note in enumerate(notes, start=1):
        evidence = run.evidence(note)
        texts.append(f"{i}. {note}\n{_indent(evidence.text())}")
        pages.append(_finding_html(i, note, evidence.html()))
    return Shown("\n\n".join(texts), f'<div class="lensbook-findings">{"".join(pages)}</div>')


def _finding_html(i: int, note: Notification, evidence: str) -> str:
    colour = {"info": "#2563eb", "warning": "#d97706", "critical": "#dc2626"}[note.severity]
    rows = [("context", note.context), ("observation", note.observation)]
    if note.hypothesis:
        rows.append(("hypothesis", note.hypothesis))
    body = "".join(f"<div><b>{k}</b> {_esc(v)}</div>" for k, v in rows)
    return (
        f'<div class="lensbook-finding" style="border-left:4px solid {colour};padding:4px 8px;'
        f'margin:6px 0"><div><b>{i}. <span style="color:{colour}">'
        f"{_esc(note.severity.upper())}</span> {_esc(note.operator)}: "
        f"{_esc(note.anomaly_type)}</b> <small>{_esc(note.detected_at.isoformat())}</small>"
        f"</div>{body}{evidence}</div>"
    )


def _indent(text: str) -> str:
    return "\n".join("   " + line for line in text.splitlines())


def insights(run: Run) -> Shown:
    """A coordinator run's insights and the operator runs it started."""
    found = run.insights
    lines = [f"{len(found)} insight(s)"]
    pages = []
    for i in found:
        lines.append(
            f"[{str(i.get('confidence')).upper()} confidence, {i.get('correlation_type')}] "
            f"{i.get('summary')} (links {', '.join(i.get('skills') or [])})"
        )
        if i.get("root_cause_hypothesis"):
            lines.append(f"  root cause: {i['root_cause_hypothesis']}")
        pages.append(
            f"<li><b>{_esc(str(i.get('confidence')))} · {_esc(str(i.get('correlation_type')))}"
            f"</b> {_esc(str(i.get('summary')))}"
            + (
                f"<div><i>root cause:</i> {_esc(str(i['root_cause_hypothesis']))}</div>"
                if i.get("root_cause_hypothesis")
                else ""
            )
            + "</li>"
        )
    ops = run.operator_records
    lines.append(f"{len(ops)} operator run(s):")
    rows = []
    for o in ops:
        lines.append(
            f"  {o.get('skill')}: {o.get('state')} ({o.get('stop_reason')}), "
            f"{o.get('notifications')} notification(s), record {o.get('record')}"
        )
        rows.append(
            "<tr>"
            + "".join(
                f"<td>{_esc(str(o.get(k)))}</td>"
                for k in ("skill", "state", "stop_reason", "notifications", "record")
            )
            + "</tr>"
        )
    page = (
        f'<div class="lensbook-insights"><b>{len(found)} insight(s)</b><ul>{"".join(pages)}</ul>'
        "<table><thead><tr><th>skill</th><th>state</th><th>stopped by</th>"
        f"<th>notifications</th><th>record</th></tr></thead><tbody>{''.join(rows)}</tbody>"
        "</table></div>"
    )
    return Shown("\n".join(lines), page)


def history(run: Run) -> Shown:
    """The flight recorder's history around the incident, as the record holds it."""
    found = run.history
    if found is None:
        text = "The record has no history section (it was recorded without the flight recorder)."
        return Shown(text, f"<p><i>{_esc(text)}</i></p>")
    if isinstance(found, list) and found and all(isinstance(r, dict) for r in found):
        import pandas as pd

        frame = pd.DataFrame(found)
        return Shown(
            str(frame.to_string(max_rows=60)),
            str(frame.to_html(max_rows=60, border=0)),
        )
    text = json.dumps(found, indent=1, default=str)
    if len(text) > 20_000:
        text = text[:20_000] + "\n... (cut at 20000 characters)"
    return Shown(text, f"<pre>{_esc(text)}</pre>")
