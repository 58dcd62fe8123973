"""Every intrusive probe, through every way a run can end: nothing it switched on is left.

The list of intrusive probes is read from the built-in skills (`ProbeTool.intrusive`), so a new
one fails `test_every_intrusive_probe_has_arguments_here` until it is walked through the paths
too. The process's state (tracemalloc, gc debug flags, settrace/setprofile, the traced function,
hooks and handlers) is compared before and after, with real operators, threads and loops.
"""

from __future__ import annotations

import signal
import sys
import threading
import time
import tracemalloc
import types
from collections.abc import Callable, Iterator
from typing import Any

import pytest

import lensbook
from lensbook._errors import LLMError, RunFailed
from lensbook.clients.scripted import ScriptedClient, call
from lensbook.operator.actor import Operator
from lensbook.skills import _heap, builtin_ids, intrusion, resolve_skill
from tests._fork import in_forked_child

from ._state import process_state, run_scoped

TARGET = "lb_safety_target"


def _window_args(seconds: float) -> dict[str, dict[str, Any]]:
    """Arguments that keep each intrusive probe's change on for about `seconds`."""
    return {
        "tracer_trace": {"target": f"{TARGET}.work", "seconds": seconds},
        "memory_trace_start": {"frames": 3, "max_seconds": 60},
        "gc_cycle_types": {"seconds": seconds},
        "process_created": {"kind": "socket", "seconds": seconds},
        "logs_handler_origins": {"seconds": seconds},
        # its burst lasts until the root gains two members: the target's registry never
        # grows, so it lasts its whole cap (1.5 s), long enough to be seen on and ended
        "memory_retained_sites": {},
    }


#: calls a probe needs before it in the same turn: the retention burst watches the root that
#: memory_referrers found for the target's registry
_PRELUDE = {"memory_retained_sites": [call("memory_referrers", type_name=f"{TARGET}.Item")]}

#: the target module: a function the tracer wraps, and a registry of items (a root)
_TARGET_SOURCE = """
class Item:
    def __init__(self):
        self.payload = bytearray(256)

REGISTRY = {i: Item() for i in range(200)}

def work(n):
    return sum(range(n))
"""


def intrusive_probes() -> list[tuple[str, str]]:
    """(skill id, tool name) of every probe a built-in skill declares intrusive."""
    return [
        (sid, tool.name)
        for sid in builtin_ids()
        for tool in resolve_skill(sid).probes()
        if tool.intrusive
    ]


@pytest.fixture
def target() -> Iterator[types.ModuleType]:
    """A real module whose function the tracer wraps, called by a real thread, and whose
    module-global registry is a root for the retention burst to watch."""
    module = types.ModuleType(TARGET)
    exec(compile(_TARGET_SOURCE, f"<{TARGET}>", "exec"), vars(module))
    sys.modules[TARGET] = module
    stop = threading.Event()

    def caller() -> None:
        while not stop.wait(0.005):
            module.work(100)

    thread = threading.Thread(target=caller, name="safety-caller", daemon=True)
    thread.start()
    yield module
    stop.set()
    thread.join(10)
    del sys.modules[TARGET]
    # its items go with it: the module may outlive the test (a kept traceback's frames hold
    # it), and the next test's referrers walk, which samples the oldest items of the type's
    # name, would follow one of these to whatever holds the old module, not to its registry
    vars(module)["REGISTRY"].clear()


def _wait_until(predicate: Callable[[], bool], timeout: float = 30.0, what: str = "") -> None:
    deadline = time.monotonic() + timeout
    while not predicate():
        assert time.monotonic() < deadline, f"condition not reached in time: {what}"
        time.sleep(0.01)


def _switched_on(tool: str) -> bool:
    name = {"tracer_trace": "tracer", "memory_trace_start": "tracemalloc"}.get(tool)
    return any(c.owner is not None and (name is None or c.name == name) for c in intrusion.active())


def _end_run(
    path: str, tool: str, args: dict[str, Any], skill_id: str, before: dict[str, Any]
) -> None:
    """Start a run whose model calls `tool`, and end it by `path` (`before`: the process's
    state before it, which a child forked meanwhile must find as it was).

    Each run gets a skill instance of its own, as a fresh process has: the shared one keeps
    state between runs on purpose (a retention burst's rest, for one, during which the next
    burst answers "retry after" instead of switching tracing on)."""
    skill: Any = type(resolve_skill(skill_id))()
    probe_turn = [*_PRELUDE.get(tool, []), call(tool, **args)]
    if path == "done":
        op = Operator.start(skill, client=ScriptedClient([probe_turn, call("done")]))
        op.run()
    elif path == "max_iterations":
        script = ScriptedClient([probe_turn, "summary: the limit was reached"])
        op = Operator.start(skill, client=script)
        assert op.run(max_iterations=1).result.stop_reason == "max_iterations"
    elif path == "crash":
        script = ScriptedClient([probe_turn, RuntimeError("the model adapter crashed")])
        op = Operator.start(skill, client=script)
        with pytest.raises(RunFailed):
            op.run()
    elif path == "llm_error":  # the script runs out: a provider error, the chain gives up
        op = Operator.start(skill, client=ScriptedClient([probe_turn]))
        with pytest.raises(LLMError):
            op.run()
    elif path == "timeout":
        op = Operator.start(skill, client=ScriptedClient([probe_turn, call("wait", seconds=30)]))
        assert op.run(timeout=1.0).result.stop_reason == "timeout"
    elif path == "fork":  # a child forked mid-window: nothing of the parent's window in it
        op = Operator.start(skill, client=ScriptedClient([probe_turn, call("wait", seconds=30)]))
        op.run_in_background()
        _wait_until(lambda: _switched_on(tool), what=f"{tool} switched on ({op.current_action})")
        assert in_forked_child(lambda: run_scoped(process_state(sys.modules[TARGET])) == before), (
            tool
        )
    elif path in ("stop", "cancel", "lensbook_stop"):
        script = ScriptedClient([probe_turn, call("wait", seconds=30)])
        if path == "lensbook_stop":
            op = lensbook.start([skill], client=script, sample_interval=None)[0]
        else:
            op = Operator.start(skill, client=script)
        op.run_in_background()
        _wait_until(lambda: _switched_on(tool), what=f"{tool} switched on ({op.current_action})")
        if path == "stop":
            op.stop()
        elif path == "cancel":
            op.cancel_run()
            assert op.wait(30).stop_reason == "stopped"
        else:
            lensbook.stop()
    elif path == "interrupt":  # Ctrl-C in the thread blocked in run()
        op = Operator.start(skill, client=ScriptedClient([probe_turn, call("wait", seconds=30)]))

        main = threading.main_thread().ident
        assert main is not None

        def interrupt_when_on() -> None:
            _wait_until(lambda: _switched_on(tool))
            signal.pthread_kill(main, signal.SIGINT)  # a real signal wakes the blocked wait

        threading.Thread(target=interrupt_when_on, daemon=True).start()
        with pytest.raises(KeyboardInterrupt):
            op.run()
        assert op.wait(30).stop_reason == "interrupted"
    else:
        raise AssertionError(path)
    if path != "lensbook_stop":
        op.stop()


PATHS = (
    "done",
    "max_iterations",
    "crash",
    "llm_error",
    "timeout",
    "stop",
    "cancel",
    "lensbook_stop",
    "interrupt",
    "fork",
)
#: paths that end the run from outside while the probe's window is still open
_EXTERNAL = {"timeout", "stop", "cancel", "lensbook_stop", "interrupt", "fork"}


def test_every_intrusive_probe_has_arguments_here() -> None:
    found = {name for _sid, name in intrusive_probes()}
    assert found, "the built-in skills declare no intrusive probe"
    assert found <= set(_window_args(1.0)), (
        f"walk the new intrusive probe(s) {found - set(_window_args(1.0))} through every end "
        "path: add their window arguments to _window_args"
    )


@pytest.mark.parametrize("path", PATHS)
def test_nothing_intrusive_is_left_whatever_ends_the_run(
    path: str, target: types.ModuleType
) -> None:
    before = process_state(target)
    for skill_id, tool in intrusive_probes():
        # blocking windows outlast the run only when something ends it from outside
        args = _window_args(10.0 if path in _EXTERNAL else 0.3)[tool]
        started = time.monotonic()
        _end_run(path, tool, args, skill_id, run_scoped(before))
        after = process_state(target)
        assert run_scoped(after) == run_scoped(before), (path, tool)
        assert [c for c in intrusion.active() if c.owner is not None] == [], (path, tool)
        # a window's watch of the program's full collections ends with it
        assert _heap._full.watchers == 0, (path, tool)
        if path in _EXTERNAL:
            # undone at once, not when the 10 s window would have ended
            assert time.monotonic() - started < 9.0, (path, tool)
    lensbook.stop()
    assert process_state(target) == before
    assert intrusion.active() == []
    # and no thread of lensbook's is left idle: the loop, the probe threads, the undo thread
    _wait_until(
        lambda: not [t for t in threading.enumerate() if t.name.startswith("lensbook-")],
        timeout=10,
        what="lensbook's threads ended after stop()",
    )


def test_tracing_the_user_had_on_stays_on(target: types.ModuleType) -> None:
    tracemalloc.start(2)
    try:
        script = ScriptedClient([[call("memory_trace_start", frames=1)], call("done")])
        Operator.start("memory", client=script).run()
        lensbook.stop()
        assert tracemalloc.is_tracing() and tracemalloc.get_traceback_limit() == 2
    finally:
        tracemalloc.stop()
