"""The operator's and the coordinator's loops share one tool runtime: the same bad call gets
the same error result from both, and both publish it the same way."""

from __future__ import annotations

from typing import Any

import lensbook
from lensbook import events
from lensbook.clients import ScriptedClient, call
from lensbook.clients.base import ToolCall
from tests.coordinator._scripts import Alpha

#: calls no loop may raise for: JSON cut short, arguments of the wrong type, a missing argument
BAD_CALLS = (
    ToolCall(id="bad_json", name="think", arguments='{"thought": '),
    ToolCall(id="bad_type", name="think", arguments={"thought": ["a", "list"]}),
    ToolCall(id="missing", name="think", arguments={}),
    ToolCall(id="not_object", name="think", arguments="[1, 2]"),
    # JSON text from a model may carry NaN: it passes every min/max clamp (a wait, a window's
    # time limit that never ends); numbers must be finite
    ToolCall(id="nan", name="wait", arguments='{"seconds": NaN}'),
    # an in-process client's argument that is no JSON at all (the record keeps its repr)
    ToolCall(id="object", name="think", arguments={"thought": object()}),
)


def _results(kind: str, seen: list[events.Event]) -> dict[str, tuple[Any, ...]]:
    return {
        e.data["id"]: (e.data["is_error"], e.data["content"], e.data["bytes"])
        for e in seen
        if e.kind == kind and e.data["id"] in {c.id for c in BAD_CALLS}
    }


def test_the_same_bad_call_gets_the_same_error_result_from_both_loops() -> None:
    seen: list[events.Event] = []
    token = events.subscribe(seen.append)
    try:
        op = lensbook.Operator.start(
            skill=Alpha, client=ScriptedClient([list(BAD_CALLS), call("done")])
        )
        try:
            op.run({"reason": "look"})
        finally:
            op.stop()
        coordinator = lensbook.Coordinator(
            skills=[Alpha], client=ScriptedClient([list(BAD_CALLS), call("done")])
        )
        assert coordinator.run("look").stop_reason == "done"
    finally:
        events.unsubscribe(token)
    operator = _results("tool_result", seen)
    coordinator_results = _results("coordinator_tool_result", seen)
    assert set(operator) == {c.id for c in BAD_CALLS}
    assert operator == coordinator_results
    assert all(is_error for is_error, _, _ in operator.values())
    assert operator["bad_json"][1].startswith("think: arguments are not valid JSON")
    assert operator["not_object"][1] == "think: arguments must be a JSON object, got list"
    assert operator["nan"][1].startswith("wait: invalid arguments: seconds: ")
