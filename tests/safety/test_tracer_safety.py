"""The tracer cannot hurt the process: machinery targets are refused, the recorder never recurses.

Reproduces issue 12: tracing ``builtins.len``/``builtins.max`` deadlocked the main thread, the
lens loop and the probe thread on the tracer's lock; ``time.monotonic`` raised RecursionError
and killed the lens-loop thread; ``threading.current_thread`` raised RecursionError in the
user's calls. Each target is asked for by a scripted model through a real operator while a real
thread keeps calling the function.
"""

from __future__ import annotations

import builtins
import json
import sys
import threading
import time
import types
from collections.abc import Iterator
from typing import Any

import pytest

from lensbook import _loop, events
from lensbook.clients.scripted import ScriptedClient, call
from lensbook.operator.actor import Operator
from lensbook.skills.tracer import TracerSkill

DANGEROUS = (
    "builtins.len",
    "builtins.max",
    "time.monotonic",
    "time.perf_counter",
    "threading.current_thread",
    "threading.Lock",
    "sys._getframe",
    "asyncio.sleep",
    "asyncio.BaseEventLoop.call_soon",
    "functools.wraps",
    "logging.Logger.handle",
    "lensbook.skills.tracer.resolve_target",
    "lensbook.operator.investigation.Investigation.execute",
    "json.dumps",
    "random.Random.randrange",
    "lb_alias_target.monotonic",  # `from time import monotonic` in user code: still time's
    "lb_alias_target.length",  # `length = len`
)


@pytest.fixture
def alias_module() -> Iterator[types.ModuleType]:
    module = types.ModuleType("lb_alias_target")
    exec("from time import monotonic\nlength = len\n", vars(module))
    sys.modules[module.__name__] = module
    yield module
    del sys.modules[module.__name__]


def _tool_results(run: Any) -> list[dict[str, Any]]:
    results: list[dict[str, Any]] = []
    token = events.subscribe(lambda e: results.append(e.data), kinds=["tool_result"])
    try:
        run()
    finally:
        events.unsubscribe(token)
    return results


def test_machinery_targets_are_refused_with_a_clear_tool_error(
    alias_module: types.ModuleType,
) -> None:
    originals = {name: _lookup(name) for name in DANGEROUS}
    stop = threading.Event()
    errors: list[BaseException] = []

    def busy_user_thread() -> None:  # keeps calling the very functions asked for
        try:
            while not stop.is_set():
                len([1, 2]), max(1, 2), time.monotonic(), threading.current_thread()
                json.dumps({"a": 1})
        except BaseException as exc:
            errors.append(exc)

    user = threading.Thread(target=busy_user_thread, name="user-work", daemon=True)
    user.start()
    script = ScriptedClient(
        [[call("tracer_trace", target=name, seconds=1.0) for name in DANGEROUS], call("done")]
    )
    op = Operator.start(TracerSkill(), client=script)
    try:
        results = _tool_results(lambda: op.run())
    finally:
        op.stop()
        stop.set()
        user.join(10)
    traced = [r for r in results if r["name"] == "tracer_trace"]
    assert len(traced) == len(DANGEROUS)
    for name, result in zip(DANGEROUS, traced, strict=True):
        assert result["is_error"], (name, result["content"])
        assert "is refused" in result["content"], (name, result["content"])
    assert {name: _lookup(name) for name in DANGEROUS} == originals
    assert errors == [] and not user.is_alive()
    assert _loop.is_running()  # the lens loop survived every request


def _lookup(name: str) -> Any:
    module, *rest = name.split(".")
    for split in range(len(rest), -1, -1):
        found = sys.modules.get(".".join([module, *rest[:split]]))
        if found is not None:
            obj: Any = found
            for part in rest[split:]:
                obj = vars(obj)[part] if part in vars(obj) else getattr(obj, part)
            return obj
    raise AssertionError(name)


def test_a_function_called_by_the_recorder_itself_passes_through() -> None:
    """User code that the recorder runs (here: a thread's `name` property) re-enters the
    wrapper; the per-thread guard lets that inner call through instead of recursing."""
    module = types.ModuleType("lb_reentry_target")
    exec("def work():\n    return 42\n", vars(module))
    sys.modules[module.__name__] = module

    class NamedByWork(threading.Thread):
        @property  # type: ignore[override]
        def name(self) -> str:
            return f"worker-{module.work()}"  # the traced function, called from the recorder

        @name.setter
        def name(self, value: str) -> None:
            pass

    stop = threading.Event()
    errors: list[BaseException] = []

    def body() -> None:
        try:
            while not stop.is_set():
                module.work()
                time.sleep(0.001)
        except BaseException as exc:
            errors.append(exc)

    worker = NamedByWork(target=body, daemon=True)
    worker.start()
    try:
        out = TracerSkill().trace("lb_reentry_target.work", seconds=0.5)
    finally:
        stop.set()
        worker.join(10)
        del sys.modules[module.__name__]
    assert errors == []
    assert out["calls"] >= 1 and out["restored"] is True
    assert out["threads"] == {"worker-42": out["calls"]}  # inner calls were not recorded
    assert builtins.len is len
