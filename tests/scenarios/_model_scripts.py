"""Scripted "models" for the fault scenarios: they call the probes a model would and quote the
evidence they return, so the probes are checked through the model path of the loop."""

from __future__ import annotations

import json
from typing import Any

from lensbook.clients import ModelRequest, ScriptedClient, call


def _snapshot_ids(request: ModelRequest) -> list[str]:
    ids = []
    for message in request.messages:
        for result in message.tool_results:
            if '"captured_at"' in result.content:
                ids.append(json.loads(result.content)["id"])
    return ids


def _last_result(request: ModelRequest) -> str:
    return request.messages[-1].tool_results[-1].content


def _quote(anomaly: str, severity: str) -> Any:
    def turn(request: ModelRequest) -> Any:
        evidence = _last_result(request)
        return [
            call(
                "send_notification",
                anomaly_type=anomaly,
                severity=severity,
                context="from the probe's output",
                observation=evidence[:3000],
                hypothesis="see the evidence quoted",
                snapshot_ids=_snapshot_ids(request),
            ),
            call("set_state", state=severity, reason=anomaly),
            call("done", summary=f"{anomaly} found"),
        ]

    return turn


def build(name: str) -> ScriptedClient:
    """A scripted model for scenario `name`."""
    if name == "cache_leak":
        turns: list[Any] = [
            call("take_snapshot"),
            call("memory_trace_start", frames=1),
            [call("wait", seconds=2), call("take_snapshot")],
            call("memory_allocation_diff", top=5),
            _quote("memory_leak", "warning"),
        ]
    elif name == "deadlock":
        turns = [call("take_snapshot"), call("threads_deadlocks"), _quote("deadlock", "critical")]
    elif name == "fd_leak":
        turns = [
            call("take_snapshot"),
            call("wait", seconds=1.5),
            call("take_snapshot"),
            call("process_open_files"),
            _quote("fd_leak", "warning"),
        ]
    else:
        raise KeyError(name)
    return ScriptedClient(turns, name=f"scripted model for {name}")
