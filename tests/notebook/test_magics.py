"""The %lens magics in a real InteractiveShell: each subcommand, help, bad input, mime data."""

from __future__ import annotations

import os
import subprocess
import sys
import textwrap
import time
from collections.abc import Iterator
from typing import Any

import pytest
from IPython.core.error import UsageError
from IPython.core.interactiveshell import InteractiveShell
from IPython.utils.capture import capture_output

import lensbook
from lensbook.clients import ScriptedClient, call
from lensbook.notebook import last
from lensbook.notebook.widgets import OperatorCard, live_views, views

from ._helpers import endless_script, finding_script

WIDGET_MIME = "application/vnd.jupyter.widget-view+json"


@pytest.fixture
def shell() -> Iterator[InteractiveShell]:
    ip = InteractiveShell.instance()
    ip.run_line_magic("load_ext", "lensbook")
    ip.run_line_magic("config", "LensMagics.widgets = 'on'")
    yield ip
    ip.run_line_magic("unload_ext", "lensbook")
    ip.config.pop("LensMagics", None)
    for name in ("sc", "x", "y"):
        ip.user_ns.pop(name, None)


def mime(ip: InteractiveShell, value: Any) -> dict[str, Any]:
    data, _ = ip.display_formatter.format(value)
    return dict(data)


def test_extension_registers_the_magic_and_unloads_cleanly(shell: InteractiveShell) -> None:
    assert "lens" in shell.magics_manager.magics["line"]
    assert any(type(c).__name__ == "LensMagics" for c in shell.configurables)
    shell.run_line_magic("unload_ext", "lensbook")
    assert "lens" not in shell.magics_manager.magics["line"]
    assert not any(type(c).__name__ == "LensMagics" for c in shell.configurables)
    shell.run_line_magic("load_ext", "lensbook")
    assert "lens" in shell.magics_manager.magics["line"]


def test_import_starts_nothing_and_imports_no_ipython() -> None:
    code = textwrap.dedent(
        """
        import sys, threading
        import lensbook, lensbook.notebook
        assert "IPython" not in sys.modules, "IPython imported"
        assert "ipywidgets" not in sys.modules, "ipywidgets imported"
        assert threading.active_count() == 1, threading.enumerate()
        assert lensbook.notebook.last() is None
        print("ok")
        """
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60)
    assert out.returncode == 0, out.stderr
    assert out.stdout.strip() == "ok"


def test_run_shows_a_live_card_and_returns_the_result(shell: InteractiveShell) -> None:
    shell.user_ns["sc"] = finding_script()
    with capture_output() as cap:
        result = shell.run_line_magic("lens", "run runtime --client sc --reason 'fds grow'")
    assert result.result.stop_reason == "done"
    assert result.result.state == "warning"
    assert len(result) == 1 and result[0].anomaly_type == "fd_growth"
    # first the card as shown, then the same display updated with the final text
    shown, final = cap.outputs[0].data, cap.outputs[-1].data
    assert WIDGET_MIME in shown
    assert shown[WIDGET_MIME]["model_id"] == final[WIDGET_MIME]["model_id"]
    assert "queued" in shown["text/plain"]
    assert final["text/plain"].startswith("Python runtime [runtime] | WARNING | idle")
    assert "finished (done)" in final["text/plain"]
    assert "[WARNING] runtime: fd_growth" in final["text/plain"]
    # the returned value reads as one line; .result has everything
    bundle = mime(shell, result)
    assert "runtime: warning, 1 notification(s) after 5 iteration(s)" in bundle["text/plain"]
    assert "text/html" in bundle
    assert last() is not None and last().result.run_id == result.result.run_id  # type: ignore[union-attr]


def test_run_card_state_after_the_run(shell: InteractiveShell) -> None:
    shell.user_ns["sc"] = finding_script(state="critical")
    with capture_output():
        shell.run_line_magic("lens", "run runtime --client sc")
    card = last_card()
    assert not card.listening  # a run's card stops listening once the run ended
    assert card.bar.bar_style == "success"
    assert card.bar.value == card.bar.max == 25
    assert card.bar.description == "5/25"
    assert "critical" in card.header.value and "#dc2626" in card.header.value
    assert card.feed is not None and "fd_growth" in card.feed.html()


def test_reason_is_not_expanded(shell: InteractiveShell) -> None:
    shell.user_ns.update(sc=finding_script(), x="EXPANDED", y="EXPANDED")
    with capture_output():
        shell.run_cell('%lens run runtime --client sc --reason "{x} and $y grow"')
    underscore = shell.user_ns["_"]  # the cell's value: the run's notifications
    assert underscore.result.stop_reason == "done" and underscore[0].anomaly_type == "fd_growth"
    first = shell.user_ns["sc"].requests[0].messages[0].text
    assert '"reason": "{x} and $y grow"' in first
    assert "EXPANDED" not in first


def test_config_traits_set_run_defaults(shell: InteractiveShell) -> None:
    shell.user_ns["sc"] = endless_script()
    with capture_output() as cap:
        shell.run_line_magic("config", "LensMagics")
    assert "max_iterations" in cap.stdout and "refresh_rate" in cap.stdout
    shell.run_line_magic("config", "LensMagics.max_iterations = 2")
    shell.run_line_magic("config", "LensMagics.client = 'sc'")
    with capture_output():
        result = shell.run_line_magic("lens", "run runtime")
    assert result.result.stop_reason == "max_iterations"
    assert result.result.iterations == 2
    assert result.result.client == "scripted"


def test_max_iterations_flag_beats_the_config(shell: InteractiveShell) -> None:
    shell.user_ns["sc"] = endless_script()
    shell.run_line_magic("config", "LensMagics.max_iterations = 5")
    with capture_output():
        result = shell.run_line_magic("lens", "run runtime --client sc --max-iterations 3")
    assert result.result.iterations == 3


def test_background_run_returns_at_once_and_the_card_finishes(shell: InteractiveShell) -> None:
    shell.user_ns["sc"] = finding_script()
    with capture_output() as cap:
        value = shell.run_line_magic("lens", "run runtime --client sc --background")
    assert value is None
    assert WIDGET_MIME in cap.outputs[0].data
    card = last_card()
    notes = last("runtime", wait=True, timeout=30)
    assert notes is not None and notes.result.state == "warning"
    _settle(card)
    assert card.model.stop_reason == "done"
    assert card.bar.bar_style == "success"
    assert "fd_growth" in card.text()


def test_stop_ends_a_background_run_with_what_it_found(shell: InteractiveShell) -> None:
    shell.user_ns["sc"] = ScriptedClient([call("take_snapshot"), call("wait", seconds=30)])
    with capture_output():
        shell.run_line_magic("lens", "run runtime --client sc --background")
    card = last_card()
    while shell.user_ns["sc"].remaining != 0:  # until the model asked to wait
        time.sleep(0.01)
    report = shell.run_line_magic("lens", "stop runtime")
    assert "its run returned what it had found" in repr(report)
    notes = last("runtime", wait=True, timeout=30)
    assert notes is not None and notes.result.stop_reason == "stopped"
    assert len(notes.result.snapshots) == 1
    _settle(card)
    assert card.bar.bar_style == "warning"
    assert "finished (stopped)" in card.text()


def test_text_mode_without_widgets(shell: InteractiveShell) -> None:
    shell.run_line_magic("config", "LensMagics.widgets = 'off'")
    shell.user_ns["sc"] = finding_script()
    with capture_output() as cap:
        result = shell.run_line_magic("lens", "run runtime --client sc")
    assert cap.outputs == []
    text = mime(shell, result)["text/plain"]
    assert text.startswith("runtime: warning after 5 iteration(s), stopped by done")
    assert "[WARNING] runtime: fd_growth" in text
    with capture_output():
        value = shell.run_line_magic("lens", "dashboard")
    bundle = mime(shell, value)
    assert "Python runtime [runtime] | WARNING" in bundle["text/plain"]
    assert "fd_growth" in bundle["text/plain"]
    assert WIDGET_MIME not in bundle


def test_status_of_all_and_one_operator(shell: InteractiveShell) -> None:
    status = shell.run_line_magic("lens", "status")
    assert "No operators started" in mime(shell, status)["text/plain"]
    assert "runtime: not started" in repr(shell.run_line_magic("lens", "status runtime"))
    shell.user_ns["sc"] = finding_script()
    with capture_output():
        shell.run_line_magic("lens", "run runtime --client sc")
    bundle = mime(shell, shell.run_line_magic("lens", "status runtime"))
    assert bundle["text/plain"].startswith("Python runtime [runtime] | WARNING | idle")
    assert "iteration 5/25" in bundle["text/plain"]
    assert "#d97706" in bundle["text/html"]  # the warning badge


def test_message_asks_the_operator(shell: InteractiveShell) -> None:
    lensbook.start(["runtime"], client=ScriptedClient(["fds grew by 80; look at the loader"]))
    answer = shell.run_line_magic("lens", 'message runtime "why do fds grow?"')
    bundle = mime(shell, answer)
    assert bundle["text/plain"] == (
        "runtime (healthy, iteration 0): fds grew by 80; look at the loader"
    )
    assert "look at the loader" in bundle["text/html"]


def test_message_failure_is_a_usage_error(shell: InteractiveShell) -> None:
    lensbook.start(["runtime"], client=ScriptedClient([]))
    with pytest.raises(UsageError, match="message runtime: every client failed"):
        shell.run_line_magic("lens", "message runtime why")


def test_stop_an_operator(shell: InteractiveShell) -> None:
    assert "runtime: not running" in repr(shell.run_line_magic("lens", "stop runtime"))
    lensbook.start(["runtime"])
    report = repr(shell.run_line_magic("lens", "stop runtime"))
    assert report.startswith("runtime: stopped")
    assert not lensbook.get_operator("runtime").started


def test_skills_lists_the_builtins(shell: InteractiveShell) -> None:
    lensbook.start(["runtime"])
    bundle = mime(shell, shell.run_line_magic("lens", "skills"))
    lines = bundle["text/plain"].splitlines()
    assert lines[0].split()[:2] == ["runtime", "idle"]
    assert "Python runtime" in lines[0]
    assert {line.split()[0] for line in lines} >= set(lensbook.skills.builtin_ids())
    assert "<table>" in bundle["text/html"]


def test_skills_lists_registered_user_skills() -> None:
    from tests.test_cli import LISTED_SKILL

    # in a child process, so that the skill does not join this session's coordinations
    code = LISTED_SKILL + (
        "from IPython.core.interactiveshell import InteractiveShell\n"
        "ip = InteractiveShell.instance()\n"
        "ip.run_line_magic('load_ext', 'lensbook')\n"
        "print(ip.run_line_magic('lens', 'skills').text)\n"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert out.returncode == 0, out.stderr
    row = next(line for line in out.stdout.splitlines() if line.startswith("cli_listed "))
    assert "not started" in row and "Listed skill: A user skill registered" in row


def test_notifications_feed_holds_earlier_findings(shell: InteractiveShell) -> None:
    shell.user_ns["sc"] = finding_script()
    with capture_output():
        shell.run_line_magic("lens", "run runtime --client sc")
    with capture_output() as cap:
        assert shell.run_line_magic("lens", "notifications") is None
    data = cap.outputs[0].data
    assert WIDGET_MIME in data
    assert data["text/plain"].startswith("1 notification(s), newest first:")
    assert "[WARNING] runtime: fd_growth" in data["text/plain"]
    with capture_output() as cap:
        shell.run_line_magic("lens", "notifications runtime")
    assert "fd_growth" in cap.outputs[0].data["text/plain"]


def test_metrics_and_dashboard_show_widgets(shell: InteractiveShell) -> None:
    shell.user_ns["sc"] = finding_script()
    with capture_output():
        shell.run_line_magic("lens", "run runtime --client sc")
    with capture_output() as cap:
        shell.run_line_magic("lens", "metrics runtime")
        shell.run_line_magic("lens", "dashboard")
    metrics, dashboard = cap.outputs[0].data, cap.outputs[1].data
    assert WIDGET_MIME in metrics and WIDGET_MIME in dashboard
    assert "rss_mb" in metrics["text/plain"] and "skill" in metrics["text/plain"]
    assert dashboard["text/plain"].startswith("lensbook operators\nPython runtime [runtime]")
    assert "fd_growth" in dashboard["text/plain"]


def test_unload_stops_every_live_view(shell: InteractiveShell) -> None:
    with capture_output():
        shell.run_line_magic("lens", "dashboard")
        shell.run_line_magic("lens", "notifications")
    assert live_views()
    shell.run_line_magic("unload_ext", "lensbook")
    assert live_views() == []
    shell.run_line_magic("load_ext", "lensbook")


@pytest.mark.parametrize(
    ("line", "message"),
    [
        ("run runtime --bogus", "unrecognized arguments: --bogus"),
        ("run", "the following arguments are required: SKILL"),
        ("run nosuchskill", "no skill 'nosuchskill'"),
        ("run runtime --max-iterations 0", "must be at least 1"),
        ("run runtime --max-iterations many", "not an integer"),
        ("run runtime --client nobody", "unknown client 'nobody'"),
        ("investigate --reason x --client nobody", "unknown client 'nobody'"),
        ("status nosuchskill", "no skill 'nosuchskill'"),
        ("frobnicate", "invalid choice: 'frobnicate'"),
        ("message runtime", "the following arguments are required: QUESTION"),
        ("run runtime --reason 'unclosed", "cannot parse the line"),
        # the options and checks shared with the command line (lensbook.options)
        ("run runtime --timeout 0", "must be a positive number of seconds"),
        ("investigate --reason x --skills nope", "investigate: no skill 'nope'"),
        ("watch start --interval -5", "must be a positive number of seconds"),
        ("history --kinds nonsense", "history: unknown kind"),
    ],
)
def test_bad_input_is_a_one_line_usage_error(
    shell: InteractiveShell, line: str, message: str
) -> None:
    with pytest.raises(UsageError, match=message):
        shell.run_line_magic("lens", line)
    with capture_output() as cap:
        result = shell.run_cell(f"%lens {line}")
    assert isinstance(result.error_in_exec, UsageError)
    assert "Traceback" not in cap.stdout + cap.stderr
    assert len(cap.stderr.strip().splitlines()) == 1
    assert cap.stderr.startswith("UsageError: ")


def test_help(shell: InteractiveShell) -> None:
    with capture_output() as cap:
        shell.run_cell("%lens?")
    for name in ("run", "status", "message", "stop", "skills", "notifications", "dashboard"):
        assert f"%lens {name}" in cap.stdout
    assert "--background" in cap.stdout and "--reason TEXT" in cap.stdout
    assert "%config LensMagics" in cap.stdout
    sub = shell.run_line_magic("lens", "run -h")
    assert repr(sub).startswith("usage: %lens run [-h]")
    assert "--max-iterations N" in repr(sub)
    assert repr(shell.run_line_magic("lens", "")).startswith("usage: %lens")


def last_card() -> OperatorCard:
    return [v for v in views() if isinstance(v, OperatorCard)][-1]


def _settle(card: OperatorCard) -> None:
    """Wait until the card got its final state (set by the run's done callback on the lens loop)."""
    for _ in range(3000):
        if not card.listening:
            return
        time.sleep(0.01)
    raise AssertionError("the card never finished")


@pytest.mark.slow
def test_terminal_ipython_config_and_text_without_ipywidgets(tmp_path: Any) -> None:
    """The extension listed in IPython's config, a default from the command line, and a
    terminal with no ipywidgets at all: every answer is text."""
    cell = "\n".join(
        [
            "import sys",
            "sys.modules['ipywidgets'] = None  # as if it were not installed",
            "%config LensMagics.widgets = 'on'",
            '%lens run runtime --client offline --reason "from a terminal"',
            "%lens status runtime",
            "print('ipywidgets' in sys.modules and sys.modules['ipywidgets'] is None)",
        ]
    )
    env = {k: v for k, v in os.environ.items() if k != "ANTHROPIC_API_KEY"}
    env["IPYTHONDIR"] = str(tmp_path)
    out = subprocess.run(
        [
            sys.executable,
            "-m",
            "IPython",
            "--no-banner",
            "--colors=nocolor",
            "--InteractiveShellApp.extensions=['lensbook']",
            "--LensMagics.max_iterations=2",
            "--InteractiveShell.ast_node_interactivity=all",
            "-c",
            cell,
        ],
        capture_output=True,
        text=True,
        timeout=120,
        env=env,
    )
    assert out.returncode == 0, out.stderr
    assert "runtime: " in out.stdout
    assert "after 2 iteration(s), stopped by max_iterations" in out.stdout
    assert "[client: offline investigator]" in out.stdout
    assert "Python runtime [runtime] | " in out.stdout
    assert "widget" not in out.stdout.lower()
    assert out.stdout.rstrip().endswith("True")


def test_runs_and_replay_subcommands(shell: InteractiveShell, tmp_path: Any) -> None:
    """%lens runs lists the records; %lens replay re-runs one and reports divergences."""
    from lensbook.records import configure, writer

    configure(tmp_path)
    try:
        lensbook.start(["runtime"])
        notes = lensbook.run("runtime", reason="for the record")
        path = writer.path_of(notes.result.run_id)
        table = shell.run_line_magic("lens", "runs")
        assert list(table["run_id"]) == [notes.result.run_id]
        report = shell.run_line_magic("lens", f"replay {path} --tools record")
        assert "the same as the record; 0 divergence(s)" in repr(report)
        with pytest.raises(UsageError, match=r"missing\.jsonl"):
            shell.run_line_magic("lens", f"replay {tmp_path / 'missing.jsonl'}")
    finally:
        writer._directory = None


def test_a_queued_run_card_shows_its_own_run_until_it_starts(shell: InteractiveShell) -> None:
    first = ScriptedClient(
        [call("take_snapshot"), call("wait", seconds=2), call("done", summary="first")],
        name="first",
    )
    shell.user_ns.update(first=first, sc=finding_script())
    with capture_output():
        shell.run_line_magic("lens", "run runtime --client first --background")
    running = last_card()
    deadline = time.monotonic() + 60
    while first.remaining != 1:  # the first run is in its wait
        assert time.monotonic() < deadline, "the first run never reached its wait"
        time.sleep(0.01)
    with capture_output():
        shell.run_line_magic("lens", "run runtime --client sc --background")
    queued = last_card()
    assert queued is not running
    shown: list[str] = [queued.header.value]
    queued.header.observe(lambda change: shown.append(change["new"]), "value")
    assert queued.model.waiting and "queued" in queued.header.value
    assert queued.bar.description == "0/25" and queued.bar.value == 0
    notes = last("runtime", wait=True, timeout=60)
    assert notes is not None and notes.result.client == "scripted"
    _settle(queued)
    _settle(running)
    # the first run's iterations and end reached its own card, never the queued one
    assert "finished (done)" in running.text() and "client: first" in running.header.value
    assert not any("client: first" in value or "first</i>" in value for value in shown), shown
    # until its run started the card said "queued"; then it showed its own run only
    own = [v for v in shown if "queued" not in v]
    assert all("running" in v or "client: scripted" in v for v in own), own
    assert queued.model.run_id == notes.result.run_id
    assert "fd_growth" in queued.text() and "client: scripted" in queued.header.value


def test_triage_answers_with_ranked_signals_and_rejects_unknown_skills(
    shell: InteractiveShell,
) -> None:
    report = shell.run_line_magic("lens", "triage runtime gc")
    data = mime(shell, report)
    assert data["text/plain"].startswith("triage: ") and "from 2 skill(s)" in data["text/plain"]
    assert "triage:" in data["text/html"]
    with pytest.raises(UsageError, match="no skill 'nope'"):
        shell.run_line_magic("lens", "triage nope")
