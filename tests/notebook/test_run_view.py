"""A recorded run displays with the live run's widgets, read-only."""

from __future__ import annotations

from pathlib import Path

import lensbook
from lensbook.notebook.run_view import RunView
from lensbook.records import configure, writer

from ._helpers import finding_script


def test_run_view_rebuilds_the_card_feed_and_metrics(tmp_path: Path) -> None:
    configure(tmp_path)
    try:
        op = lensbook.Operator.start(skill="runtime", client=finding_script())
        notes = op.run({"reason": "view me"})
        run = lensbook.load_run(writer.path_of(notes.result.run_id))  # type: ignore[arg-type]
    finally:
        writer._directory = None
    view = RunView(run)
    card, feed, metrics = view.children[1], view.children[2], view.children[3]
    assert card.bar.bar_style == "success"
    assert card.model.state == notes.result.state
    assert card.model.iteration == notes.result.iterations
    assert not card.listening and not feed.listening and not metrics.listening
    assert len(feed.model.entries) == len(notes) >= 1
    assert notes[0].anomaly_type in feed.html()
    assert not metrics.model.table().empty
    assert "rss_mb" in metrics.table.value
    assert metrics.chart.value[:4] == b"\x89PNG"
    assert repr(view) == run.summary()


def test_a_record_from_another_process_is_charted_from_its_own_numbers() -> None:
    leak = Path(__file__).resolve().parents[2] / "notebooks" / "records" / "cache-leak.jsonl"
    record = lensbook.load_run(leak)
    metrics = RunView(record).children[3]
    assert metrics.chart.value[:4] == b"\x89PNG"
    text = metrics.model.chart_text()  # the chart's text alternative, from the record's snapshots
    assert "rss_mb (MB): 48.03 -> 96.66 MB, +48.63 over 3.0 s" in text
    assert "notification [warning] memory_leak" in text
    assert "rss_mb (MB): 48.03 -&gt; 96.66" in metrics.caption_text.value
