"""Replaying a recorded coordinator run: its turns from its record, its operators from theirs.

The coordinator's model turns come from its own record (as an operator's do). Each time the
replayed coordinator invokes an operator, the next recorded run of that skill (named in the
record's ``coordinator_operator_finished`` events, a file beside it) is replayed with
`lensbook.records.operator_replay.areplay`, and the notifications handed to the coordinator are the
recorded ones, so the recorded turns that cite notification ids (insights, statuses) still cite
known ids. The coordinator's tools run for real (waits, statuses, insights); every place where
the replay differs from the record is a `Divergence`.
"""

from __future__ import annotations

from collections import deque
from typing import Any

from lensbook.clients.chain import ClientChain
from lensbook.coordinator.insights import CoordinatorResult, TrackedNotification
from lensbook.coordinator.session import OperatorRun, Session, Settings
from lensbook.records.operator_replay import (
    Divergence,
    ReplayClient,
    Replayed,
    ToolMode,
    areplay,
)
from lensbook.records.reader import RecordError, Run, load_run
from lensbook.skills import resolve_skill

__all__ = ["CoordinatorReplay", "areplay_coordinator"]


class CoordinatorReplay(Replayed[CoordinatorResult]):
    """The replayed coordinator run's result, the record it came from, and every divergence."""

    @property
    def notifications(self) -> tuple[TrackedNotification, ...]:
        """The notifications the replayed coordinator got (as its `CoordinatorResult` has them)."""
        return self.result.notifications

    @property
    def same_notifications(self) -> bool:
        """Whether the replay got the recorded notifications and produced the same insights."""
        got = [(t.skill, t.notification.id) for t in self.result.notifications]
        recorded = [
            (e["data"].get("skill"), e["data"]["notification"]["id"])
            for e in self.record.of_kind("coordinator_notification")
        ]
        return got == recorded and _insight_keys(self.result) == [
            _insight_key(i) for i in self.record.insights
        ]

    def headline(self) -> str:
        return (
            f"replay of coordinator run {self.record.run_id} ({self.record.operator}), tools "
            f"{self.tools}: {len(self.result.notifications)} notification(s), "
            f"{len(self.result.insights)} insight(s)"
        )


def _insight_key(insight: dict[str, Any]) -> tuple[Any, ...]:
    return (
        insight.get("correlation_type"),
        insight.get("summary"),
        tuple(insight.get("notification_ids") or ()),
        insight.get("confidence"),
    )


def _insight_keys(result: CoordinatorResult) -> list[tuple[Any, ...]]:
    return [_insight_key(i.to_dict()) for i in result.insights]


class _ReplaySession(Session):
    """A session whose operator runs are replays of the recorded ones."""

    def __init__(
        self, record: Run, tools: ToolMode, divergences: list[Divergence], **kwargs: Any
    ) -> None:
        super().__init__(**kwargs)
        self._record = record
        self._mode = tools
        self._divergences = divergences
        self._queued: dict[str, deque[dict[str, Any]]] = {}
        for entry in record.operator_records:
            self._queued.setdefault(str(entry.get("skill")), deque()).append(entry)

    async def _serve(self, run: OperatorRun, context: dict[str, Any]) -> None:
        queue = self._queued.get(run.skill)
        entry = queue.popleft() if queue else None
        name = entry.get("record") if entry else None
        path = self._record.beside(name)
        if path is None:
            run.error = "no recorded operator run to replay"
            self._divergences.append(
                Divergence(f"operator {run.skill}", "(no record)", "invoked in the replay")
            )
            run.result = self._empty_result(run, run.error)
        else:
            try:
                operator_record = load_run(path)
            except (OSError, RecordError) as exc:
                raise RecordError(
                    f"the coordinator record cites operator record {name}, which cannot be "
                    f"read beside it: {exc}"
                ) from None
            outcome = await areplay(operator_record, tools=self._mode)
            for d in outcome.divergences:
                self._divergences.append(
                    Divergence(f"{run.skill}: {d.where}", d.recorded, d.replayed)
                )
            if not outcome.same_notifications:
                self._divergences.append(
                    Divergence(
                        f"{run.skill}: notifications",
                        str(len(operator_record.notification_objects)),
                        str(len(outcome.result.notifications)),
                    )
                )
            recorded = operator_record.notification_objects
            for note in recorded:
                # the recorded notifications (and their ids) are what the recorded turns cite
                self._skill_of[note.operator] = run.skill
                self._on_note(note)
            run.result = outcome.result.model_copy(update={"notifications": tuple(recorded)})
        result = run.result
        self._emit(
            "coordinator_operator_finished",
            skill=run.skill,
            operator_name=run.operator.name,
            operator_run_id=result.run_id,
            record=None,
            state=result.state,
            stop_reason=result.stop_reason,
            crashed=False,
            error=run.error or result.error,
            notifications=len(result.notifications),
            replay_of=name,
        )
        self.changed.set()


async def areplay_coordinator(record: Run, tools: ToolMode = "rerun") -> CoordinatorReplay:
    """Replay a coordinator record on the lens loop (see `lensbook.replay`)."""
    from lensbook.coordinator.coordinator import Coordinator

    divergences: list[Divergence] = []
    client = ReplayClient(record, divergences)
    h = record.header
    started = record.of_kind("coordinator_started")
    info = started[0]["data"] if started else h
    invoked = [r.get("skill") for r in record.operator_records]
    skills = [str(s) for s in info.get("skills") or invoked]
    strategy = str(info.get("strategy") or "agent")
    coordinator = Coordinator(name=record.operator, strategy=strategy)
    session = _ReplaySession(
        record,
        tools,
        divergences,
        name=record.operator,
        context=record.context,
        skills={s: resolve_skill(s) for s in dict.fromkeys(skills)},
        chain=ClientChain([client], attempts=1),
        operator_client=lambda skill: None,
        settings=Settings(max_iterations=int(info.get("max_iterations") or 30)),
        strategy=strategy,
    )
    coordinator._session = session
    result = await coordinator._execute(session, strategy)
    return CoordinatorReplay(result=result, record=record, tools=tools, divergences=divergences)
