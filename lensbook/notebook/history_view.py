"""`%lens history`: the flight recorder's timeline, as a chart in a notebook and text elsewhere.

The chart (matplotlib's object API, no pyplot: no global figure state) stacks the runtime
metrics the sampler kept (`lensbook.metrics()`) over one row of event markers per kind, on one
time axis, so a thread death or a loop stall lines up with the RSS or thread count around it.
The text form is `lensbook.recorder.frame.text_timeline`: one line per event with its id.
"""

from __future__ import annotations

import base64
import html
import io
import time
from collections.abc import Sequence
from typing import Any

from lensbook.recorder import HistoryEvent, clock, describe, text_timeline
from lensbook.sampling import store

__all__ = ["CHART_METRICS", "HistoryReport", "timeline_png"]

#: runtime metrics drawn above the events, when sampled
CHART_METRICS = ("rss_mb", "python_threads", "cpu_percent")
#: one colour per kind, so a kind keeps its colour from chart to chart
_COLOURS = {
    "exception": "#dc2626",
    "thread_died": "#991b1b",
    "logged_exception": "#f97316",
    "exception_rate": "#fb923c",
    "log": "#eab308",
    "log_rate": "#a3a3a3",
    "thread_started": "#2563eb",
    "thread_ended": "#93c5fd",
    "thread_growth": "#1d4ed8",
    "loop_lag": "#7c3aed",
}
_TABLE_ROWS = 60


def timeline_png(events: Sequence[HistoryEvent], metrics: Sequence[str] = CHART_METRICS) -> bytes:
    """Metrics over event markers as a PNG (b"" when there is nothing to draw).

    Cost: ~50-150 ms of Agg rendering; only on request.
    """
    if not events:
        return b""
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    t0 = min(e.time for e in events)
    t1 = max(e.time for e in events)
    series = [
        (name, [(t, v) for t, v in store.series("runtime", name) if t >= t0 - 60])
        for name in metrics
    ]
    series = [(name, points) for name, points in series if len(points) >= 2]
    kinds = sorted(
        {e.kind for e in events}, key=lambda k: list(_COLOURS).index(k) if k in _COLOURS else 99
    )
    rows = len(series) + 1
    heights = [1.0] * len(series) + [max(1.2, 0.28 * len(kinds))]
    fig = Figure(figsize=(8.5, sum(heights) * 1.3 + 0.4), dpi=80)
    FigureCanvasAgg(fig)
    axes = fig.subplots(rows, 1, sharex=True, gridspec_kw={"height_ratios": heights}, squeeze=False)
    for ax, (name, points) in zip([a[0] for a in axes[:-1]], series, strict=True):
        ax.plot([t - t0 for t, _ in points], [v for _, v in points], lw=1.2, color="#374151")
        ax.set_ylabel(name, fontsize=8)
        ax.tick_params(labelsize=7)
        ax.grid(alpha=0.3)
    ax = axes[-1][0]
    for row, kind in enumerate(kinds):
        xs = [e.time - t0 for e in events if e.kind == kind]
        ax.scatter(
            xs,
            [row] * len(xs),
            s=18,
            marker="|" if kind.endswith("_rate") else "o",
            color=_COLOURS.get(kind, "#6b7280"),
            linewidths=1.5,
        )
    ax.set_yticks(range(len(kinds)), kinds, fontsize=7)
    ax.set_ylim(-0.7, len(kinds) - 0.3)
    ax.tick_params(labelsize=7)
    ax.grid(alpha=0.3, axis="x")
    ax.set_xlabel(f"seconds after {clock(t0)} UTC (to {clock(t1)})", fontsize=8)
    fig.tight_layout()
    out = io.BytesIO()
    fig.savefig(out, format="png")
    return out.getvalue()


class HistoryReport:
    """What `%lens history` returns: text/plain (the timeline) and text/html (chart + table)."""

    def __init__(self, events: Sequence[HistoryEvent], *, chart: bool = True) -> None:
        self.events = list(events)
        self.chart = chart
        self.made_at = time.time()

    def text(self) -> str:
        return text_timeline(self.events, now=self.made_at)

    def html(self) -> str:
        if not self.events:
            return f"<i>{html.escape(self.text())}</i>"
        png = timeline_png(self.events) if self.chart else b""
        data = base64.b64encode(png).decode()
        img = f'<img alt="history timeline" src="data:image/png;base64,{data}"/>' if png else ""
        shown = self.events[-_TABLE_ROWS:]
        rows = "".join(
            f"<tr><td>{clock(e.time)}</td><td><code>{e.id}</code></td><td>{html.escape(e.kind)}</td>"
            f"<td>{html.escape(describe(e))}</td></tr>"
            for e in reversed(shown)
        )
        more = (
            f"<div><small>{len(self.events) - len(shown)} older event(s) not shown; "
            "lensbook.history() has them all</small></div>"
            if len(self.events) > len(shown)
            else ""
        )
        head = html.escape(self.text().splitlines()[0])
        return (
            f'<div class="lensbook-history"><b>{head}</b><br/>{img}'
            '<table style="font-size:0.85em;line-height:1.3"><tr><th>UTC</th><th>id</th>'
            f"<th>kind</th><th>what</th></tr>{rows}</table>{more}</div>"
        )

    def _repr_mimebundle_(self, include: Any = None, exclude: Any = None) -> dict[str, str]:
        return {"text/plain": self.text(), "text/html": self.html()}

    def __repr__(self) -> str:
        return self.text()
