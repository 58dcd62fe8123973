"""Fuzz: thousands of malformed or random tool calls never crash the operator loop."""

from __future__ import annotations

from typing import Any

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

import lensbook
from lensbook import Skill, probe
from lensbook.clients import ModelTurn, ScriptedClient, TextBlock, ToolCall


class Fuzzy(Skill):
    id = "fuzzy"
    title = "Fuzz target"
    description = "Probes with many argument types"
    system_prompt = "Fuzz."

    def snapshot(self) -> dict[str, Any]:
        return {"n": 1}

    @probe
    def typed(self, a: int, b: float = 1.0, c: list[str] | None = None, d: bool = False) -> int:
        """Typed arguments. Cost: nothing."""
        return a + int(b) + len(c or []) + int(d)

    @probe
    def divide(self, x: float, y: float) -> float:
        """May raise ZeroDivisionError. Cost: nothing."""
        return x / y


NAMES = [
    "take_snapshot",
    "get_snapshot",
    "get_snapshots",
    "send_notification",
    "get_notifications",
    "set_state",
    "think",
    "wait",
    "fuzzy_typed",
    "fuzzy_divide",
    "",
    "done_",
    "unknown",
    "fuzzy_",
    "__import__",
]

json_leaf = st.one_of(
    st.none(), st.booleans(), st.integers(), st.floats(allow_nan=True), st.text(max_size=20)
)
json_value = st.recursive(
    json_leaf,
    lambda inner: st.one_of(
        st.lists(inner, max_size=4), st.dictionaries(st.text(max_size=8), inner, max_size=4)
    ),
    max_leaves=10,
)
arguments = st.one_of(
    st.dictionaries(
        st.sampled_from(
            [
                "a",
                "b",
                "c",
                "d",
                "x",
                "y",
                "id",
                "state",
                "reason",
                "seconds",
                "limit",
                "offset",
                "snapshot_ids",
                "severity",
                "thought",
                "anomaly_type",
                "context",
                "observation",
            ]
        ),
        json_value,
        max_size=6,
    ),
    json_value,
    st.text(max_size=30),  # a raw (possibly invalid) JSON string, as some providers send
)
calls = st.builds(
    lambda name, args, i: ToolCall(id=f"f{i}", name=name, arguments=args),
    st.one_of(st.sampled_from(NAMES), st.text(max_size=12)),
    arguments,
    st.integers(0, 10**6),
)
turns = st.lists(
    st.one_of(
        st.lists(calls, min_size=1, max_size=8).map(
            lambda cs: ModelTurn(content=tuple(cs), stop_reason="tool_use")
        ),
        st.text(max_size=20).map(lambda t: ModelTurn(content=(TextBlock(text=t),))),
        st.just(ModelTurn()),
    ),
    min_size=1,
    max_size=4,
)


@settings(max_examples=250, deadline=None, suppress_health_check=list(HealthCheck))
@given(script=turns)
def test_random_tool_calls_never_crash_the_loop(script: list[ModelTurn]) -> None:
    done = ToolCall(id="end", name="done", arguments={})
    client = ScriptedClient([*script, ModelTurn(content=(done,))])
    op = lensbook.Operator.start(
        skill=Fuzzy, client=client, max_wait_seconds=0.0, max_iterations=len(script) + 1
    )
    try:
        result = op.run({"reason": "fuzz"}).result
    finally:
        op.stop()
    assert result.stop_reason in ("done", "max_iterations")
    assert not op.status().running
    # every call the model made got exactly one result, in order
    for i, request in enumerate(client.requests[1:]):
        sent = script[i].tool_calls if i < len(script) else []
        if sent:
            got = request.messages[-1].tool_results
            assert [r.tool_call_id for r in got] == [c.id for c in sent]
