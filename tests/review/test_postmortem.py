"""Postmortem notebooks from real records: written, executed, checked by nbval in a fresh kernel
with no key, exported to HTML and opened in headless Chromium; from the CLI and `%lens`."""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
import sys
import threading
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import nbformat
import pytest
from IPython.core.error import UsageError
from IPython.core.interactiveshell import InteractiveShell

import lensbook
from lensbook.cli import main
from lensbook.records import RecordError, load_run
from lensbook.review import PostmortemError, postmortem, show

REPO = Path(__file__).resolve().parents[2]
LEAK = REPO / "notebooks" / "records" / "cache-leak.jsonl"
CHROMIUM = Path("/usr/bin/chromium")
ARTIFACTS = Path(os.environ.get("LENSBOOK_ARTIFACTS", REPO / "tmp" / "artifacts"))


def offline_env() -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if k not in ("ANTHROPIC_API_KEY", "OPENAI_API_KEY")}
    env["MPLBACKEND"] = "agg"
    return env


def nbval(notebook: Path) -> subprocess.CompletedProcess[str]:
    """nbval runs the notebook top to bottom in a fresh kernel, with no API key."""
    return subprocess.run(
        [
            sys.executable,
            "-m",
            "pytest",
            "-q",
            "-p",
            "no:cacheprovider",
            "--nbval-lax",
            "--nbval-current-env",
            notebook.name,
        ],
        cwd=notebook.parent,
        env=offline_env(),
        capture_output=True,
        text=True,
        timeout=240,
    )


def outputs(nb: Any) -> str:
    """Every text output of an executed notebook, joined."""
    texts = []
    for cell in nb.cells:
        for out in cell.get("outputs", []):
            assert out.output_type != "error", out
            texts.append(out.get("text") or out.get("data", {}).get("text/plain", ""))
    return "\n".join(texts)


@pytest.fixture(scope="module")
def leak_review(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The shipped leak investigation's record turned into a postmortem, with its HTML export."""
    out = tmp_path_factory.mktemp("review") / "leak-review.ipynb"
    written = postmortem(LEAK, out, html=True)
    assert written.path == out and written.html_path == out.with_suffix(".html")
    return out


def test_a_recorded_leak_becomes_a_postmortem_nbval_runs_offline(leak_review: Path) -> None:
    nb = nbformat.read(leak_review, as_version=4)
    markdown = "\n".join(c.source for c in nb.cells if c.cell_type == "markdown")
    for part in (
        "What was asked",
        "> memory keeps growing while the service runs",
        "| host |",
        "| Python | 3.11.7 |",
        "| lensbook | 0.1.0 |",
        "| client | offline investigator |",
        "Timeline",
        "Findings",
        "History around the incident",
        "Replay",
    ):
        assert part in markdown, part
    text = outputs(nb)
    # evidence that reads: what moved between the cited snapshots, old -> new and the rate
    assert "rss_mb: 48.03 -> 96.66 (+48.63, +101%, +16.01/s)" in text
    assert "memory_allocation_diff:" in text  # a probe result it rests on
    assert "axis from zero" in text and "at 3.3 s: notification [warning] memory_leak" in text
    assert "no history section" in text  # tolerated: this record predates the flight recorder
    assert "same notifications: True" in text
    # the records travel with the notebook, private to the user
    folder = leak_review.with_name("leak-review.records")
    assert (folder / LEAK.name).read_bytes() == LEAK.read_bytes()
    assert (folder / LEAK.name).stat().st_mode & 0o777 == 0o600
    assert folder.stat().st_mode & 0o777 == 0o700
    assert leak_review.stat().st_mode & 0o777 == 0o600  # it shows what the records hold
    checked = nbval(leak_review)
    assert checked.returncode == 0, checked.stdout[-3000:] + checked.stderr[-2000:]
    assert " passed" in checked.stdout


def test_a_coordinator_run_is_recorded_replayed_and_becomes_a_postmortem(tmp_path: Path) -> None:
    gate = threading.Event()  # 210 parked threads: the runtime operator reports thread_growth
    parked = [threading.Thread(target=gate.wait, daemon=True) for _ in range(210)]
    for t in parked:
        t.start()
    try:
        result = lensbook.Coordinator(skills=["runtime"]).run("the service is slow", deadline=90)
    finally:
        gate.set()
    table = lensbook.runs()
    row = table[table.run_id == result.run_id].iloc[0]
    assert (row.kind, row.operator, row.stop_reason) == ("coordinator", "coordinator", "done")
    assert row.notifications == len(result.notifications) >= 1
    record = load_run(row.path)
    assert record.kind == "coordinator" and record.complete
    assert record.of_kind("model_response")  # the coordinator's own turns
    (operator_run,) = record.operator_records
    assert operator_run["operator_run_id"] == result.operator_results["runtime"].run_id
    assert (Path(row.path).parent / operator_run["record"]).exists()
    again = lensbook.replay(record, tools="record")
    assert again.same_notifications and not again.divergences, again
    assert [t.notification.id for t in again.notifications] == [
        t.notification.id for t in result.notifications
    ]
    # the coordinator's record finds the evidence in its operator's record beside it
    evidence = record.evidence(record.notification_objects[0])
    assert evidence.snapshots and not evidence.missing

    review = postmortem(row.path, tmp_path / "coordination.ipynb")
    assert [r.kind for r in review.runs] == ["coordinator", "operator"]
    text = outputs(nbformat.read(review.path, as_version=4))
    assert "insight(s)" in text and "1 operator run(s):" in text
    # the coordinator's timeline: its operator's metrics and state changes on one time axis
    assert re.search(r"runtime\.\w+ .*->.* over", text) and "state runtime healthy ->" in text
    assert "what moved between snapshots" in text  # the evidence, from the operator's record
    assert text.count("same notifications: True") == 2
    checked = nbval(review.path)
    assert checked.returncode == 0, checked.stdout[-3000:] + checked.stderr[-2000:]


@pytest.mark.slow
def test_the_html_export_in_headless_chromium_shows_the_timeline_and_findings(
    leak_review: Path, tmp_path: Path
) -> None:
    if not CHROMIUM.exists():
        pytest.skip("Debian chromium is not installed (/usr/bin/chromium)")
    from playwright.sync_api import expect, sync_playwright

    page_file = leak_review.with_suffix(".html")
    html = page_file.read_text()
    assert "<script src=" not in html and "<link" not in html  # self-contained: nothing to fetch
    with sync_playwright() as pw:
        browser = pw.chromium.launch_persistent_context(
            str(tmp_path / "profile"),
            executable_path=str(CHROMIUM),
            args=["--headless", "--no-sandbox", "--disable-gpu", "--no-first-run"],
            headless=True,
            viewport={"width": 1100, "height": 900},
            offline=True,  # a self-contained file needs no network
        )
        try:
            page = browser.new_page()
            page.goto(page_file.as_uri())
            image = page.locator(".lensbook-timeline img").first
            expect(image).to_be_visible(timeout=30_000)
            width = page.evaluate("(img) => img.naturalWidth", image.element_handle())
            assert width > 300  # the PNG decoded: an image, not a broken icon
            assert "rss_mb" in (image.get_attribute("alt") or "")
            finding = page.locator(".lensbook-finding").first
            expect(finding).to_be_visible()
            expect(finding).to_contain_text("memory_leak")
            expect(finding).to_contain_text("rss_mb: 48.03 -> 96.66")
            ARTIFACTS.mkdir(parents=True, exist_ok=True)
            shot = ARTIFACTS / "postmortem-html.png"
            page.set_viewport_size({"width": 1100, "height": 2000})
            page.screenshot(path=str(shot))  # the top: what, when, where, timeline, findings
            snapshots = finding.locator("details.lensbook-snapshots")
            expect(snapshots.locator("pre").first).to_be_hidden()  # one click away
            snapshots.locator("summary").click()
            expect(snapshots.locator("pre").first).to_contain_text('"heap_blocks"')
        finally:
            browser.close()
    assert shot.stat().st_size > 10_000
    docs = os.environ.get("LENSBOOK_SCREENSHOT_DIR")
    if docs:  # how the screenshots in docs/ are refreshed
        shutil.copy(shot, Path(docs) / shot.name)


def test_the_cli_writes_one_by_run_id_and_refuses_bad_input_clearly(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    records = tmp_path / "runs"
    records.mkdir()
    shutil.copy(LEAK, records / f"20261124T081107000-memory-{load_run(LEAK).run_id}.jsonl")
    monkeypatch.setenv("LENSBOOK_RECORDS_DIR", str(records))
    monkeypatch.chdir(tmp_path)

    def cli(*args: str) -> tuple[int, str, str]:
        code = main(["postmortem", *args])
        out, err = capsys.readouterr()
        return code, out, err

    code, out, err = cli("5ea8ff", "-o", "by-id.ipynb", "--no-execute", "--title", "Cache leak")
    assert code == 0, err
    assert "by-id.ipynb (1 run(s))" in out
    nb = nbformat.read(tmp_path / "by-id.ipynb", as_version=4)
    assert nb.cells[0].source.startswith("# Cache leak")
    assert nb.metadata["lensbook"]["postmortem_of"] == ["5ea8ffb7f22c0164"]
    code, _, err = cli("no-such-run", "-o", "x.ipynb")
    assert code == 2 and "no record 'no-such-run'" in err
    assert not (tmp_path / "x.ipynb").exists()
    code, _, err = cli(str(LEAK), "-o", "review.txt")
    assert code == 2 and "must end in .ipynb" in err


@pytest.fixture
def shell() -> Iterator[InteractiveShell]:
    ip = InteractiveShell.instance()
    ip.run_line_magic("load_ext", "lensbook")
    yield ip
    ip.run_line_magic("unload_ext", "lensbook")


def test_the_magic_writes_one_and_turns_bad_input_into_a_usage_error(
    shell: InteractiveShell, tmp_path: Path
) -> None:
    target = tmp_path / "magic.ipynb"
    written = shell.run_line_magic("lens", f"postmortem {LEAK} -o {target} --no-execute")
    assert written.path == target and target.exists()
    data, _ = shell.display_formatter.format(written)
    assert "magic.ipynb" in data["text/plain"] and "<a href" in data["text/html"]
    with pytest.raises(UsageError, match="no record"):
        shell.run_line_magic("lens", f"postmortem {tmp_path / 'missing.jsonl'}")
    damaged = tmp_path / "damaged.jsonl"
    damaged.write_text(json.dumps({"type": "event"}) + "\n")
    with pytest.raises(UsageError, match="not a lensbook run header"):
        shell.run_line_magic("lens", f"postmortem {damaged} -o {tmp_path / 'd.ipynb'}")
    with pytest.raises(RecordError):
        postmortem(damaged, tmp_path / "d.ipynb", execute=False)


def test_the_history_around_the_incident_is_shown_when_the_record_has_one(
    tmp_path: Path,
) -> None:
    lines = LEAK.read_text().splitlines()
    header = json.loads(lines[0])
    header["history"] = [
        {"at": "08:10:07", "rss_mb": 31.0, "threads": 12},
        {"at": "08:11:07", "rss_mb": 48.0, "threads": 12},
    ]
    with_history = tmp_path / "with-history.jsonl"
    with_history.write_text("\n".join([json.dumps(header), *lines[1:]]) + "\n")
    shown = show.history(load_run(with_history))
    assert "08:10:07" in shown.text and "31.0" in shown.text and "<table" in shown.html
    # a history recorded as an event of its own, in any shape, is shown as it is
    event = {"type": "event", "seq": 99, "at": 1.0, "kind": "history", "data": {"x": [1, 2]}}
    as_event = tmp_path / "as-event.jsonl"
    as_event.write_text(LEAK.read_text() + json.dumps(event) + "\n")
    assert '"x": [' in show.history(load_run(as_event)).text
    review = postmortem(with_history, tmp_path / "h.ipynb", execute=False)
    nb = nbformat.read(review.path, as_version=4)
    assert any(c.source == "show.history(runs[0])" for c in nb.cells)


def test_a_notebook_that_fails_to_run_is_still_written_and_the_error_says_where(
    tmp_path: Path,
) -> None:
    lines = LEAK.read_text().splitlines()
    header = json.loads(lines[0])
    header["skill"] = "a_skill_only_its_author_has"  # replay cannot find it here
    record = tmp_path / "custom.jsonl"
    record.write_text("\n".join([json.dumps(header), *lines[1:]]) + "\n")
    target = tmp_path / "custom.ipynb"
    with pytest.raises(PostmortemError, match=r"custom\.ipynb is written, but running it failed"):
        postmortem(record, target)
    nb = nbformat.read(target, as_version=4)  # nothing lost: the notebook, without outputs
    assert any("lensbook.replay(runs[0]" in c.source for c in nb.cells)


def test_a_record_cannot_name_a_record_outside_its_folder(tmp_path: Path) -> None:
    (tmp_path / "outside.jsonl").write_bytes(LEAK.read_bytes())
    folder = tmp_path / "runs"
    folder.mkdir()
    header = {"type": "header", "format": "lensbook-run", "version": 1, "kind": "coordinator"}
    finished = {
        "type": "event",
        "seq": 1,
        "at": 1.0,
        "kind": "coordinator_operator_finished",
        "data": {"skill": "memory", "record": "../outside.jsonl"},
    }
    crafted = folder / "crafted.jsonl"
    crafted.write_text(json.dumps(header) + "\n" + json.dumps(finished) + "\n")
    with pytest.raises(RecordError, match="not beside it"):
        postmortem(crafted, tmp_path / "review" / "r.ipynb", execute=False)
    assert not (tmp_path / "review" / "r.records").exists()  # nothing half-written
