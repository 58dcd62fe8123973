"""Replaying a recorded run: `lensbook.replay`, for an operator's run or a coordinator's.

An operator run replays in `lensbook.records.operator_replay` (its model turns from the record,
its probes run again or taken from the record); a coordinator run in
`lensbook.records.coordinator_replay`, which replays each of its operator runs with the former.
This module only chooses between them, so neither imports the other's caller.
"""

from __future__ import annotations

from typing import Any

from lensbook import _loop
from lensbook.records.coordinator_replay import CoordinatorReplay, areplay_coordinator
from lensbook.records.operator_replay import (
    Divergence,
    ReplayClient,
    ReplayResult,
    ToolMode,
    areplay,
)
from lensbook.records.reader import Run, load_run

__all__ = ["CoordinatorReplay", "Divergence", "ReplayClient", "ReplayResult", "areplay", "replay"]


def replay(
    run: Run | str | Any,
    *,
    tools: ToolMode = "rerun",
    skill: Any = None,
    timeout: float | None = 300.0,
) -> ReplayResult | CoordinatorReplay:
    """Re-run a recorded investigation with the model's turns from the record.

    A coordinator run's record replays its own turns, and each operator run it started from
    that run's record (found beside it), in the same order. `skill` is needed only for a user
    skill that is not registered under the record's skill id.
    """
    record = load_run(run)
    if tools not in ("rerun", "record"):
        raise ValueError("tools must be 'rerun' or 'record'")
    if record.kind == "coordinator":
        return _loop.run_sync(areplay_coordinator(record, tools), timeout)
    return _loop.run_sync(areplay(record, tools=tools, skill=skill), timeout)
