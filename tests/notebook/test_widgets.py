"""The live widgets: their state after real runs, and throttled, batched updates under bursts."""

from __future__ import annotations

import threading
import time
from collections import Counter
from collections.abc import Callable, Iterator
from typing import Any, ClassVar

import comm
import pytest
from comm.base_comm import BaseComm

import lensbook
from lensbook import Skill, events
from lensbook.cards import CardModel
from lensbook.clients import ScriptedClient, call
from lensbook.notebook._models import FeedModel
from lensbook.notebook._throttle import Throttle
from lensbook.notebook._timer import THREAD_NAME, call_later
from lensbook.notebook.widgets import (
    Dashboard,
    MetricsView,
    NotificationFeed,
    OperatorCard,
    live_views,
)

from ._helpers import finding_script


class CountingComm(BaseComm):  # type: ignore[misc]
    """A comm that keeps every message a widget sends (the kernel's would put it on iopub)."""

    sent: ClassVar[list[tuple[str, str, Any]]] = []

    def publish_msg(
        self, msg_type: str, data: Any = None, metadata: Any = None, **keys: Any
    ) -> None:
        CountingComm.sent.append((self.comm_id, msg_type, data))


@pytest.fixture
def comms() -> Iterator[list[tuple[str, str, Any]]]:
    """Widgets created in the test send through CountingComm (comm's documented hook)."""
    original = comm.create_comm
    CountingComm.sent = []
    comm.create_comm = lambda *args, **kwargs: CountingComm(*args, **kwargs)
    try:
        yield CountingComm.sent
    finally:
        comm.create_comm = original


def updates(sent: list[tuple[str, str, Any]], widget: Any) -> list[dict[str, Any]]:
    """The state updates sent for one widget."""
    return [
        data["state"]
        for comm_id, kind, data in sent
        if comm_id == widget.model_id and kind == "comm_msg" and data.get("method") == "update"
    ]


def wait_until(predicate: Callable[[], bool], what: str) -> None:
    for _ in range(2000):
        if predicate():
            return
        time.sleep(0.005)
    raise AssertionError(f"never happened: {what}")


class Beacon(Skill):
    id = "beacon"
    title = "Beacon"
    description = "a second skill, to see that cards keep to their own operator"

    def snapshot(self) -> dict[str, Any]:
        return {"blinks": 1}


def test_card_after_a_scripted_run() -> None:
    (op,) = lensbook.start(["runtime"], client=finding_script(state="critical"))
    card = OperatorCard(op, feed=True)
    assert card.model.action == "idle" and card.bar.bar_style == ""
    notes = op.run(reason="fds grow")
    wait_until(lambda: card.bar.bar_style == "success", "the card shows the end")
    assert card.bar.bar_style == "success"
    assert (card.bar.value, card.bar.max, card.bar.description) == (25, 25, "5/25")
    assert "critical" in card.header.value and "#dc2626" in card.header.value
    assert "finished (done)" in card.header.value
    assert "client: scripted" in card.header.value
    assert card.feed is not None
    wait_until(lambda: "fd_growth" in card.feed.html(), "the feed shows the finding")
    body = card.feed.html()
    (item,) = card.feed.items.values()  # one expandable entry per notification
    assert "lensbook-notification" in item._dom_classes
    assert item.selected_index == 0  # the newest is expanded
    for part in ("context", "observation", "hypothesis", "evidence", notes[0].snapshot_ids[0]):
        assert part in body
    assert "rss_mb=" in body  # the evidence shows the cited snapshot's data
    assert card.listening  # a dashboard card follows its operator for good
    text = card._repr_mimebundle_()["text/plain"]
    assert text.startswith("Python runtime [runtime] | CRITICAL | idle | iteration 5/25")
    assert "[WARNING] runtime: fd_growth" in text


def test_card_keeps_to_its_operator_and_follows_the_next_run() -> None:
    runtime, beacon = lensbook.start(["runtime", Beacon()], client=finding_script())
    card = OperatorCard(runtime)
    beacon.run(
        client=ScriptedClient([call("set_state", state="critical", reason="r"), call("done")])
    )
    card.throttle.now()
    assert card.model.state == "healthy" and card.model.iteration == 0
    runtime.run()
    wait_until(lambda: card.bar.bar_style == "success", "the card shows the run")
    assert card.model.state == "warning" and "#d97706" in card.header.value
    with pytest.raises(lensbook.LLMError, match="boom"):
        runtime.run(client=ScriptedClient([call("take_snapshot"), lensbook.ProviderError("boom")]))
    wait_until(lambda: card.bar.bar_style == "danger", "the failed run turned the bar red")
    assert "boom" in card.header.value


def test_failed_run_turns_the_bar_to_danger_and_stop_to_warning() -> None:
    model = CardModel("runtime", "Python runtime")
    model.apply(events.Event("run_started", "runtime", "r1", {"max_iterations": 10}))
    assert model.bar_style == "info" and model.running
    model.apply(events.Event("run_completed", "runtime", "r1", {"stop_reason": "error"}))
    assert model.bar_style == "danger"
    model.apply(events.Event("run_started", "runtime", "r2", {"max_iterations": 10}))
    model.apply(events.Event("iteration", "runtime", "r2", {"iteration": 3}))
    assert (model.bar_style, model.bar_value, model.progress_text) == ("info", 3, "3/10")
    model.apply(events.Event("operator_stopped", "runtime"))
    assert (model.bar_style, model.activity) == ("warning", "stopped")


def test_metrics_view_table_and_chart_after_a_run() -> None:
    (op,) = lensbook.start(["runtime"], client=finding_script())
    view = MetricsView("runtime", chart_interval=0.0)
    op.run()
    wait_until(lambda: bool(view.chart.value), "a chart was drawn")
    frame = view.frame()
    assert list(frame.columns) == ["skill", "metric", "value", "change", "points", "updated"]
    assert {"rss_mb", "threads", "open_fds", "gc_collections"} <= set(frame["metric"])
    assert set(frame["skill"]) == {"runtime"}
    assert (frame["points"] >= 2).all()
    assert view.chart.value[:8] == b"\x89PNG\r\n\x1a\n"
    assert "<table" in view.table.value and "rss_mb" in view.table.value
    assert view.model.chart_keys()[0] == ("runtime", "rss_mb")
    assert "rss_mb" in view._repr_mimebundle_()["text/plain"]


def test_dashboard_holds_every_operator(comms: list[Any]) -> None:
    ops = lensbook.start(["runtime", Beacon()], client=finding_script())
    board = Dashboard(ops)
    assert [c.model.operator for c in board.cards] == ["runtime", "beacon"]
    ops[0].run()
    wait_until(lambda: "fd_growth" in board.feed.html(), "the feed saw the finding")
    wait_until(lambda: board.cards[0].bar.bar_style == "success", "the runtime card finished")
    assert board.cards[1].model.stop_reason is None
    text = board._repr_mimebundle_()["text/plain"]
    assert text.splitlines()[1].startswith("Python runtime [runtime] | WARNING")
    assert text.splitlines()[2].startswith("Beacon [beacon] | HEALTHY")
    assert len(live_views()) >= 4
    board.close()
    assert not board.listening


def test_feed_entries_are_bounded_and_newest_first() -> None:
    feed = FeedModel(max_entries=3)
    for i in range(5):
        feed.apply(
            events.Event(
                "notification",
                "runtime",
                data={
                    "notification": {
                        "id": f"n{i}",
                        "operator": "runtime",
                        "severity": "critical" if i == 4 else "info",
                        "anomaly_type": f"anomaly_{i}",
                        "context": "c",
                        "observation": "o",
                        "snapshot_ids": ["s1"],
                        "detected_at": f"2026-01-01T00:00:0{i}+00:00",
                    }
                },
            )
        )
    assert [e["id"] for e in feed.entries] == ["n2", "n3", "n4"]
    text = feed.text().splitlines()
    assert text[0] == "5 notification(s), newest first:"
    assert text[1].startswith("[CRITICAL] runtime: anomaly_4")
    assert text[-1] == "... and 2 older"
    html = feed.html()
    assert html.index("anomaly_4") < html.index("anomaly_3")
    assert "#dc2626" in html and "(not seen by this view)" in html


def test_burst_of_events_is_throttled_and_batched_with_an_exact_end(comms: list[Any]) -> None:
    card = OperatorCard(model=CardModel("burst", "Burst"), feed=True)
    assert card.feed is not None
    started = time.monotonic()
    events.publish("run_started", "burst", "r", max_iterations=10_000, state="healthy")
    for i in range(1, 10_000):
        if i % 2:
            events.publish("iteration", "burst", "r", iteration=i, max_iterations=10_000)
        else:
            events.publish("tool_call", "burst", "r", id=str(i), name=f"probe_{i}", arguments={})
    elapsed = time.monotonic() - started
    bound = 10 * elapsed + 3  # at most ~10 flushes a second, plus the first and a trailing one
    bar_updates, header_updates = updates(comms, card.bar), updates(comms, card.header)
    assert 1 <= len(bar_updates) <= bound, (len(bar_updates), elapsed)
    assert 1 <= len(header_updates) <= bound, (len(header_updates), elapsed)
    # hold_sync: every flush is one message per widget, whatever number of traits changed
    assert len(bar_updates) <= card.throttle.flushes
    # the last change is never lost: a trailing flush brings the exact state
    wait_until(lambda: card.bar.description == "9999/10000", "the trailing flush")
    assert "waiting for the model" in card.header.value  # the action of event 9999
    events.publish(
        "run_completed",
        "burst",
        "r",
        state="warning",
        stop_reason="done",
        iterations=10_000,
        notifications=0,
    )
    assert card.bar.description == "10000/10000" and card.bar.bar_style == "success"
    last_state = updates(comms, card.bar)[-1]
    assert last_state.get("bar_style", card.bar.bar_style) == "success"
    per_widget = Counter(comm_id for comm_id, kind, _ in comms if kind == "comm_msg")
    assert max(per_widget.values()) <= bound + 2
    assert updates(comms, card.feed.body) == []  # no notification: the feed sent nothing


def test_stopped_views_send_nothing(comms: list[Any]) -> None:
    card = OperatorCard(model=CardModel("quiet", "Quiet"))
    card.stop_updates()
    events.publish("run_started", "quiet", "r", max_iterations=5)
    events.publish("iteration", "quiet", "r", iteration=1)
    assert updates(comms, card.bar) == [] and card.model.action == "idle"


def test_updates_from_the_lens_loop_thread(comms: list[Any]) -> None:
    from lensbook import _loop

    card = OperatorCard(model=CardModel("threaded", "Threaded"))
    seen: list[str] = []

    def publish_on_loop() -> None:
        seen.append(threading.current_thread().name)
        events.publish("run_started", "threaded", "r", max_iterations=4)
        events.publish("run_completed", "threaded", "r", stop_reason="done", iterations=2)

    _loop.call_soon(publish_on_loop)
    wait_until(lambda: card.bar.bar_style == "success", "the update from the loop")
    assert seen == ["lensbook-loop"]
    assert updates(comms, card.bar)


def test_throttle_flushes_at_most_once_per_interval_and_never_drops_the_last() -> None:
    latest = {"value": 0, "flushed": -1}

    def flush() -> None:
        latest["flushed"] = latest["value"]

    throttle = Throttle(flush, interval=0.05)
    started = time.monotonic()
    for i in range(1, 5001):
        latest["value"] = i
        throttle.request()
    elapsed = time.monotonic() - started
    assert throttle.flushes >= 1
    wait_until(lambda: latest["flushed"] == 5000, "the trailing flush")
    # flushes are an interval apart at least: one per interval of the burst, the first and the
    # trailing one (the bound follows the burst's own duration, however busy the machine)
    assert throttle.flushes <= elapsed / 0.05 + 3
    assert throttle.flushes < 5000
    throttle.now()
    assert latest["flushed"] == 5000


def test_the_timer_runs_due_calls_in_order_on_its_own_thread_and_ends_when_idle(
    caplog: pytest.LogCaptureFixture,
) -> None:
    ran: list[tuple[str, str]] = []
    done = threading.Event()

    def record(tag: str) -> Callable[[], None]:
        return lambda: ran.append((tag, threading.current_thread().name))

    def explode() -> None:
        raise RuntimeError("a flush that fails")

    # half a second apart at least, so that a busy machine's stall between two calls does not
    # change which is due first
    call_later(1.5, lambda: (record("late")(), done.set()))
    call_later(1.0, explode)
    call_later(0.5, record("middle"))
    call_later(0.0, record("first"))  # due before what the thread sleeps on: it wakes for it
    assert done.wait(30)
    assert [tag for tag, _ in ran] == ["first", "middle", "late"]  # the failure stopped nothing
    assert {name for _, name in ran} == {THREAD_NAME}
    assert "deferred widget update" in caplog.text and "a flush that fails" in caplog.text
    wait_until(
        lambda: THREAD_NAME not in {t.name for t in threading.enumerate()}, "the idle thread's end"
    )
    call_later(0.0, record("again"))  # a call after the thread ended starts a new one
    wait_until(lambda: ran[-1][0] == "again", "the call on a new thread")


@pytest.mark.filterwarnings("ignore::pytest.PytestUnhandledThreadExceptionWarning")
def test_a_call_that_raises_system_exit_does_not_stop_later_calls() -> None:
    ran = threading.Event()

    def leave() -> None:
        raise SystemExit("widget code that exits")

    call_later(0.0, leave)  # ends the timer thread (SystemExit is not an Exception)
    wait_until(
        lambda: THREAD_NAME not in {t.name for t in threading.enumerate()}, "the thread's end"
    )
    call_later(0.0, ran.set)  # a new thread runs it: nothing queues behind the dead one
    assert ran.wait(30)


def test_full_text_is_not_truncated() -> None:
    card = OperatorCard(model=CardModel("long", "A skill with a rather long title " * 4))
    text = card._repr_mimebundle_()["text/plain"]
    assert len(text) > 110 and text == repr(card)
    feed = NotificationFeed()
    assert feed._repr_mimebundle_()["text/plain"] == "No notifications yet."


def _note(i: int, severity: str = "warning") -> dict[str, Any]:
    return {
        "id": f"n{i}",
        "operator": "feedop",
        "severity": severity,
        "anomaly_type": f"anomaly_{i}",
        "context": "c",
        "observation": f"observation {i}",
        "snapshot_ids": [],
        "detected_at": f"2026-01-01T00:00:0{i}+00:00",
    }


def _clicked(item: Any, expanded: bool) -> None:
    """What the browser sends when the reader opens or closes an entry (a comm update)."""
    state = {"selected_index": 0 if expanded else None}
    item._handle_msg({"content": {"data": {"method": "update", "state": state}}, "buffers": []})


def test_an_expanded_notification_stays_expanded_when_the_feed_refreshes() -> None:
    feed = NotificationFeed("feedop")
    expanded = lambda: {nid: item.selected_index == 0 for nid, item in feed.items.items()}  # noqa: E731
    events.publish("notification", "feedop", "r", notification=_note(1))
    wait_until(lambda: "n1" in feed.items, "the first entry")
    assert expanded() == {"n1": True}  # left alone, the newest is open
    _clicked(feed.items["n1"], expanded=False)  # the reader closes it
    events.publish("notification", "feedop", "r", notification=_note(2))
    wait_until(lambda: "n2" in feed.items, "the second entry")
    assert expanded() == {"n1": False, "n2": True}
    assert list(feed.children[1:]) == [feed.items["n2"], feed.items["n1"]]  # newest first
    _clicked(feed.items["n1"], expanded=True)  # the reader opens the older one again
    events.publish("notification", "feedop", "r", notification=_note(3, "critical"))
    wait_until(lambda: "n3" in feed.items, "the third entry")
    # the reader's choice stands; the entry that was only open for being newest closes
    assert expanded() == {"n1": True, "n2": False, "n3": True}
    first = feed.items["n1"]
    events.publish("snapshot", "feedop", "r", id="s9", data={"rss_mb": 1.0})
    feed.throttle.now()
    assert feed.items["n1"] is first and expanded()["n1"]  # the same widget, still open
    assert "3 notification(s), newest first" in feed.body.value
    feed.close()
