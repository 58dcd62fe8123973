"""The scenarios' harness, in this process with real threads: named daemon workers, a cleanup
that stops, unblocks, joins and undoes in that order, the paced service loop, the app loop with
named tasks, the cleanup steps, and the registry's names."""

from __future__ import annotations

import asyncio
import threading
import time
from collections.abc import Callable
from pathlib import Path

import pytest

from lensbook.scenarios import Scenario, get_scenario, scenario, scenario_names
from lensbook.scenarios._app_loop import start_app_loop
from lensbook.scenarios._harness import Workers, each, scratch_dir, start_paced
from lensbook.scenarios.deadlock import start_deadlock


def _wait_until(condition: Callable[[], bool], seconds: float = 10.0) -> bool:
    deadline = time.monotonic() + seconds
    while not condition():
        if time.monotonic() > deadline:
            return False
        time.sleep(0.01)
    return True


def test_cleanup_stops_unblocks_joins_then_undoes_in_order() -> None:
    workers = Workers()
    held = threading.Lock()
    held.acquire()  # one worker blocks outside the stop event, as a deadlocked thread does
    steps: list[str] = []

    def loop() -> None:
        while not workers.stop.wait(0.01):
            pass

    def blocked() -> None:
        with held:
            steps.append("blocked worker ran on")

    workers.start("harness-loop", loop)
    workers.start("harness-blocked", blocked)
    assert [t.name for t in workers.threads] == ["harness-loop", "harness-blocked"]
    assert all(t.daemon for t in workers.threads)

    def unblock() -> None:
        steps.append(f"unblock, stop set: {workers.stop.is_set()}")
        held.release()

    def then() -> None:
        steps.append(f"then, alive: {workers.alive()}")

    cleanup = workers.cleanup(then, unblock=unblock)
    assert workers.alive()
    cleanup()
    assert steps == ["unblock, stop set: True", "blocked worker ran on", "then, alive: False"]


def test_a_worker_that_never_stops_is_left_behind_not_waited_for() -> None:
    never = threading.Event()
    workers = Workers(join_timeout=0.1)
    workers.start("harness-stuck", never.wait)
    cleanup_done = threading.Event()
    threading.Thread(target=lambda: (workers.cleanup()(), cleanup_done.set()), daemon=True).start()
    try:
        assert cleanup_done.wait(30), "the cleanup hung on a stuck daemon worker"
        assert workers.alive()
    finally:
        never.set()
    assert _wait_until(lambda: not workers.alive())


def test_a_paced_service_serves_ever_new_requests_until_stopped() -> None:
    served: list[int] = []
    workers = start_paced("harness-paced", served.append, per_second=400)
    assert [t.name for t in workers.threads] == ["harness-paced"]
    assert _wait_until(lambda: len(served) >= 40)  # 20 a batch: two batches at least
    workers.cleanup()()
    assert not workers.alive()
    count = len(served)
    assert served == list(range(count))
    assert count % 20 == 0  # whole batches only: the stop is seen between batches


def test_the_app_loop_runs_named_tasks_on_its_thread_and_closes() -> None:
    started = threading.Event()
    seen: dict[str, str] = {}

    async def waiter() -> None:
        task = asyncio.current_task()
        assert task is not None
        seen[task.get_name()] = threading.current_thread().name
        started.set()
        await asyncio.Event().wait()

    async def ticker() -> None:
        while True:
            await asyncio.sleep(0.01)

    cleanup = start_app_loop("harness-app-loop", {"waiter": waiter, "ticker": ticker})
    assert started.wait(10)
    assert seen == {"waiter": "harness-app-loop"}
    assert any(t.name == "harness-app-loop" for t in threading.enumerate())
    cleanup()
    assert not any(t.name == "harness-app-loop" for t in threading.enumerate())


def test_every_registered_scenario_is_named_after_its_module() -> None:
    for name in scenario_names():
        scenario = get_scenario(name)
        assert scenario.name == name
        assert scenario.induce.__module__ == f"lensbook.scenarios.{name}"


def test_a_declaration_says_each_thing_once() -> None:
    deadlock = get_scenario("deadlock")
    # the title is the module docstring's first paragraph; the fault is the decorated function
    assert deadlock.title == "Two threads deadlocked on two locks taken in opposite orders"
    assert deadlock.induce is start_deadlock
    assert deadlock.settle == 0.5 and get_scenario("fd_leak").settle == 1.0  # the default
    # the coordinator's scenarios load by name without being in the suite
    assert "leak_and_errors" not in scenario_names()
    assert get_scenario("leak_and_errors").skill == "memory"
    for name in ("runner", "_harness", "nope", "../x"):
        with pytest.raises(KeyError, match="no scenario"):
            get_scenario(name)
    with pytest.raises(TypeError, match="sttle"):
        scenario(skill="threads", reason="why", sttle=1.0)(start_deadlock)
    quiet = Scenario(title="by hand", skill="logs", reason="r", induce=start_deadlock)
    assert (quiet.name, quiet.title) == ("deadlock", "by hand")


def test_each_reads_the_list_when_the_step_runs_and_scratch_dir_removes_its_files() -> None:
    kept: list[list[str]] = []
    close_all = each(kept, lambda item: item.append("closed"))
    kept.extend([[], []])  # the fault fills its list after the cleanup was built
    close_all()
    assert kept == [["closed"], ["closed"]]
    directory, remove = scratch_dir()
    (Path(directory) / "leak-0.log").write_text("x")
    remove()
    assert not Path(directory).exists()
    remove()  # twice is harmless: a cleanup may run after a partial one
