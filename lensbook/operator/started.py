"""The table of static operators by skill id: what `lensbook.start()` started and `stop()` ends.

It sits apart from the registry (which starts, finds and stops them) so that triage can ask which
skills are started without depending on the operator machinery: the registry imports the actor,
the actor the investigation loop, and the loop asks triage for a vague run's signals. This
module imports nothing of lensbook's at run time, so it closes no import cycle.
"""

from __future__ import annotations

import threading
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from lensbook.operator.actor import Operator

__all__ = ["add", "get", "operators", "skill_ids", "take_all"]

_lock = threading.Lock()
_static: dict[str, Operator] = {}


def get(skill_id: str) -> Operator | None:
    """The static operator started for `skill_id`, if any."""
    with _lock:
        return _static.get(skill_id)


def add(skill_id: str, operator: Operator) -> None:
    """Record `operator` as the static one of `skill_id` (replacing a stopped one)."""
    with _lock:
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
        ops = list(_static.values())
        _static.clear()
    return ops
