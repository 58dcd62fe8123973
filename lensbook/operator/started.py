"""The table of static operators by skill id: what `lensbook.start()` started and `stop()` ends.

It sits apart from the registry (which starts, finds and stops them) so that triage can ask which
skills are started without depending on the operator machinery: the registry imports the actor,
the actor the investigation loop, and the loop asks triage for a vague run's signals. This
module imports nothing of lensbook's at run time, so it closes no import cycle.

An operator that leaves the table (ended by `lensbook.stop()`, or replaced when its skill is
started again) leaves its last result behind, so `lensbook.last()` outlives it.
"""

from __future__ import annotations

import threading
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from lensbook.operator.actor import Operator
    from lensbook.types import CompletionResult

__all__ = ["add", "get", "last_results", "operators", "skill_ids", "take_all"]

_lock = threading.Lock()
_static: dict[str, Operator] = {}
#: skill id -> the last result of a static operator that left the table
_left: dict[str, CompletionResult] = {}


def get(skill_id: str) -> Operator | None:
    """The static operator started for `skill_id`, if any."""
    with _lock:
        return _static.get(skill_id)


def add(skill_id: str, operator: Operator) -> None:
    """Record `operator` as the static one of `skill_id` (replacing a stopped one)."""
    with _lock:
        _leave(skill_id, _static.get(skill_id))
        _static[skill_id] = operator


def operators() -> dict[str, Operator]:
    """A copy of the table."""
    with _lock:
        return dict(_static)


def skill_ids() -> list[str]:
    """The ids of the skills whose static operator was started, in start order."""
    with _lock:
        return list(_static)


def take_all() -> list[Operator]:
    """Empty the table and return what it held (for `lensbook.stop()`)."""
    with _lock:
        for skill_id, operator in _static.items():
            _leave(skill_id, operator)
        ops = list(_static.values())
        _static.clear()
    return ops


def last_results() -> dict[str, CompletionResult]:
    """Skill id -> the last result of its static operator, or of the one that left the table."""
    with _lock:
        found = dict(_left)
        for skill_id, operator in _static.items():
            if operator.last_result is not None:
                found[skill_id] = operator.last_result
    return found


def _leave(skill_id: str, operator: Operator | None) -> None:
    """Under the lock: keep what `operator`, leaving the table, found last."""
    if operator is not None and operator.last_result is not None:
        _left[skill_id] = operator.last_result
