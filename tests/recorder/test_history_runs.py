"""Runs read the flight recorder's history: what happened before a run was asked for is reported,
cited by history id, kept in the run's record and replayed to the same notifications."""

from __future__ import annotations

import logging
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from typing import Any

import pytest

import lensbook
from lensbook import recorder
from lensbook.clients.offline import OfflineInvestigator
from lensbook.notebook._models import FeedModel
from lensbook.records import writer
from lensbook.records.replay import replay
from lensbook.skills import resolve_skill
from lensbook.skills.untrusted import CLOSE, OPEN
from tests._storms import log_exceptions


@pytest.fixture
def quiet_threadhook() -> Any:
    original = threading.excepthook
    threading.excepthook = lambda args: None
    yield
    threading.excepthook = original


def _start(*skills: str) -> None:
    recorder.clear()
    lensbook.start(list(skills), client=OfflineInvestigator(), sample_interval=None)


def test_a_thread_that_died_before_the_run_is_reported_cited_recorded_and_replayed(
    quiet_threadhook: None,
) -> None:
    resolve_skill("exceptions").close()  # no run of the skill before: only the recorder saw it
    _start("exceptions")

    def consume_orders() -> None:
        raise ConnectionResetError("broker went away")

    worker = threading.Thread(target=consume_orders, name="order-consumer")
    worker.start()
    worker.join(10)
    died = recorder.history_events(kinds=["exception"])[-1]

    notes = lensbook.run("exceptions", {"reason": "why did the order work stop?"})
    found = [n for n in notes if n.anomaly_type == "thread_died"]
    assert found, [n.anomaly_type for n in notes]
    note = found[0]
    assert "ConnectionResetError('broker went away')" in note.observation
    assert "'order-consumer'" in note.observation and "consume_orders" in note.observation
    assert "test_history_runs.py:" in note.observation
    assert died.id in note.snapshot_ids  # cites the history entry like a snapshot
    assert any(not s.startswith("h-") for s in note.snapshot_ids)  # and the run's snapshots

    feed = FeedModel(None)  # the notebook feed shows the cited history entry, not an unknown id
    feed.seed([notes.result])
    assert "thread_died: ConnectionResetError" in feed.html()

    path = writer.path_of(notes.result.run_id)
    assert path is not None
    run = lensbook.load_run(path)
    assert died.id in {e["id"] for e in run.history_events}  # the history the run used
    shown = next(e for e in run.of_kind("tool_result") if e["data"]["name"] == "get_history")
    # the model saw the process's text delimited as data; the record's reader undelimits it
    assert f"{OPEN}broker went away{CLOSE}" in shown["data"]["content"]
    assert "broker went away" in {e["detail"].get("message") for e in run.history_events}
    assert "thread_died" in {e["kind"] for e in run.history}  # what a postmortem shows
    assert "history it cites:" in run.evidence(note).text()
    recorder.clear()  # today's history differs: the replay must answer from the record
    for mode in ("rerun", "record"):
        again = replay(run, tools=mode)  # type: ignore[arg-type]
        assert again.same_notifications, again


def test_an_error_burst_that_stopped_is_reported_with_its_rate_and_time() -> None:
    resolve_skill("exceptions").close()  # as if the skill had never been used before the burst
    _start("exceptions")
    log = logging.getLogger("shop.payments")
    log.disabled, was = False, log.disabled
    handler = logging.NullHandler()
    log.addHandler(handler)
    log.propagate, propagated = True, log.propagate
    try:
        log_exceptions(log, 200, TimeoutError, "gateway timeout #{i}", "charge failed")
    finally:
        log.removeHandler(handler)
        log.propagate, log.disabled = propagated, was
    notes = lensbook.run("exceptions", {"reason": "were there errors earlier?"})
    burst = [n for n in notes if n.anomaly_type == "exception_burst"]
    assert burst, [n.anomaly_type for n in notes]
    assert "burst of 200 TimeoutError" in burst[0].observation
    assert "/s, from " in burst[0].observation and " UTC (ended " in burst[0].observation
    assert any(s.startswith("h-") for s in burst[0].snapshot_ids)


def test_thread_growth_by_kind_names_the_starting_function() -> None:
    _start("threads")
    pools: list[ThreadPoolExecutor] = []

    def handle_request() -> None:
        pool = ThreadPoolExecutor(max_workers=1)  # one per request, never shut down
        pool.submit(time.sleep, 0)
        pools.append(pool)

    try:
        for _ in range(6):
            handle_request()
        notes = lensbook.run("threads", {"reason": "thread count keeps growing"})
    finally:
        for pool in pools:
            pool.shutdown()
    growth = [n for n in notes if n.anomaly_type == "thread_growth"]
    assert growth, [n.anomaly_type for n in notes]
    text = growth[0].observation
    assert "6 thread(s) of kind 'ThreadPoolExecutor-N_N' alive" in text
    assert "concurrent.futures.thread._worker" in text and "handle_request" in text
    assert growth[0].hypothesis and "never shut down" in growth[0].hypothesis


def _rate_event(i: int, first: float, last: float, count: int) -> dict[str, Any]:
    detail = {
        "type": "TimeoutError",
        "where": "shop/payments.py:88",
        "function": "charge",
        "uncaught": False,
        "routes": {"logged": count},
        "count": count,
        "total": count,
        "rate_per_s": round(count / max(last - first, 1.0), 3),
        "window_s": 10.0,
        "first": first,
        "last": last,
    }
    return {"id": f"h-{i:012x}", "time": last, "kind": "exception_rate", "detail": detail}


def test_a_burst_that_ended_a_minute_ago_is_one_burst_with_its_rate_and_time() -> None:
    """The rule alone, on history as a run receives it: two flush windows of one storm that
    ended 70 s before the run's snapshot, and a live window that no longer sees it."""
    from lensbook.skills.history_rules import PastExceptionBursts
    from lensbook.skills.rules import Evidence

    now = time.time()
    ev = Evidence(context={}, snapshots=[{}], snapshot_ids=["s1"], snapshot_times=[now])
    ev.history = [
        _rate_event(1, now - 95, now - 85, 400),
        _rate_event(2, now - 85, now - 70, 350),
    ]
    ev.results["exceptions_summary"] = [({}, {"last_10s": {"count": 0, "per_s": 0.0}})]
    (finding,) = PastExceptionBursts().judge(ev)
    assert "burst of 750 TimeoutError (handled or logged) raised at shop/payments.py:88" in (
        finding.observation
    )
    assert "30.0/s" in finding.observation and "(ended 70 s ago)" in finding.observation
    assert finding.history_ids == ("h-000000000001", "h-000000000002")
    # while the storm is still on and the skill's own window sees it, the live rule reports it
    ev.history = [_rate_event(3, now - 5, now - 1, 300)]
    ev.results["exceptions_summary"] = [({}, {"last_10s": {"count": 300, "per_s": 30.0}})]
    assert PastExceptionBursts().judge(ev) == []
