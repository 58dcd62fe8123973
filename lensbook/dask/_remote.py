"""A skill seen from the notebook whose snapshot and probes run inside one Dask worker.

Used when a cluster run has a model (an API key, `client=` or `client_registry=`): the operator
loop, and so every model call, stays in the notebook's process; each tool call the model makes
is sent to the worker with `Client.run(..., workers=[address])`, runs there under the probe's
budget, and only its JSON answer comes back. The tools' names, descriptions and argument schemas
are the local skill's (the notebook has lensbook too), so the model sees exactly the tools it
would see on one machine; redaction and output caps happen in the loop, before the model sees
anything. The offline rules of the skill also work on these answers, unchanged.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import TYPE_CHECKING, Any

from lensbook.dask._worker import call_probe, take_snapshot
from lensbook.skills import resolve_skill
from lensbook.skills.base import ProbeTool

if TYPE_CHECKING:
    from distributed import Client

__all__ = ["WorkerSkill"]

#: added to a probe's own budget for the round trip through the scheduler
_ROUND_TRIP = 10.0


class WorkerSkill:
    """The skill `skill_id` as it is inside the worker at `address` (meets `SkillLike`)."""

    def __init__(self, client: Client, skill_id: str, address: str) -> None:
        self.local = resolve_skill(skill_id)
        self.client = client
        self.address = address
        self.share_values = bool(getattr(self.local, "share_values", False))

    @property
    def id(self) -> str:
        return self.local.id

    @property
    def title(self) -> str:
        return f"{self.local.title} on {self.address}"

    @property
    def description(self) -> str:
        return self.local.description

    @property
    def system_prompt(self) -> str:
        return (
            f"{self.local.system_prompt}\n\nThe process you investigate is the Dask worker "
            f"{self.address}; your tools run inside it."
        )

    def _on_worker(self, fn: Any, *args: Any) -> Any:
        # called from the lens loop's probe threads, so a synchronous Client.run is right here;
        # the loop's own time budget (probe budget + round trip) bounds the wait
        answers = self.client.run(fn, *args, workers=[self.address], on_error="return")
        if self.address not in answers:
            raise RuntimeError(f"worker {self.address} is gone")
        value = answers[self.address]
        if isinstance(value, BaseException):
            raise RuntimeError(f"on worker {self.address}: {type(value).__name__}: {value}")
        return value

    def snapshot(self) -> dict[str, Any]:
        """The snapshot taken inside the worker. Cost: the skill's snapshot plus one round trip."""
        value: dict[str, Any] = self._on_worker(take_snapshot, self.id)
        return value

    def probes(self) -> list[ProbeTool]:
        return [self._remote(tool) for tool in self.local.probes()]

    def rules(self) -> Sequence[Any]:
        rules = getattr(self.local, "rules", None)
        return list(rules()) if callable(rules) else []

    def _remote(self, tool: ProbeTool) -> ProbeTool:
        def run_there(**kwargs: Any) -> Any:
            return self._on_worker(call_probe, self.id, tool.name, kwargs)

        return ProbeTool(
            run_there,
            name=tool.name,
            description=tool.description,
            args_model=tool.args_model,
            budget=tool.budget + _ROUND_TRIP,
            max_chars=tool.max_chars,
        )
