"""Scripts and shells shared by the notebook tests."""

from __future__ import annotations

import json
from typing import Any

from lensbook.clients import ModelRequest, ScriptedClient, call
from lensbook.clients.base import ToolCall


def last_snapshot_id(request: ModelRequest) -> str:
    """The id returned by the most recent take_snapshot in the conversation."""
    for message in reversed(request.messages):
        for result in reversed(message.tool_results):
            try:
                data = json.loads(result.content)
            except ValueError:
                continue
            if isinstance(data, dict) and "id" in data and "data" in data:
                return str(data["id"])
    raise AssertionError("no snapshot in the conversation")


def notify(severity: str = "warning", anomaly: str = "fd_growth") -> Any:
    """A turn sending a notification that cites the latest snapshot."""

    def turn(request: ModelRequest) -> ToolCall:
        return call(
            "send_notification",
            anomaly_type=anomaly,
            severity=severity,
            context="open fds went from 10 to 90 in 2.0 s",
            observation="+80 file descriptors between snapshots",
            hypothesis="a descriptor leak in the loader",
            snapshot_ids=[last_snapshot_id(request)],
        )

    return turn


def finding_script(state: str = "warning", name: str = "scripted") -> ScriptedClient:
    """Two snapshots, one notification, a state, done: a whole run in five turns."""
    return ScriptedClient(
        [
            call("take_snapshot"),
            call("take_snapshot"),
            notify(),
            call("set_state", state=state, reason="fds grew by 80 in 2 s"),
            call("done", summary="fds grow; see the notification"),
        ],
        name=name,
    )


def endless_script(turns: int = 50) -> ScriptedClient:
    """A model that never calls done (think, think, ...), then sums up."""
    return ScriptedClient(
        [call("take_snapshot")]
        + [call("think", thought=f"step {i}") for i in range(turns)]
        + ["summary: nothing conclusive"] * 2
    )
