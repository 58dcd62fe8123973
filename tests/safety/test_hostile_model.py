"""The hostile-model suite: a scripted "model" calls every tool of every built-in skill with
hostile arguments while the main thread does measured work.

The tools and their parameters are read from the skills themselves (their generated JSON
schemas), so a new probe or parameter is covered without editing this file. Hostile values:
wrong types, negative, zero and huge numbers, empty and huge strings, catastrophic regular
expressions, targets inside the interpreter's machinery, unknown keys, non-object arguments,
then thousands of calls in a few turns. The suite asserts that the main thread keeps making
progress, that every run ends within its limits, that a probe abandoned by its budget stops
working soon after, that nothing intrusive is left on, and that a process
with intrusive windows open exits promptly with everything undone.

Most batches come from `ScriptedClient`; one goes through the real `anthropic` SDK against the
local fake Messages server (`tests/fakes/`), so the wire path's tool-call parsing (JSON on the
wire, the SDK's content blocks, lensbook's conversion) sees the hostile arguments too.
"""

from __future__ import annotations

import json
import statistics
import subprocess
import sys
import textwrap
import threading
import time
from typing import Any

import pytest

import lensbook
from lensbook import events
from lensbook.clients.anthropic_ import AnthropicClient
from lensbook.clients.base import ToolCall
from lensbook.clients.scripted import ScriptedClient, call
from lensbook.operator.actor import Operator
from lensbook.operator.investigation import _probe_pool
from lensbook.skills import builtin_ids, intrusion, resolve_skill
from lensbook.skills.base import ProbeTool
from tests.fakes.messages_server import MessagesServer, message, server_pool, text, tool_uses

from ._state import process_state

HOSTILE_STRINGS = ("", "x" * 100_000, r"(\w+\s?)*$x", "builtins.len", "../../etc/shadow\ud800\x00")
#: huge values reach each probe's longest window: the suite's length is its longest window
HOSTILE_NUMBERS = (-1, 10**12)
WRONG_TYPES = ({"nested": [1]},)
#: a hostile run may take this long at most (all skills at once, on a busy 2-core machine).
#: A run's calls go one after another, each within its own deadline; the memory run is the
#: longest (~30 heap walks, each cut at its 3-4 s deadline in a large heap: ~100 s at most):
#: 54-57 s at 1.5M objects here, 115 s and over 120 s in CI's test process
RUN_LIMIT_S = 240.0
#: the slowest main-thread chunk (~1 ms of work alone) allowed while hostile calls run:
#: measured at 0.89-1.7 s with every skill at once (0.3-1.1 s for the other batches) on a shared
#: 2-core machine at load 2.5-3.7; the margin is for a loaded CI machine, and a 4 s stall (a
#: heap walk holding the GIL, a catastrophic regex) still fails it (it was 5 s)
MAX_CHUNK_S = 3.0
#: the median chunk allowed: measured at 1.0-1.6 ms; slow steady progress (the main thread
#: sharing the interpreter with a probe that never rests) would fail it, a few stalls cannot
MEDIAN_CHUNK_S = 0.05


def _kind(prop: dict[str, Any]) -> str:
    types = [prop.get("type")] + [p.get("type") for p in prop.get("anyOf", [])]
    if "enum" in prop:
        return "enum"
    for kind in ("string", "integer", "number", "boolean", "array", "object"):
        if kind in types:
            return kind
    return "unknown"


def _plausible(prop: dict[str, Any]) -> Any:
    kind = _kind(prop)
    return {
        "enum": (prop.get("enum") or ["x"])[0],
        "string": "x",
        "integer": 1,
        "number": 1.0,
        "boolean": False,
        "array": [],
        "object": {},
    }.get(kind, "x")


def hostile_calls(tool: ProbeTool) -> list[ToolCall]:
    """One call per (parameter, hostile value), plus malformed whole-call arguments."""
    schema = tool.input_schema
    props: dict[str, Any] = schema.get("properties", {})
    base = {k: _plausible(props[k]) for k in schema.get("required", [])}
    calls = [
        call(tool.name, **base, unexpected_key="rm -rf /"),
        ToolCall(id=f"list-{tool.name}", name=tool.name, arguments=[1, 2]),  # type: ignore[arg-type]
        ToolCall(id=f"text-{tool.name}", name=tool.name, arguments="{not json"),
    ]
    for name, prop in props.items():
        kind = _kind(prop)
        values: tuple[Any, ...] = WRONG_TYPES
        if kind in ("integer", "number"):
            values += HOSTILE_NUMBERS
        elif kind in ("string", "enum"):
            values += HOSTILE_STRINGS
        for value in values:
            calls.append(call(tool.name, **{**base, name: value}))
    return calls


def _all_tools() -> dict[str, list[ProbeTool]]:
    return {sid: resolve_skill(sid).probes() for sid in builtin_ids()}


class MainThreadWork:
    """Measured work on the calling thread: allocation- and CPU-heavy chunks, timed.

    With `rest_s`, the thread waits that long between chunks, like a service between
    requests (a saturated thread makes every GIL hand-off of the lens loop cost a 5 ms
    switch interval, which turns thousands of calls into minutes of test time).
    """

    def __init__(self, rest_s: float = 0.0) -> None:
        self.chunks: list[float] = []
        self.starts: list[float] = []
        self.rest_s = rest_s

    def until(self, done: threading.Event, limit_s: float) -> None:
        deadline = time.monotonic() + limit_s
        while not done.wait(self.rest_s) and time.monotonic() < deadline:
            started = time.perf_counter()
            rows = [{"i": i, "v": [i, i]} for i in range(2000)]
            sum(r["i"] for r in rows)
            self.chunks.append(time.perf_counter() - started)
            self.starts.append(started)

    def assert_kept_progressing(self, spans: dict[str, list[Any]] | None = None) -> None:
        """Enough chunks, none stalled, and a median near the work's own pace (printed, to
        see the margin under `pytest -s`); `spans` (call id -> [tool, started, ended]) name
        the tools that ran during the slowest chunk."""
        slowest, median = max(self.chunks, default=0.0), statistics.median(self.chunks or [0.0])
        during: list[str] = []
        if self.chunks and spans:
            begin = self.starts[self.chunks.index(slowest)]
            during = sorted(
                {n for n, s, e in spans.values() if s < begin + slowest and (e or begin) >= begin}
            )
        print(
            f"main thread: {len(self.chunks)} chunks, max {slowest:.3f} s (during {during}), "
            f"median {median:.4f} s"
        )
        assert len(self.chunks) >= 10, len(self.chunks)
        assert slowest < MAX_CHUNK_S, (slowest, median, len(self.chunks), during)
        assert median < MEDIAN_CHUNK_S, (slowest, median, len(self.chunks))


def _run_every_skill(clients: dict[str, Any]) -> list[dict[str, Any]]:
    """Run one operator per skill, each with its client (`clients`: skill id -> client), while
    the main thread does measured work; assert what every hostile run must leave behind, and
    return the tool results."""
    before = process_state()
    results: list[dict[str, Any]] = []
    spans: dict[str, list[Any]] = {}  # call id -> [tool, started, ended]

    def on_tool(event: Any) -> None:
        key = f"{event.operator}/{event.data['id']}"
        if event.kind == "tool_call":
            spans[key] = [event.data["name"], time.perf_counter(), None]
            return
        results.append(event.data)
        if key in spans:
            spans[key][2] = time.perf_counter()

    token = events.subscribe(on_tool, kinds=["tool_call", "tool_result"])
    finished: list[Any] = []
    all_done = threading.Event()
    crashes: list[str] = []

    def crashed(event: Any) -> None:  # a crashed run calls no on_complete: count it here
        crashes.append(f"{event.operator}: {event.data.get('error')}")
        finished.append(None)
        if len(finished) == len(clients):
            all_done.set()

    crash_token = events.subscribe(crashed, kinds=["operator_crashed"])
    operators = []
    try:
        for sid, client in clients.items():
            op = Operator.start(sid, name=f"hostile-{sid}", client=client)
            operators.append(op)

            def complete(result: Any) -> None:
                finished.append(result)
                if len(finished) == len(clients):
                    all_done.set()

            op.run_in_background({"reason": "hostile"}, on_complete=complete, max_iterations=500)
        work = MainThreadWork()
        started = time.monotonic()
        work.until(all_done, RUN_LIMIT_S)
        elapsed = time.monotonic() - started
        stuck = [(op.name, op.current_action) for op in operators if op.last_result is None]
    finally:
        events.unsubscribe(token)
        events.unsubscribe(crash_token)
        for op in operators:
            op.stop()
    assert crashes == []
    assert all_done.is_set(), f"only {len(finished)} of {len(clients)} hostile runs ended: {stuck}"
    ended = [r for r in finished if r is not None]  # None: a crashed run
    assert all(r.stop_reason == "done" for r in ended), [
        (r.operator, r.stop_reason, r.error) for r in ended if r.stop_reason != "done"
    ]
    # the main thread kept progressing: no stall near the 11.8 s / 100+ s seen before
    print(f"hostile runs ended in {elapsed:.1f} s")
    work.assert_kept_progressing(spans)
    # on a saturated machine a probe may still overrun its budget and be abandoned; it must
    # then stop working soon (deadlines, linear-time regexes), not run on in the background
    deadline = time.monotonic() + 60
    while _probe_pool.busy():
        overran = [r["name"] for r in results if "overran its time budget" in r["content"]]
        assert time.monotonic() < deadline, f"abandoned probes still running: {overran}"
        time.sleep(0.05)
    assert [c for c in intrusion.active() if c.owner is not None] == []
    lensbook.stop()
    assert process_state() == before
    assert intrusion.active() == []
    return results


def test_hostile_calls_to_every_tool_of_every_skill() -> None:
    tools = _all_tools()
    clients = {}
    for sid, probes in tools.items():
        calls = [c for tool in probes for c in hostile_calls(tool)]
        clients[sid] = ScriptedClient.batches([calls[i : i + 8] for i in range(0, len(calls), 8)])
    results = _run_every_skill(clients)
    called = {r["name"] for r in results}
    every_tool = {t.name for probes in tools.values() for t in probes}
    assert every_tool <= called, every_tool - called


WIRE_SKILLS = ("logs", "tracer", "exceptions")
#: inputs only the wire can carry to the SDK: a tool_use block whose input is not an object
WIRE_INPUTS: tuple[Any, ...] = (None, 7, [1, 2], "{not json", {"": {"": [None] * 50}})


def _wire_batch(tool: ProbeTool) -> list[dict[str, Any]]:
    """`tool`'s hostile calls as tool_use blocks, without the hostile numbers (each runs the
    probe itself, at its shortest or longest: the scripted batches cover those; strings and
    wrong types are what the wire's parsing sees), plus the inputs only the wire can carry."""
    inputs = []
    for c in hostile_calls(tool):
        arguments = c.arguments if isinstance(c.arguments, dict) else {}
        if not any(v in HOSTILE_NUMBERS for v in arguments.values() if type(v) is int):
            inputs.append(c.arguments)
    inputs += WIRE_INPUTS
    return [
        {"type": "tool_use", "id": f"toolu_{tool.name}_{i}", "name": tool.name, "input": value}
        for i, value in enumerate(inputs)
    ]


def test_hostile_calls_through_the_anthropic_wire() -> None:
    """One hostile batch per skill goes out as JSON from a local Messages server, through the
    real SDK's parsing and lensbook's conversion, and every call is answered on the wire."""
    # the skills whose probes read strings the most (patterns, dotted targets, names); their
    # probes are quick, so the batch takes seconds
    tools = {sid: resolve_skill(sid).probes() for sid in WIRE_SKILLS}

    def answer(batch: list[dict[str, Any]]) -> Any:
        # the batch for the first investigate request, done for the next; a compaction or
        # summary request (no tools offered) gets text
        sent: list[bool] = []

        def reply(request: Any, _server: MessagesServer) -> Any:
            if not request.body.get("tools"):
                return message(text("summary: hostile calls so far"))
            if sent:
                return tool_uses(
                    {"type": "tool_use", "id": "toolu_done", "name": "done", "input": {}}
                )
            sent.append(True)
            return tool_uses(*batch)

        return reply

    batches = {
        sid: [b for tool in probes for b in _wire_batch(tool)] for sid, probes in tools.items()
    }
    with server_pool() as start:
        servers = {sid: start(then=answer(batch)) for sid, batch in batches.items()}
        clients = {
            sid: AnthropicClient(base_url=server.url, api_key="test-key")
            for sid, server in servers.items()
        }
        results = _run_every_skill(clients)
    for sid, server in servers.items():
        asked = {b["id"] for b in batches[sid]}
        answered = {
            r["tool_use_id"]
            for request in server.requests
            for r in request.tool_results
            if r["tool_use_id"] in asked
        }
        assert answered == asked, (sid, sorted(asked - answered)[:5])
    # non-object inputs reached the tools as hostile arguments and came back as errors
    by_name = [r for r in results if r["name"] == "logs_search"]
    assert sum(r["is_error"] for r in by_name) >= len(WIRE_INPUTS) - 1, by_name


def test_thousands_of_calls_in_a_few_turns() -> None:
    names = ["runtime_interpreter", "runtime_memory_info", "think", "unknown_tool"]
    names += ["get_notifications", "set_state", "take_snapshot"]
    batches = [
        [
            call(names[i % len(names)], thought=str(i), state="critical", reason="x" * i)
            for i in range(turn * 1000, turn * 1000 + 1000)
        ]
        for turn in range(2)
    ]
    results: list[dict[str, Any]] = []
    token = events.subscribe(lambda e: results.append(e.data), kinds=["tool_result"])
    op = Operator.start("runtime", client=ScriptedClient.batches(batches))
    done = threading.Event()
    try:
        op.run_in_background(
            {"reason": "flood"}, on_complete=lambda _r: done.set(), timeout=RUN_LIMIT_S
        )
        work = MainThreadWork(rest_s=0.005)
        work.until(done, RUN_LIMIT_S)
    finally:
        events.unsubscribe(token)
        op.stop()
    assert done.is_set() and op.last_result is not None
    assert op.last_result.stop_reason == "done"
    assert len(results) == 2001  # every call answered (most with an argument error), and done
    work.assert_kept_progressing()


CHILD = """
import atexit, gc, json, sys, threading, time, tracemalloc, types

def report():  # registered first, so it runs after lensbook's own exit handlers
    print(json.dumps({
        "tracing": tracemalloc.is_tracing(),
        "gc_debug": gc.get_debug(),
        "restored": vars(sys.modules["lb_exit_target"])["work"] is ORIGINAL,
        "exit_s": time.monotonic() - EXIT_AT,
    }), flush=True)

atexit.register(report)
module = types.ModuleType("lb_exit_target")
exec("def work():\\n    return 1\\n", vars(module))
sys.modules["lb_exit_target"] = module
ORIGINAL = module.work

import lensbook
from lensbook.clients.scripted import ScriptedClient, call
from lensbook.skills import intrusion

script = ScriptedClient([[call("memory_trace_start", frames=5)], [call("wait", seconds=60)]])
lensbook.start(["memory", "tracer", "gc"], client=script, sample_interval=None)
lensbook.get_operator("memory").run_in_background({"reason": "exit test"})
lensbook.get_operator("tracer").run_in_background(
    {"reason": "exit test"},
    client=ScriptedClient([[call("tracer_trace", target="lb_exit_target.work", seconds=60)]]),
)
lensbook.get_operator("gc").run_in_background(
    {"reason": "exit test"}, client=ScriptedClient([[call("gc_cycle_types", seconds=60)]])
)
deadline = time.monotonic() + 60
while len({c.name for c in intrusion.active() if c.owner}) < 3:
    assert time.monotonic() < deadline, intrusion.active()
    time.sleep(0.01)
print("windows open", flush=True)
EXIT_AT = time.monotonic()
sys.exit(0)  # no lensbook.stop(): the interpreter's exit must undo it all, without waiting
"""


def test_the_process_exits_promptly_with_windows_open_and_undoes_them() -> None:
    done = subprocess.run(
        [sys.executable, "-c", textwrap.dedent(CHILD)],
        capture_output=True,
        text=True,
        timeout=60,
    )
    lines = done.stdout.strip().splitlines()
    assert done.returncode == 0, done.stderr[-2000:]
    assert lines[0] == "windows open", done.stdout
    report = json.loads(lines[-1])
    exit_s = report.pop("exit_s")
    assert report == {"tracing": False, "gc_debug": 0, "restored": True}
    # the windows last 10 s (their longest): exit waited for no probe thread
    assert exit_s < 5.0, (exit_s, done.stderr[-2000:])


@pytest.mark.parametrize("pattern", [r"(\w+\s?)*$x", r"(.*)*Z", r"(a|aa)*$x", r"(x+x+)+y"])
def test_a_catastrophic_search_returns_at_once(pattern: str) -> None:
    import logging

    log = logging.getLogger("lb.hostile")
    skill = resolve_skill("logs")
    tool = {t.name: t for t in skill.probes()}["logs_search"]
    skill.install()  # type: ignore[attr-defined]
    for i in range(2000):
        log.warning("word " * 30 + "x" * 40 + f" {i}")
    started = time.perf_counter()
    out = tool.fn(**tool.validate({"pattern": pattern}))
    assert out["matched"] >= 0
    assert time.perf_counter() - started < 5.0  # it used to hold the GIL for 11.8 s to 100+ s
