"""Replaying a recorded run: the model's turns come from the record; the tools run again
(``tools="rerun"``, the default) or come from the record too (``tools="record"``).

Either way the notebook re-executes to the same notifications without a key or a network.
Nothing is hidden: every tool result that differs from the record, every model request of
another purpose than recorded, and every inconsistency inside the record itself (a tool result
that is not what the model was shown) is reported as a `Divergence`.
"""

from __future__ import annotations

import json
from collections import deque
from dataclasses import dataclass, field
from typing import Any, Generic, Literal, TypeVar

from lensbook._errors import ProviderError, RunFailed
from lensbook.clients.base import ModelRequest, ModelTurn, ToolCall
from lensbook.clients.chain import ClientChain
from lensbook.limits import MAX_ITERATIONS
from lensbook.operator.investigation import Investigation, RunSettings, publish_completed
from lensbook.records.reader import Run
from lensbook.skills import resolve_skill
from lensbook.types import CompletionResult, Notification, Snapshot

__all__ = [
    "Divergence",
    "ReplayClient",
    "ReplayResult",
    "Replayed",
    "ToolMode",
    "areplay",
    "report",
]

ToolMode = Literal["rerun", "record"]


@dataclass(frozen=True)
class Divergence:
    """One place where the replay differs from the record."""

    where: str
    recorded: str
    replayed: str

    def __str__(self) -> str:
        return f"{self.where}: recorded {self.recorded[:120]!r}, now {self.replayed[:120]!r}"


R = TypeVar("R")


@dataclass
class Replayed(Generic[R]):
    """A replay: its result, the record it came from, the tools' mode and every divergence.

    Each kind of run says what "the same notifications" means for it and heads its text.
    """

    result: R
    record: Run
    tools: ToolMode
    divergences: list[Divergence] = field(default_factory=list)

    @property
    def same_notifications(self) -> bool:
        raise NotImplementedError

    def headline(self) -> str:
        raise NotImplementedError

    def __repr__(self) -> str:
        return report(self.headline(), self.same_notifications, self.divergences)


class ReplayResult(Replayed[CompletionResult]):
    """The replayed run's result, the record it came from, and every divergence."""

    @property
    def notifications(self) -> tuple[Notification, ...]:
        """The replayed run's notifications (as a `lensbook.run` result has them)."""
        return self.result.notifications

    @property
    def same_notifications(self) -> bool:
        """Whether the replay made the recorded notifications (ids and times aside)."""
        return _keys(self.result) == _keys(self.record.result)

    def headline(self) -> str:
        return (
            f"replay of run {self.record.run_id} ({self.record.operator}), tools {self.tools}: "
            f"{len(self.result.notifications)} notification(s)"
        )


def report(head: str, same: bool, divergences: list[Divergence], shown: int = 20) -> str:
    """A replay's text: `head`, whether it matched the record, and its first divergences."""
    lines = [
        f"{head}, {'the same as' if same else 'DIFFERENT from'} the record; "
        f"{len(divergences)} divergence(s)",
        *(f"  - {d}" for d in divergences[:shown]),
    ]
    if len(divergences) > shown:
        lines.append(f"  ... and {len(divergences) - shown} more")
    return "\n".join(lines)


def _keys(result: CompletionResult) -> list[tuple[Any, ...]]:
    return [
        (n.anomaly_type, n.severity, n.context, n.observation, n.hypothesis, n.snapshot_ids)
        for n in result.notifications
    ]


class ReplayClient:
    """Answers each request with the next model turn of a record."""

    def __init__(self, run: Run, divergences: list[Divergence]) -> None:
        self.name = f"replay of {run.header.get('client') or 'record'}"
        self._turns: deque[tuple[str, ModelTurn]] = deque(
            (e["data"].get("purpose", "investigate"), ModelTurn.model_validate(e["data"]["turn"]))
            for e in run.of_kind("model_response")
        )
        self._divergences = divergences

    @property
    def next_purpose(self) -> str | None:
        return self._turns[0][0] if self._turns else None

    async def complete(self, request: ModelRequest) -> ModelTurn:
        if not self._turns:
            raise ProviderError("the record has no more model turns", retryable=False)
        purpose, turn = self._turns.popleft()
        if purpose != request.purpose:
            self._divergences.append(Divergence("model request purpose", purpose, request.purpose))
        return turn


class _ReplayInvestigation(Investigation):
    def __init__(
        self,
        run: Run,
        client: ReplayClient,
        tools: ToolMode,
        divergences: list[Divergence],
        **kwargs: Any,
    ) -> None:
        super().__init__(**kwargs)
        self._record = run
        self._client = client
        self._mode = tools
        self._divergences = divergences
        self._snapshots = deque(run.snapshot_objects)
        self._results = {e["data"]["id"]: e["data"] for e in run.of_kind("tool_result")}
        self._shown = _results_shown_to_model(run)
        if tools == "record":
            self._check_record()

    def should_compact(self) -> bool:
        # compaction follows the record, whatever today's token estimates say
        return self._client.next_purpose == "compact"

    async def capture_snapshot(self) -> Snapshot:
        recorded = self._snapshots.popleft() if self._snapshots else None
        if self._mode == "record" and recorded is not None:
            return recorded
        live = await super().capture_snapshot()
        if recorded is None:
            self._divergences.append(
                Divergence("take_snapshot", "(no snapshot recorded)", json.dumps(live.data))
            )
            return live
        if live.data != recorded.data:
            changed = sorted(
                k
                for k in set(live.data) | set(recorded.data)
                if live.data.get(k) != recorded.data.get(k)
            )
            self._divergences.append(
                Divergence(
                    f"snapshot {recorded.id} ({len(changed)} value(s) changed: "
                    f"{', '.join(changed[:8])})",
                    json.dumps({k: recorded.data.get(k) for k in changed[:8]}),
                    json.dumps({k: live.data.get(k) for k in changed[:8]}),
                )
            )
        # keep the recorded id so the recorded notifications still cite known snapshots
        return Snapshot(id=recorded.id, captured_at=live.captured_at, data=live.data)

    async def _dispatch(self, call: ToolCall) -> tuple[str, bool]:
        recorded = self._results.get(call.id)
        if call.name == "get_history" and recorded is not None:
            # the history a run read is the past as it was then, in either mode: today's
            # history is another one, and the recorded notifications cite its ids
            return str(recorded.get("content", "")), bool(recorded.get("is_error"))
        from_record = call.name not in self._base_names or call.name == "wait"
        if self._mode == "record" and from_record and recorded is not None:
            return str(recorded.get("content", "")), bool(recorded.get("is_error"))
        content, is_error = await self.run_tool(call)
        # base tools answer with fresh ids and times: only probes' answers are compared
        if recorded is None:
            self._divergences.append(
                Divergence(f"{call.name} [{call.id}]", "(not in the record)", content)
            )
        elif call.name not in self._base_names and (
            content != recorded.get("content") or is_error != bool(recorded.get("is_error"))
        ):
            self._divergences.append(
                Divergence(f"{call.name} [{call.id}]", str(recorded.get("content")), content)
            )
        return content, is_error

    def _check_record(self) -> None:
        """In record mode: each recorded tool result must be what the model was shown."""
        for call_id, data in self._results.items():
            shown = self._shown.get(call_id)
            if shown is not None and shown != data.get("content"):
                self._divergences.append(
                    Divergence(
                        f"record: {data.get('name')} [{call_id}] differs from what the model saw",
                        shown,
                        str(data.get("content")),
                    )
                )


def _results_shown_to_model(run: Run) -> dict[str, str]:
    shown: dict[str, str] = {}
    for e in run.of_kind("model_request"):
        for message in e["data"].get("messages", []):
            for block in message.get("content", []):
                if block.get("type") == "tool_result":
                    shown[block["tool_call_id"]] = block.get("content", "")
    return shown


async def areplay(record: Run, *, tools: ToolMode = "rerun", skill: Any = None) -> ReplayResult:
    """The replay of one operator run, on the lens loop (see `replay`)."""
    divergences: list[Divergence] = []
    client = ReplayClient(record, divergences)
    h = record.header
    settings = RunSettings(
        max_iterations=int(h.get("max_iterations", MAX_ITERATIONS)),
        compaction_max_tokens=int(h.get("compaction_max_tokens", 50_000)),
        compaction_keep_last=int(h.get("compaction_keep_last", 5)),
        max_wait_seconds=float(h.get("max_wait_seconds", 30.0)),
    )
    investigation = _ReplayInvestigation(
        record,
        client,
        tools,
        divergences,
        operator=record.operator,
        skill=resolve_skill(skill if skill is not None else record.skill),
        chain=ClientChain([client], attempts=1),
        context=record.context,
        settings=settings,
        state=h.get("state", "healthy"),
    )
    try:
        result = await investigation.run()
    except RunFailed as exc:
        if exc.result is None:
            raise
        result = exc.result
    publish_completed(investigation.operator, result, replay_of=record.run_id)
    return ReplayResult(result=result, record=record, tools=tools, divergences=divergences)
