"""End to end, issue 14's memory scenarios: each fault in a child process
(``python -m lensbook.scenarios NAME --json``), diagnosed by the offline investigator, which
must name the user's function, its file:line and what keeps the memory alive."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from lensbook.scenarios import figure_leak, method_cache_leak, runtime_leak
from tests.scenarios._children import line_of, notes_text, run_offline

pytestmark = pytest.mark.slow


def _run(name: str, home: Path) -> dict[str, Any]:
    outcome = run_offline(name, home)
    assert outcome["diagnosed"], outcome
    return outcome


def test_runtime_reason_leak_flags_growth_from_the_sampled_history(tmp_path: Path) -> None:
    outcome = _run("runtime_leak", tmp_path)
    (note,) = [n for n in outcome["notifications"] if n["anomaly_type"] == "memory_growth"]
    assert note["severity"] in ("warning", "critical")
    site = f"lensbook/scenarios/runtime_leak.py:{line_of(runtime_leak, 'the response body')}"
    assert f"top allocation site {site} in fetch_page" in note["observation"]
    assert "samples" in note["observation"]  # judged on the metrics, not two snapshots


def test_instances_pinned_by_lru_cache_name_the_cache_and_its_fix(tmp_path: Path) -> None:
    outcome = _run("method_cache_leak", tmp_path)
    text = notes_text(outcome)
    line = line_of(method_cache_leak, "# the quote's price history")
    site = f"method_cache_leak.py:{line}"
    assert site in text and "in PriceQuote.__init__" in text
    assert (
        "held by the cache of @functools.lru_cache "
        "lensbook.scenarios.method_cache_leak.PriceQuote.converted"
    ) in text
    assert "PriceQuote.converted.cache_clear()" in text


def test_a_leak_inside_matplotlib_is_blamed_on_the_users_line_and_pyplot(tmp_path: Path) -> None:
    outcome = _run("figure_leak", tmp_path)
    text = notes_text(outcome)
    # retention bursts are short (issue 12's bound on a busy thread: a burst traces 0.1 s at
    # most, where drawing one figure takes ~0.26 s traced), so which of the user's lines that
    # build what pyplot keeps a burst catches depends on where the drawing was: the figure
    # (plt.subplots) or its data (ax.plot); both are render_dashboard's
    lines = (line_of(figure_leak, "plt.subplots()"), line_of(figure_leak, "ax.plot(values)"))
    assert any(f"figure_leak.py:{line} in render_dashboard" in text for line in lines), text
    assert "calls into matplotlib/" in text  # library frames kept as detail
    assert "matplotlib's pyplot figure managers (matplotlib._pylab_helpers.Gcf.figs)" in text
    assert "plt.close(fig)" in text


def test_a_61_mb_dataframe_held_by_out_in_a_small_kernel_is_reported(tmp_path: Path) -> None:
    outcome = _run("out_cache_61mb", tmp_path)
    (note,) = [n for n in outcome["notifications"] if n["anomaly_type"] == "output_cache_retention"]
    assert "Out[3] keeps a pandas.DataFrame of shape 800000x10" in note["observation"]
    assert "61.0 MB" in note["observation"] and "of the process's RSS" in note["observation"]
    assert "del Out[3]" in note["hypothesis"]
