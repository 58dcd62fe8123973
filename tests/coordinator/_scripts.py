"""Small skills and scripts shared by the coordinator tests (real operators, no mocks)."""

from __future__ import annotations

import json
import threading
from typing import Any

from lensbook import Skill, probe
from lensbook.clients import ModelRequest, ScriptedClient, call
from lensbook.clients.base import ToolCall

#: set to let the gated operators finish; tests clear it first
GATE = threading.Event()


class Alpha(Skill):
    id = "alpha"
    title = "Alpha"
    description = "A test skill whose probe waits for the test's gate"
    system_prompt = "You look after alpha."

    def snapshot(self) -> dict[str, Any]:
        return {"queue_depth": 42}

    @probe(budget=30.0)
    def hold(self) -> dict[str, Any]:
        """Wait until the test opens the gate (at most 20 s). Cost: a blocked worker thread."""
        return {"released": GATE.wait(20.0)}


class Beta(Alpha):
    id = "beta"
    title = "Beta"
    description = "Another test skill"
    system_prompt = "You look after beta."

    def snapshot(self) -> dict[str, Any]:
        return {"latency_ms": 250}


def snapshot_id(request: ModelRequest) -> str:
    for message in reversed(request.messages):
        for result in message.tool_results:
            try:
                value = json.loads(result.content)
            except ValueError:
                continue
            if isinstance(value, dict) and "captured_at" in value:
                return str(value["id"])
    raise AssertionError("no snapshot in the conversation")


def operator_script(
    skill: str, *, gated: bool = True, extra: list[Any] | None = None
) -> ScriptedClient:
    """An operator run: snapshot, (wait at the gate,) one notification, state, done."""

    def notify(request: ModelRequest) -> ToolCall:
        return call(
            "send_notification",
            anomaly_type=f"{skill}_anomaly",
            severity="warning",
            context=f"{skill} context",
            observation=f"{skill} grew by 40 in 2 s",
            hypothesis=f"{skill} is overloaded",
            snapshot_ids=[snapshot_id(request)],
        )

    turns: list[Any] = [call("take_snapshot")]
    if gated:
        turns.append(call(f"{skill}_hold"))
    turns += [
        notify,
        [call("set_state", state="warning", reason="grew"), call("done", summary=f"{skill} done")],
    ]
    return ScriptedClient(turns + list(extra or []), name=f"{skill}-script")


def last_result(request: ModelRequest, tool: str) -> Any:
    """The parsed result of the newest call of `tool` in the coordinator's conversation."""
    names: dict[str, str] = {}
    found: Any = None
    for message in request.messages:
        for c in message.tool_calls:
            names[c.id] = c.name
        for r in message.tool_results:
            if names.get(r.tool_call_id) == tool:
                found = json.loads(r.content) if not r.is_error else r.content
    return found


def tool_results(request: ModelRequest) -> list[tuple[str, str, bool]]:
    """(tool name, content, is_error) of every tool result in the conversation, in order."""
    names: dict[str, str] = {}
    out = []
    for message in request.messages:
        for c in message.tool_calls:
            names[c.id] = c.name
        for r in message.tool_results:
            out.append((names.get(r.tool_call_id, "?"), r.content, r.is_error))
    return out


def wait_until_idle(request: ModelRequest) -> ToolCall:
    """Wait while any operator runs; once none does, a harmless status call."""
    for name, content, is_error in reversed(tool_results(request)):
        if name in ("wait", "get_operator_statuses", "invoke_operators") and not is_error:
            ops = json.loads(content).get("operators", [])
            if not any(o.get("running") for o in ops):
                return call("get_operator_statuses")
            break
    return call("wait", seconds=5)
