"""The coordinator's and the watcher's live views, and the `%lens investigate|watch` glue,
in a real InteractiveShell (the glue is called as LensMagics will call it)."""

from __future__ import annotations

import argparse
import re
from collections.abc import Iterator
from typing import Any

import pytest
from IPython.core.interactiveshell import InteractiveShell

from lensbook.clients import ScriptedClient, call
from lensbook.coordinator import Coordinator
from lensbook.coordinator.watcher import stop_watching
from lensbook.notebook._coordinator_commands import add_parsers, investigate, watch_command
from lensbook.notebook._reports import Investigated
from lensbook.notebook.coordinator_view import CoordinatorView, WatchView
from lensbook.notebook.widgets import views

from ._scripts import GATE, Alpha, Beta, operator_script, wait_until_idle


@pytest.fixture
def magics(monkeypatch: pytest.MonkeyPatch) -> Iterator[Any]:
    monkeypatch.delenv("ANTHROPIC_API_KEY", raising=False)
    ip = InteractiveShell.instance()
    ip.run_line_magic("load_ext", "lensbook")
    found = next(c for c in ip.configurables if type(c).__name__ == "LensMagics")
    found.widgets = "on"
    yield found
    found.widgets = "auto"
    ip.run_line_magic("unload_ext", "lensbook")
    stop_watching()


def parse(line: list[str]) -> argparse.Namespace:
    parser = argparse.ArgumentParser()
    add_parsers(parser.add_subparsers(dest="command"))
    return parser.parse_args(line)


def test_the_view_follows_a_run_live_and_ends_exact() -> None:
    GATE.set()

    def insight(request: Any) -> Any:
        from ._scripts import last_result

        found = last_result(request, "get_notifications")["notifications"]
        return call(
            "produce_insight",
            notification_ids=[n["id"] for n in found],
            correlation_type="causal",
            summary="alpha explains beta",
            matched_observations=["alpha grew by 40 in 2 s"],
            hypothesis_grounded=True,
            root_cause_hypothesis="alpha is overloaded",
            confidence="high",
        )

    client = ScriptedClient(
        [
            call("invoke_operators", skills=["alpha", "beta"], context="look"),
            *[wait_until_idle] * 12,
            call("get_notifications", status="unread"),
            insight,
            call("done", summary="alpha explains beta"),
        ]
    )
    clients = {"alpha": operator_script("alpha"), "beta": operator_script("beta")}
    coordinator = Coordinator(skills=[Alpha, Beta], client=client, operator_client=clients)
    view = CoordinatorView(coordinator, "why is beta slow?", refresh_rate=0)
    result = coordinator.run("why is beta slow?")
    # folded from events alone, before finish(): cards, notifications, insight
    model = view.model
    assert set(model.cards) == {"alpha", "beta"}
    assert model.insights[0]["correlation_type"] == "causal"
    assert {n["status"] for n in model.notes.values()} == {"resolved"}
    assert model.stop_reason == "done" and not model.running
    view.finish(result)
    assert not view.listening
    text = view.text()
    assert "Investigate: why is beta slow?" in text
    assert "coordinator (agent) | stopped by done" in text
    assert "Alpha [coordinator.alpha]" not in text  # cards are titled by skill
    assert "alpha [coordinator.alpha] | WARNING" in text
    # the operators' order in the insight follows which one reported first
    insight = r"insight \[high causal\] (alpha, beta|beta, alpha): alpha explains beta"
    assert re.search(insight, text)
    assert "causal" in view.insights.value and "high confidence" in view.insights.value
    assert "resolved" in view.feed.value
    assert "coordinator.beta" in view.operators.value


def test_investigate_magic_runs_the_coordinator_with_a_live_view(magics: Any) -> None:
    args = parse(["investigate", "--reason", "routine check", "--skills", "runtime"])
    # the views made before, held so that none is collected meanwhile (a count of them would
    # shift when the garbage collector drops one, and the slice would miss the new view)
    before = views()
    answer = investigate(magics, args)
    assert isinstance(answer, Investigated)
    assert answer.result.stop_reason == "done"
    assert list(answer.result.operator_results) == ["runtime"]
    assert "stopped by done" in repr(answer)
    new = [v for v in views() if not any(v is b for b in before)]
    shown = [v for v in new if isinstance(v, CoordinatorView)]
    assert len(shown) == 1 and not shown[0].listening
    assert "runtime" in shown[0].text()
    # without widgets the result itself is returned
    magics.widgets = "off"
    plain = investigate(magics, parse(["investigate", "--reason", "x", "--skills", "runtime"]))
    assert plain.stop_reason == "done"


def test_watch_magic_starts_shows_and_stops_the_watcher(magics: Any) -> None:
    args = parse(["watch", "start", "--skills", "logs", "--interval", "60", "--no-trigger"])
    assert watch_command(magics, args) is None
    assert any(isinstance(v, WatchView) for v in views())
    magics.widgets = "off"
    status = watch_command(magics, parse(["watch", "status"]))
    assert status.text.startswith("watch: learning | ")
    assert "stopped after" in watch_command(magics, parse(["watch", "stop"])).text
    assert watch_command(magics, parse(["watch", "status"])).text.startswith("watch: not watching")


def test_a_notification_in_the_view_says_what_moved_between_its_snapshots() -> None:
    from lensbook.events import Event
    from lensbook.notebook._coordinator_models import CoordinatorModel

    model = CoordinatorModel("coordinator", "why?")
    steps = [
        Event("coordinator_started", "coordinator", "c1", {"strategy": "agent"}, at=100.0),
        Event("snapshot", "coordinator.alpha", "r1", {"id": "s1", "data": {"depth": 42}}, 101.0),
        Event("snapshot", "coordinator.alpha", "r1", {"id": "s2", "data": {"depth": 90}}, 103.0),
    ]
    note = {
        "id": "n1",
        "operator": "coordinator.alpha",
        "severity": "warning",
        "anomaly_type": "queue_growth",
        "observation": "the queue doubled",
        "snapshot_ids": ["s1", "s2"],
        "detected_at": "1970-01-01T00:01:44+00:00",
    }
    data = {"skill": "alpha", "notification": note}
    steps.append(Event("coordinator_notification", "coordinator", "c1", data))
    for event in steps:
        assert model.wants(event)
        model.apply(event)
    assert "moved: <code>depth: 42 -&gt; 90 (+48, +114%, +24/s)</code>" in model.notes_html()
