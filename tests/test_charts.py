"""Charts that do not exaggerate: zero kept for sizes, the change stated, rates per second,
marks on the time axis, and a text alternative that says the same."""

from __future__ import annotations

from lensbook.charts import Mark, Series, describe, render_png, unit_of, y_range


def test_a_2_mb_wobble_on_68_mb_stays_a_wobble_and_the_change_is_stated() -> None:
    wobble = Series("rss_mb", [(100.0, 68.2), (101.0, 70.2), (102.0, 68.9)])
    low, high = y_range(wobble) or (None, None)
    assert low == 0.0 and high is not None and 70.2 < high < 80  # the axis keeps its zero
    text = describe([wobble], t0=100.0)
    assert "rss_mb (MB): 68.2 -> 68.9 MB, +0.7 over 2.0 s; min 68.2, max 70.2" in text
    assert "axis from zero" in text
    # a number with no true zero (a generation counter that resets) keeps matplotlib's fit
    assert y_range(Series("gc_gen0", [(0.0, 400.0), (1.0, 12.0)])) is None
    assert y_range(Series("delta_mb", [(0.0, -3.0), (1.0, 2.0)])) is None  # goes below zero


def test_units_and_rates_come_from_the_names() -> None:
    assert unit_of("write_mb_per_s") == "MB per second"
    assert unit_of("errors_per_s") == "per second"
    assert unit_of("cpu_percent") == "%"
    assert unit_of("threads") == ""
    rate = Series("errors_per_s", [(0.0, 0.0), (4.0, 12.5)])
    assert "errors_per_s (per second): 0 -> 12.5/s, +12.5" in describe([rate])
    assert y_range(rate) == (0.0, 12.5 * 1.08)


def test_marks_are_on_the_chart_and_in_its_text_alternative() -> None:
    series = [Series("open_fds", [(10.0, 20.0), (12.0, 90.0)])]
    marks = [
        Mark(12.5, "[warning] fd_growth", "notification", "warning"),
        Mark(12.6, "healthy -> warning", "state", "warning"),
    ]
    png = render_png(series, marks, t0=10.0)
    assert png[:4] == b"\x89PNG" and len(png) > 5_000
    assert render_png(series, [], t0=10.0) != png  # the marks are drawn
    text = describe(series, marks, t0=10.0)
    assert "at 2.5 s: notification [warning] fd_growth" in text
    assert "at 2.6 s: state healthy -> warning" in text
    assert render_png([]) == b"" and describe([]) == "No metric series to chart."
