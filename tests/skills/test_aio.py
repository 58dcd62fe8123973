"""The asyncio skill against real loops in real threads: stuck tasks, blocked loops, lag."""

from __future__ import annotations

import asyncio
import concurrent.futures
import gc
import json
import logging
import threading
import time
import weakref
from collections.abc import Callable, Iterator
from typing import Any

import pytest

import lensbook
from lensbook import _loop
from lensbook.scenarios.stuck_task import start_stuck_task
from lensbook.skills.aio import (
    AsyncioSkill,
    LoopLag,
    SlowCallbacks,
    StuckTasks,
    known_loops,
    register_loop,
    unregister_loop,
)
from lensbook.skills.base import render_output
from lensbook.skills.rules import Evidence
from lensbook.skills.untrusted import undelimit
from tests.skills._probes import probe_caller

#: call a probe from another thread, as the operator does
off_main = probe_caller("lensbook-probe")


def evidence(
    snapshots: list[dict[str, Any]], reason: str = "routine check", **results: Any
) -> Evidence:
    ev = Evidence(context={"reason": reason})
    for i, snap in enumerate(snapshots):
        ev.snapshots.append(undelimit(json.loads(render_output(snap))))
        ev.snapshot_ids.append(f"s{i}")
        ev.snapshot_times.append(time.time())
    for name, value in results.items():
        ev.results[name] = [({}, value)]
    return ev


class LoopThread:
    """An event loop running forever in a named thread, stopped and closed on `close()`."""

    def __init__(self, name: str, debug: bool = False) -> None:
        self.loop = asyncio.new_event_loop()
        self.loop.set_debug(debug)
        started = threading.Event()
        self.loop.call_soon(started.set)
        self.thread = threading.Thread(target=self.loop.run_forever, name=name, daemon=True)
        self.thread.start()
        started.wait(5)

    def call(self, fn: Callable[[], Any]) -> Any:
        """Run `fn` on the loop and return its result."""
        future: concurrent.futures.Future[Any] = concurrent.futures.Future()
        self.loop.call_soon_threadsafe(lambda: future.set_result(fn()))
        return future.result(10)

    def close(self) -> None:
        def cancel_and_stop() -> None:
            for task in asyncio.all_tasks(self.loop):
                task.cancel()
            self.loop.call_later(0.05, self.loop.stop)

        self.loop.call_soon_threadsafe(cancel_and_stop)
        self.thread.join(10)
        self.loop.run_until_complete(asyncio.sleep(0))
        self.loop.close()


@pytest.fixture
def skill() -> Iterator[AsyncioSkill]:
    s = AsyncioSkill()
    yield s
    s.close()


@pytest.fixture
def stuck_app() -> Iterator[None]:
    cleanup = start_stuck_task(thread_name="test-app-loop")
    yield
    cleanup()


def test_register_loop_is_weak() -> None:
    loop = asyncio.new_event_loop()
    register_loop(loop)
    assert loop in known_loops()
    unregister_loop(loop)
    assert loop not in known_loops()
    register_loop(loop)
    loop.close()
    assert loop not in known_loops()  # closed loops are left out
    ref = weakref.ref(loop)
    del loop
    gc.collect()
    assert ref() is None  # the registry did not keep it alive
    with pytest.raises(TypeError):
        register_loop("not a loop")  # type: ignore[arg-type]


def test_a_running_loop_is_found_without_registering(skill: AsyncioSkill) -> None:
    app = LoopThread("unregistered-loop")
    try:
        rows = off_main(skill.loops)
    finally:
        app.close()
    (row,) = [r for r in rows if "'unregistered-loop'" in r["loop"]]
    assert row["running"] is True and row["lensbook_own"] is False
    assert row["loop"].startswith("loop in thread")


def test_tasks_show_coroutine_state_and_await(skill: AsyncioSkill, stuck_app: None) -> None:
    out = off_main(skill.tasks)
    by_task = {g["task"]: g for g in out["groups"]}
    waiter = by_task["config-waiter"]
    assert waiter["coroutine"] == "wait_for_signal"
    assert waiter["state"] == "pending"
    assert waiter["kind"] == "event"
    assert waiter["awaiting"] == "asyncio Event.wait()"
    assert waiter["code"] == "await config_loaded.wait()"
    assert "stuck_task.py" in waiter["await_at"] and waiter["user"] is True
    assert "registered loop in thread 'test-app-loop'" in waiter["loop"]
    assert waiter["stack"][-1].endswith("in Event.wait")
    assert by_task["ticker"]["kind"] == "sleep"
    assert out["notes"] == []  # read on the loop itself, which answered


def test_stuck_task_is_found_across_snapshots(skill: AsyncioSkill, stuck_app: None) -> None:
    first = skill.snapshot()
    assert first["user_tasks"] == 2 and first["loops_running"] >= 1
    time.sleep(1.2)
    second = skill.snapshot()
    assert second["oldest_user_task_s"] >= 1.0
    assert second["user_tasks_without_progress_2s"] == 0  # not yet 2 s
    older = off_main(skill.tasks, min_age_s=1.0)
    assert {g["task"] for g in older["groups"]} == {"config-waiter", "ticker"}
    assert off_main(skill.tasks, min_age_s=60.0)["groups"] == []
    out = off_main(skill.stuck, min_age_s=1.0)
    assert [t["task"] for t in out["stuck"]] == ["config-waiter"]
    assert out["stuck"][0]["same_await_s"] >= 1.0
    assert out["other_tasks_by_kind"] == {"sleep": 1}  # the ticker makes progress
    ev = evidence([first, second], stuck=True, asyncio_stuck=out)
    assert [c.name for c in StuckTasks().wants(ev)] == ["asyncio_stuck"]
    (finding,) = StuckTasks().judge(ev)
    assert finding.severity == "warning" and finding.anomaly_type == "stuck_task"
    assert "wait_for_signal" in finding.observation
    assert "config_loaded.wait()" in finding.observation


def test_a_blocked_loop_is_named_with_what_blocks_it(skill: AsyncioSkill) -> None:
    app = LoopThread("blocked-loop")
    register_loop(app.loop)

    def block_the_loop() -> None:
        time.sleep(1.5)

    try:
        app.loop.call_soon_threadsafe(block_the_loop)
        out = off_main(skill.lag, pings=2, timeout_s=0.3)
    finally:
        unregister_loop(app.loop)
        app.close()
    (row,) = [r for r in out["loops"] if "'blocked-loop'" in r["loop"]]
    assert row["unanswered_after_s"] >= 0.3
    assert "block_the_loop" in row["blocked_in"][-1]
    assert "time.sleep(1.5)" in row["blocked_in"][-1]
    (finding,) = LoopLag().judge(evidence([], asyncio_lag=out))
    assert finding.severity == "critical" and "block_the_loop" in finding.observation


def test_lag_of_a_healthy_loop(skill: AsyncioSkill) -> None:
    app = LoopThread("healthy-loop")
    try:
        out = off_main(skill.lag, pings=3)
    finally:
        app.close()
    (row,) = [r for r in out["loops"] if "'healthy-loop'" in r["loop"]]
    assert row["answered"] == 3 and "unanswered_after_s" not in row
    assert row["median_ms"] is not None


def test_slow_callbacks_in_debug_mode(skill: AsyncioSkill) -> None:
    skill.snapshot()  # first use: the handler collects from now on
    app = LoopThread("debug-loop", debug=True)
    app.loop.slow_callback_duration = 0.05
    asyncio_logger = logging.getLogger("asyncio")
    level = asyncio_logger.level
    asyncio_logger.setLevel(logging.WARNING)

    def slow_step() -> None:
        time.sleep(0.12)

    try:
        app.loop.call_soon_threadsafe(slow_step)
        app.call(lambda: None)  # slow_step has run once this has
        out = off_main(skill.slow_callbacks)
        snap = skill.snapshot()
    finally:
        asyncio_logger.setLevel(level)
        app.close()
    assert out["measured"] is True
    assert out["total_seen"] >= 1
    assert any("slow_step" in s["callback"] for s in out["slowest"])
    assert snap["slow_callbacks"] >= 1
    ev = evidence([snap], asyncio_slow_callbacks=out)
    assert [c.name for c in SlowCallbacks().wants(ev)] == ["asyncio_slow_callbacks"]
    (finding,) = SlowCallbacks().judge(ev)
    assert finding.severity == "warning" and "slow_step" in finding.observation


def test_slow_callbacks_says_when_nothing_is_measured(skill: AsyncioSkill) -> None:
    app = LoopThread("plain-loop")
    try:
        out = off_main(skill.slow_callbacks)
    finally:
        app.close()
    assert out["measured"] is False
    assert "debug mode" in out["note"]


def test_slow_callbacks_are_watched_without_a_handler_and_close_stops_it() -> None:
    # a handler on the asyncio logger would stop logging's last resort from printing asyncio's
    # own errors in a process that configured no logging: the skill observes through the tap
    skill = AsyncioSkill()
    before = list(logging.getLogger("asyncio").handlers)
    tap_before = logging.Logger.callHandlers
    skill.snapshot()
    skill.snapshot()  # idempotent
    assert logging.getLogger("asyncio").handlers == before
    slow = skill._slow
    assert slow is not None
    logging.getLogger("asyncio").warning("Executing %s took %.3f seconds", "<Handle cb()>", 0.25)
    assert slow.total == 1 and slow.seen[-1][2:] == ("<Handle cb()>", 0.25)
    skill.close()
    assert logging.getLogger("asyncio").handlers == before
    assert logging.Logger.callHandlers is tap_before


def test_lens_loop_tasks_are_not_blamed(skill: AsyncioSkill) -> None:
    parked = threading.Event()

    async def lensbook_like_service() -> None:
        await asyncio.Event().wait()

    future = _loop.submit(lensbook_like_service())
    _loop.call_soon(parked.set)
    parked.wait(5)
    try:
        first = skill.snapshot()
        time.sleep(0.3)
        second = skill.snapshot()
        out = off_main(skill.stuck, min_age_s=0.1)
        with_lens = off_main(skill.tasks, include_lensbook=True)
    finally:
        future.cancel()
    assert first["tasks"] >= 1 and first["user_tasks"] == 0
    assert out["stuck"] == []
    assert any(g["coroutine"].endswith("lensbook_like_service") for g in with_lens["groups"])
    ev = evidence([first, second], asyncio_stuck=out)
    assert StuckTasks().judge(ev) == []


def test_reading_a_busy_loop_from_another_thread(skill: AsyncioSkill) -> None:
    app = LoopThread("churn-loop")
    register_loop(app.loop)

    async def churn() -> None:
        while True:
            for _ in range(20):
                asyncio.get_running_loop().create_task(asyncio.sleep(0))
            await asyncio.sleep(0)

    app.loop.call_soon_threadsafe(lambda: app.loop.create_task(churn(), name="churn"))
    try:
        for _ in range(10):
            snap = skill.snapshot()
            assert snap["loops"] >= 1
        out = off_main(skill.tasks)
    finally:
        unregister_loop(app.loop)
        app.close()
    assert out["tasks"] >= 1


def test_idle_process_raises_no_alarm(skill: AsyncioSkill) -> None:
    app = LoopThread("idle-loop")
    try:
        first = skill.snapshot()
        second = skill.snapshot()
        ev = evidence([first, second], reason="the service is slow and seems blocked")
        results: dict[str, Any] = {}
        for rule in skill.rules():
            for call in rule.wants(ev):
                fn = getattr(skill, call.name.removeprefix("asyncio_"))
                results[call.name] = off_main(fn, **call.arguments)
    finally:
        app.close()
    assert "asyncio_lag" in results  # the reason asks about blocking
    for name, value in results.items():
        ev.results[name] = [({}, value)]
    assert [f for rule in skill.rules() for f in rule.judge(ev)] == []


@pytest.mark.slow
def test_the_loop_of_an_async_api_caller_is_investigated() -> None:
    from lensbook import recorder
    from lensbook.clients.offline import OfflineInvestigator
    from lensbook.scenarios.stuck_task import wait_for_signal

    recorder.clear()  # the stalls earlier tests made are in the history: this run is about now
    lensbook.start(["asyncio"], client=OfflineInvestigator())

    async def main() -> lensbook.NotificationList:
        never = asyncio.Event()
        task = asyncio.create_task(wait_for_signal(never), name="caller-waiter")
        await asyncio.sleep(0)
        try:
            return await lensbook.arun("asyncio", {"reason": "startup never completes"})
        finally:
            task.cancel()

    notes = asyncio.run(main())
    result = notes.result
    assert result.state == "warning"
    (note,) = result.notifications
    assert note.anomaly_type == "stuck_task"
    assert "'caller-waiter'" in note.observation and "wait_for_signal" in note.observation
    assert "thread 'MainThread'" in note.context


def test_a_service_waiting_for_its_shutdown_is_not_stuck(skill: AsyncioSkill) -> None:
    app = LoopThread("service-loop")
    register_loop(app.loop)

    async def serve_forever(shutdown_requested: asyncio.Event) -> None:
        await shutdown_requested.wait()

    # held: a loop keeps only weak references to its tasks, and a task waiting on an Event
    # nobody else holds is a cycle the collector may free mid-test ("Task was destroyed")
    held = app.call(
        lambda: app.loop.create_task(serve_forever(asyncio.Event()), name="service-main")
    )
    try:
        skill.snapshot()
        time.sleep(0.3)
        out = off_main(skill.stuck, min_age_s=0.1)
        assert not held.done()  # still serving
    finally:
        unregister_loop(app.loop)
        app.close()
    assert out["stuck"] == []
    assert out["other_tasks_by_kind"] == {"lifecycle": 1}
