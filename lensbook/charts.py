"""Charts that do not exaggerate: metric series as small multiples with the run's moments marked.

Matplotlib scales a y axis to the data, so a 2 MB wobble on a 68 MB process fills the panel and
reads as a cliff. Here a size metric (MB, bytes, blocks, objects, threads, descriptors...) and a
percentage keep zero on their axis; every panel's title states the change explicitly
(``48.0 -> 96.7 MB, +48.7``) so a small move on an honest axis is still read; a rate is labelled
per second. The panels share one time axis, on which notifications and state changes are
vertical lines. Each
chart comes with a text alternative (`describe`) that says the same in words, for screen readers,
terminals, notebook diffs and the ``alt`` of the image.

Rendering uses matplotlib's object API (no pyplot): no global figure state, safe off the main
thread. Cost: ~30-80 ms of Agg rendering per chart (holds the GIL); live views throttle it.
"""

from __future__ import annotations

import io
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

__all__ = ["Mark", "Series", "describe", "is_size", "render_png", "unit_of", "y_range"]

_SIZE_SUFFIXES = (
    "_mb",
    "_kb",
    "_gb",
    "_bytes",
    "blocks",
    "objects",
    "threads",
    "fds",
    "_count",
    "tracked",
    "items",
    "_size",
    "tasks",
    "handles",
    "connections",
    "children",
    "_total",
)
_RATE_SUFFIXES = ("_per_s", "_per_sec", "_per_second", "_rate", "_hz")

MARK_COLOURS = {
    "info": "#2563eb",
    "warning": "#d97706",
    "critical": "#dc2626",
    "healthy": "#16a34a",
    "observing": "#2563eb",
}


@dataclass(frozen=True)
class Series:
    """One metric over time: (epoch seconds, value) points."""

    name: str
    points: Sequence[tuple[float, float]]

    @property
    def unit(self) -> str:
        return unit_of(self.name)


@dataclass(frozen=True)
class Mark:
    """A moment on the time axis: a notification or a state change."""

    at: float
    label: str
    kind: str = "notification"  # or "state"
    level: str = "warning"  # a severity or a health state, for the colour


def unit_of(metric: str) -> str:
    """The unit a metric's name states ('' when it states none): ``write_mb_per_s`` is
    "MB per second", ``errors_per_s`` "per second", ``rss_mb`` "MB"."""
    name = metric.lower()
    for rate in _RATE_SUFFIXES:
        if name.endswith(rate):
            amount = unit_of(name[: -len(rate)])
            return f"{amount} per second" if amount and amount != "s" else "per second"
    for suffix, unit in (("_mb", "MB"), ("_kb", "KB"), ("_gb", "GB"), ("_bytes", "bytes")):
        if name.endswith(suffix):
            return unit
    if name.endswith("percent") or name.endswith("_pct"):
        return "%"
    if name.endswith("_seconds") or name.endswith("_s"):
        return "s"
    return ""


def is_size(metric: str) -> bool:
    """Whether the metric is an amount, a count or a rate with a true zero (its axis keeps it)."""
    name = metric.lower()
    return (
        any(name.endswith(s) for s in _SIZE_SUFFIXES)
        or unit_of(name) == "%"
        or unit_of(name).endswith("per second")
    )


def y_range(series: Series) -> tuple[float, float] | None:
    """The y axis a panel gets: from zero for a size that never goes below it, else None
    (matplotlib's own, fitted to the data; the title then states the change)."""
    values = [v for _, v in series.points]
    if not values or not is_size(series.name) or min(values) < 0:
        return None
    return 0.0, (max(values) * 1.08) or 1.0


def _fmt(value: float) -> str:
    if value == int(value) and abs(value) < 1e12:
        return str(int(value))
    return f"{value:.0f}" if abs(value) >= 1000 else f"{value:.4g}"


def _change(series: Series) -> str:
    first, last = series.points[0][1], series.points[-1][1]
    unit = f" {series.unit}" if series.unit else ""
    if series.unit.endswith("per second"):
        unit = f" {series.unit[: -len('per second')].strip()}/s".replace(" /s", "/s")
    delta = last - first
    sign = "+" if delta > 0 else ""
    return f"{_fmt(first)} -> {_fmt(last)}{unit}, {sign}{_fmt(delta)}"


def describe(series: Sequence[Series], marks: Sequence[Mark] = (), t0: float | None = None) -> str:
    """The text alternative of a chart: each series' range and change, and the marks."""
    drawn = [s for s in series if s.points]
    if not drawn and not marks:
        return "No metric series to chart."
    firsts = [s.points[0][0] for s in drawn] or [m.at for m in marks]
    start = t0 if t0 is not None else min(firsts)
    lines = [] if drawn else ["No metric series to chart."]
    for s in drawn:
        values = [v for _, v in s.points]
        span = s.points[-1][0] - s.points[0][0]
        unit = f" ({s.unit})" if s.unit else ""
        lines.append(
            f"{s.name}{unit}: {_change(s)} over {span:.1f} s; min {_fmt(min(values))}, "
            f"max {_fmt(max(values))}, {len(values)} point(s)"
            + ("; axis from zero" if y_range(s) is not None else "")
        )
    for m in sorted(marks, key=lambda m: m.at):
        lines.append(f"at {m.at - start:.1f} s: {m.kind} {m.label}")
    return "\n".join(lines)


def render_png(
    series: Sequence[Series],
    marks: Sequence[Mark] = (),
    *,
    t0: float | None = None,
    cols: int = 2,
    width: float = 4.2,
    height: float = 1.9,
    dpi: int = 80,
) -> bytes:
    """Small multiples of `series` with `marks` as vertical lines, as PNG bytes (b"" if none)."""
    drawn = [s for s in series if s.points]
    if not drawn:
        return b""
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    cols = max(1, min(cols, len(drawn)))
    rows = (len(drawn) + cols - 1) // cols
    fig = Figure(figsize=(width * cols, height * rows + (0.35 if marks else 0)), dpi=dpi)
    FigureCanvasAgg(fig)
    start = t0 if t0 is not None else min(s.points[0][0] for s in drawn)
    labelled: set[str] = set()
    first: Any = None
    for i, s in enumerate(drawn):
        # one time axis for every panel: a moment lines up across them
        ax = fig.add_subplot(rows, cols, i + 1, sharex=first)
        first = first if first is not None else ax
        xs = [t - start for t, _ in s.points]
        ys = [v for _, v in s.points]
        ax.plot(xs, ys, marker=".", lw=1.2, color="#374151")
        limits = y_range(s)
        if limits is not None:
            ax.set_ylim(*limits)
        for m in marks:
            label = f"{m.kind}: {m.label}"
            ax.axvline(
                m.at - start,
                color=MARK_COLOURS.get(m.level, "#6b7280"),
                ls="--" if m.kind == "notification" else ":",
                lw=1.1,
                label=None if label in labelled else label,
            )
            labelled.add(label)
        unit = s.unit
        ax.set_title(f"{s.name}: {_change(s)}", fontsize=8)
        if unit:
            ax.set_ylabel(unit, fontsize=7)
        ax.tick_params(labelsize=7)
        ax.grid(alpha=0.3)
    fig.supxlabel("seconds since the start", fontsize=8)
    if marks:
        handles, labels = [], []
        for ax in fig.axes:
            h, lab = ax.get_legend_handles_labels()
            handles += h
            labels += lab
        rows_of_labels = (len(labels) + 1) // 2
        fig.legend(
            handles,
            [lab[:60] for lab in labels],
            loc="upper center",
            fontsize=7,
            ncol=min(2, len(labels)),
            frameon=False,
            bbox_to_anchor=(0.5, 1.0),
        )
        top = 1.0 - (0.06 + 0.05 * rows_of_labels) / rows
        fig.tight_layout(rect=(0, 0, 1, top))
    else:
        fig.tight_layout()
    out = io.BytesIO()
    fig.savefig(out, format="png")
    return out.getvalue()
