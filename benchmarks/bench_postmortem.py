"""What an incident review costs: writing a postmortem notebook, executing it, exporting it, and
the pieces the views recompute (a chart with its marks, the evidence of a notification, a feed
flush with 50 notifications).

    .venv/bin/python benchmarks/bench_postmortem.py [--repeats 5]

write      `lensbook.postmortem(record, execute=False)` on the shipped leak record (copy + cells).
execute    the same with `execute=True`: a fresh kernel runs every cell once (nbclient).
html       the nbconvert export of the executed notebook (self-contained).
chart      `charts.render_png` of 4 series of 60 points with 2 marks, and the old chart (no
           marks, fitted axes) side by side: the honest axes and marks should cost about the same.
evidence   `Run.evidence(note)` for the record's notification.
feed       `FeedModel.html()` with 50 notifications citing 2 of 256 snapshots each (the text
           fallback and what each accordion page is built from).
Medians of `--repeats` runs (execute and html: 1 run each unless --repeats-kernel).
"""

from __future__ import annotations

import argparse
import io
import statistics
import tempfile
import time
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parents[1]
LEAK = REPO / "notebooks" / "records" / "cache-leak.jsonl"


def median_ms(fn: Any, repeats: int) -> float:
    times = []
    for _ in range(repeats):
        started = time.perf_counter()
        fn()
        times.append(time.perf_counter() - started)
    return 1000 * statistics.median(times)


def old_chart(series: list[Any]) -> bytes:
    """The chart as lensbook 0.1 drew it (fitted axes, no marks), for the side-by-side figure."""
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    fig = Figure(figsize=(8.4, 3.8), dpi=80)
    FigureCanvasAgg(fig)
    for i, s in enumerate(series):
        ax = fig.add_subplot(2, 2, i + 1)
        ax.plot([t for t, _ in s.points], [v for _, v in s.points], marker=".", lw=1.2)
        ax.set_title(s.name, fontsize=9)
    fig.tight_layout()
    out = io.BytesIO()
    fig.savefig(out, format="png")
    return out.getvalue()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--repeats-kernel", type=int, default=1)
    args = parser.parse_args()

    import lensbook
    from lensbook.charts import Mark, Series, render_png
    from lensbook.notebook._models import FeedModel
    from lensbook.review import export_html, postmortem

    work = Path(tempfile.mkdtemp(prefix="bench-postmortem-"))
    write = median_ms(lambda: postmortem(LEAK, work / "w.ipynb", execute=False), args.repeats)
    execute = median_ms(
        lambda: postmortem(LEAK, work / "e.ipynb", execute=True), args.repeats_kernel
    )
    html = median_ms(lambda: export_html(work / "e.ipynb"), args.repeats_kernel)
    print(
        f"postmortem of the leak record: write {write:.0f} ms, write+execute {execute:.0f} ms, "
        f"HTML export {html:.0f} ms ({(work / 'e.html').stat().st_size // 1024} KB)"
    )

    series = [
        Series(name, [(float(t), base + (t % 7) * 0.3) for t in range(60)])
        for name, base in (("rss_mb", 68.0), ("open_fds", 70), ("threads", 220), ("cpu_percent", 5))
    ]
    marks = [Mark(30.0, "[warning] x", "notification"), Mark(31.0, "healthy -> warning", "state")]
    new = median_ms(lambda: render_png(series, marks, t0=0.0), args.repeats)
    old = median_ms(lambda: old_chart(series), args.repeats)
    print(
        f"chart of 4 series x 60 points: {new:.1f} ms with zero-based axes, titles and 2 marks; "
        f"{old:.1f} ms as 0.1 drew it (ratio {new / old:.2f})"
    )

    run = lensbook.load_run(LEAK)
    note = run.notification_objects[0]
    evidence = median_ms(lambda: run.evidence(note), args.repeats * 20)
    print(f"evidence of the leak notification from its record: {evidence:.3f} ms")

    feed = FeedModel(max_entries=50)
    for i in range(256):
        feed.add_snapshot(f"s{i}", {"rss_mb": 60.0 + i, "threads": 200 + i}, 1000.0 + i)
    for i in range(50):
        feed.add(
            {
                "id": f"n{i}",
                "operator": "runtime",
                "severity": "warning",
                "anomaly_type": "growth",
                "context": "c",
                "observation": "o",
                "snapshot_ids": [f"s{2 * i}", f"s{2 * i + 100}"],
                "detected_at": f"1970-01-01T00:20:{i % 60:02d}+00:00",
            }
        )
    per_flush = median_ms(feed.html, args.repeats * 4)
    print(f"feed of 50 notifications with their evidence, rendered: {per_flush:.2f} ms")


if __name__ == "__main__":
    main()
