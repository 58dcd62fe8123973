"""SystemExit and KeyboardInterrupt from code lensbook calls on its loop (a probe, a client, a
callback, an event subscriber) end that call, never the lens loop and the runs on it."""

from __future__ import annotations

import argparse
import asyncio
import sys
import threading
from collections.abc import Iterator
from typing import Any

import pytest

import lensbook
from lensbook import Skill, _loop, events, probe
from lensbook._errors import contain_call, contained
from lensbook.clients import ModelRequest, ModelTurn, ScriptedClient, call


class Exits(Skill):
    id = "exits"
    title = "Exits"
    description = "Probes that end as code under investigation may"
    system_prompt = "You read the program's configuration."

    def snapshot(self) -> dict[str, Any]:
        return {"n": 1}

    @probe
    async def parse(self, argv: str = "--bad") -> dict[str, Any]:
        """Parse a command line the way the program does (argparse exits on a bad one).

        Cost: nothing.
        """
        parser = argparse.ArgumentParser(prog="app", add_help=False)
        parser.add_argument("--n", type=int)
        return vars(parser.parse_args(argv.split()))

    @probe
    def interrupt(self) -> None:
        """Raise KeyboardInterrupt in a probe thread. Cost: nothing."""
        raise KeyboardInterrupt


@pytest.fixture
def bystander() -> Iterator[lensbook.Operator]:
    """Another operator's run, waiting on the same lens loop the whole time."""
    op = lensbook.Operator.start(
        "runtime", name="bystander", client=ScriptedClient([call("wait", seconds=2), call("done")])
    )
    op.run_in_background({"reason": "unrelated"})
    yield op
    assert op.wait(30).stop_reason == "done"  # untouched by whatever ended the other run
    assert _loop.is_running()
    op.stop()


def test_a_probe_that_exits_is_a_tool_error(
    bystander: lensbook.Operator, capsys: pytest.CaptureFixture[str]
) -> None:
    results: list[events.Event] = []
    token = events.subscribe(results.append, kinds=["tool_result"])
    op = lensbook.Operator.start(
        Exits, client=ScriptedClient([[call("exits_parse"), call("exits_interrupt")], call("done")])
    )
    try:
        result = op.run(timeout=10).result
    finally:
        events.unsubscribe(token)
        op.stop()
    assert result.stop_reason == "done"
    errors = {e.data["name"]: e.data["content"] for e in results if e.data["is_error"]}
    assert "SystemExit" in errors["exits_parse"]
    assert "KeyboardInterrupt" in errors["exits_interrupt"]
    capsys.readouterr()  # argparse's usage line


def test_callbacks_and_subscribers_that_exit_are_logged(bystander: lensbook.Operator) -> None:
    def subscriber(event: events.Event) -> None:
        if threading.current_thread() is not threading.main_thread():
            sys.exit(1)

    async def later(_: Any) -> None:
        raise SystemExit(4)

    token = events.subscribe(subscriber, kinds=["tool_result"])
    client = ScriptedClient([call("think", thought="x"), call("done")] * 3)
    op = lensbook.Operator.start("runtime", client=client)
    try:
        done = threading.Event()
        op.run_in_background({}, on_complete=lambda _: sys.exit(0))
        op.wait(10)
        op.run_in_background({}, on_complete=later)
        op.wait(10)
        op.run_in_background({}, on_complete=lambda _: done.set())
        assert done.wait(10)
    finally:
        events.unsubscribe(token)
        op.stop()


class _Exiting:
    provider = "in-process"
    name = "exiting"
    in_process = True

    def __init__(self, error: BaseException) -> None:
        self.error = error

    async def complete(self, request: ModelRequest) -> ModelTurn:
        raise self.error


@pytest.mark.parametrize("error", [SystemExit(3), KeyboardInterrupt()])
def test_a_client_that_exits_crashes_its_run_and_the_operator_serves_the_next(
    bystander: lensbook.Operator, error: BaseException
) -> None:
    op = lensbook.Operator.start("runtime", client=_Exiting(error))
    try:
        for _ in range(2):
            with pytest.raises(lensbook.OperatorCrashed, match=type(error).__name__):
                op.run(timeout=10)
    finally:
        op.stop()


def test_only_the_main_thread_lets_an_interrupt_through() -> None:
    assert not contained(KeyboardInterrupt()) and not contained(SystemExit())
    assert contained(ValueError())
    seen: list[bool] = []
    worker = threading.Thread(target=lambda: seen.append(contained(KeyboardInterrupt())))
    worker.start()
    worker.join()
    assert seen == [True]


def test_a_sync_probe_that_exits_on_a_loop_in_the_main_thread_is_contained() -> None:
    # a dask nanny runs its worker's loop in the main thread: containment happens in the
    # probe's own thread, where `contained` holds, before the exit reaches that loop
    def probe() -> None:
        raise SystemExit(2)

    async def main() -> str:
        try:
            await asyncio.wait_for(asyncio.to_thread(contain_call, probe), 5)
        except RuntimeError as exc:
            return str(exc)
        return "not raised"

    assert asyncio.run(main()) == "SystemExit raised: 2"
