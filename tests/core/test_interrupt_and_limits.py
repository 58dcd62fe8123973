"""Ctrl-C cancels the run it interrupted, in a real IPython shell, and the default time limits
(per model call, per run) are in force and settable. Models are the local Messages API server:
one that never answers, and a slow one that does."""

from __future__ import annotations

import signal
import threading
import time
from collections.abc import Callable, Iterator
from typing import Any

import pytest
from IPython.core.interactiveshell import InteractiveShell

import lensbook
from lensbook import limits
from lensbook.clients import ScriptedClient, call
from lensbook.records import load_run, writer
from tests.fakes.messages_server import Delay, MessagesServer, server_pool, tool_use, tool_uses

Servers = Callable[..., MessagesServer]


@pytest.fixture
def servers() -> Iterator[Servers]:
    with server_pool() as start:
        yield start


@pytest.fixture
def shell() -> Iterator[InteractiveShell]:
    ip = InteractiveShell.instance()
    ip.user_ns["lensbook"] = lensbook
    yield ip
    InteractiveShell.clear_instance()


def _registry(server: MessagesServer, **options: Any) -> dict[str, Any]:
    return {
        "clients": [
            {
                "name": "fake",
                "provider": "anthropic",
                "options": {"base_url": server.url, "api_key": "k", **options},
            }
        ],
        "retry": {"attempts": 3, "backoff": 0.01},
    }


def _ctrl_c_when(ready: Callable[[], bool], within: float = 60.0) -> threading.Thread:
    """Send SIGINT to the main thread (as Ctrl-C does) once `ready()` is true."""
    main = threading.main_thread().ident
    assert main is not None

    def watch() -> None:
        deadline = time.monotonic() + within
        while time.monotonic() < deadline:
            if ready():
                signal.pthread_kill(main, signal.SIGINT)
                return
            time.sleep(0.02)

    thread = threading.Thread(target=watch, name="ctrl-c", daemon=True)
    thread.start()
    return thread


def _ends_interrupted(result: lensbook.CompletionResult) -> list[str]:
    """The kinds of the interrupted run's recorded events (it must end with the completion)."""
    path = writer.path_of(result.run_id)
    assert path is not None
    kinds = [e["kind"] for e in load_run(path).events]
    assert kinds[-1] == "run_completed"
    assert load_run(path).result.stop_reason == "interrupted"
    return kinds


def test_ctrl_c_cancels_a_run_waiting_on_a_model_that_never_answers(
    shell: InteractiveShell, servers: Servers
) -> None:
    hang = servers(then=Delay(90.0))
    lensbook.start(["runtime"], client_registry=_registry(hang), sample_interval=None)
    op = lensbook.get_operator("runtime")
    _ctrl_c_when(lambda: len(hang.requests) >= 1)

    outcome = shell.run_cell("lensbook.run('runtime', reason='is it stuck?')")

    assert isinstance(outcome.error_in_exec, KeyboardInterrupt)
    interrupted = op.wait(timeout=30)
    assert interrupted.stop_reason == "interrupted"
    assert interrupted.snapshots == ()  # it was still waiting for its first answer
    last = lensbook.last("runtime")
    assert last is not None and last.result.run_id == interrupted.run_id
    assert op.status().running is False
    # the next run starts at once: it does not wait behind the hanging call (90 s)
    began = time.monotonic()
    again = lensbook.run("runtime", reason="next", client=ScriptedClient([call("done")]))
    assert again.result.stop_reason == "done"
    assert time.monotonic() - began < 30
    assert len(hang.requests) == 1  # the interrupted run asked nothing more
    _ends_interrupted(interrupted)


def test_ctrl_c_keeps_what_a_slow_model_found(shell: InteractiveShell, servers: Servers) -> None:
    slow = servers(
        [
            Delay(0.2, tool_uses(tool_use("take_snapshot"))),
            Delay(0.2, tool_uses(tool_use("runtime_threads"))),
        ],
        then=Delay(0.5, tool_uses(tool_use("think", thought="still thinking"))),
    )
    lensbook.start(["runtime"], client_registry=_registry(slow), sample_interval=None)
    op = lensbook.get_operator("runtime")
    _ctrl_c_when(lambda: len(slow.requests) >= 4)

    outcome = shell.run_cell("lensbook.run('runtime', reason='slow model')")

    assert isinstance(outcome.error_in_exec, KeyboardInterrupt)
    interrupted = op.wait(timeout=30)
    assert interrupted.stop_reason == "interrupted"
    assert len(interrupted.snapshots) == 1 and interrupted.iterations >= 3
    kinds = _ends_interrupted(interrupted)
    assert "model_request" not in kinds[kinds.index("run_completed") :]
    again = op.run(reason="next", client=ScriptedClient([call("done")]))
    assert again.result.stop_reason == "done"


def test_a_cancelled_arun_interrupts_its_run(servers: Servers) -> None:
    import asyncio

    hang = servers(then=Delay(90.0))
    op = lensbook.Operator.start(skill="runtime", client_registry=_registry(hang))

    async def impatient() -> None:
        task = asyncio.ensure_future(op.arun(reason="hang"))
        while not hang.requests:
            await asyncio.sleep(0.02)
        task.cancel()
        with pytest.raises(asyncio.CancelledError):
            await task

    asyncio.run(impatient())
    assert op.wait(timeout=30).stop_reason == "interrupted"
    assert op.run(reason="next", client=ScriptedClient([call("done")])).result.stop_reason == "done"


def test_default_limits_are_named_once_and_settable(servers: Servers) -> None:
    assert limits.MODEL_CALL_TIMEOUT <= 60 and limits.RUN_TIMEOUT <= 300
    op = lensbook.Operator.start(skill="runtime", client=ScriptedClient([call("done")] * 3))
    assert op.timeout == limits.RUN_TIMEOUT
    assert op.defaults["model_timeout"] == limits.MODEL_CALL_TIMEOUT
    for bad in ({"timeout": -1}, {"timeout": "10"}, {"model_timeout": 0}, {"model_timeout": None}):
        with pytest.raises(ValueError, match="must be a positive number of seconds"):
            op.run(reason="bad limit", **bad)
    with pytest.raises(ValueError, match="timeout must be"):
        lensbook.Operator(skill="runtime", timeout=0)
    hang = servers(then=Delay(90.0))
    slow = servers(then=Delay(1.0, tool_uses(tool_use("think", thought="hm"))))

    # per operator: each call gives up after model_timeout, is retried once (a provider that
    # did not answer twice is not answering, whatever attempts are left), then the run fails
    quick = lensbook.Operator.start(
        skill="runtime", client_registry=_registry(hang), model_timeout=0.3
    )
    began = time.monotonic()
    with pytest.raises(lensbook.LLMError, match=r"no answer within 0\.3 s"):
        quick.run(reason="hang")
    assert len(hang.requests) == limits.TIMED_OUT_ATTEMPTS == 2
    assert time.monotonic() - began < 30
    path = writer.path_of(quick.last_result.run_id)  # type: ignore[union-attr]
    assert path is not None and load_run(path).header["model_timeout"] == 0.3

    # per call: the run's own limit stops a model that answers, slowly, forever
    result = quick.run(reason="slow", client_registry=_registry(slow), model_timeout=5, timeout=2)
    assert result.result.stop_reason == "timeout"
    assert result.result.iterations >= 1
