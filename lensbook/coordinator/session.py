"""One coordinator run: its operators, the notifications they send, its insights, and the tools.

The tools are typed async methods (``tool_<name>``) turned into tools by
`ProbeTool.from_function`, as the operator's base tools are: their schemas come from their
signatures and docstrings. They run in the tool runtime the operator's loop shares
(`lensbook.operator.tool_runtime`): a tool never raises into the loop, a refusal, bad arguments
or a failure become error results the model reads, and the ``coordinator_tool_call`` events
carry arguments redacted as the operator's ``tool_call`` events do. This module keeps the
coordinator's policy: which tools a stage offers, the output cap, and its event names.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any, Literal

from lensbook import events
from lensbook._errors import OperatorCrashed, RunFailed
from lensbook.clients.base import Message, ModelRequest, ModelTurn, ToolCall, ToolResult, ToolSpec
from lensbook.clients.chain import ClientChain
from lensbook.coordinator import prompts
from lensbook.coordinator.insights import (
    Confidence,
    CoordinatorResult,
    CoordinatorStopReason,
    CorrelationType,
    Insight,
    NotificationStatus,
    TrackedNotification,
)
from lensbook.limits import (
    COORDINATOR_MAX_ITERATIONS,
    MAX_TOKENS,
    MAX_WAIT_SECONDS,
    OPERATOR_TIMEOUT,
)
from lensbook.operator.actor import Operator
from lensbook.operator.tool_runtime import ToolRefused, ToolRuntime, ask, specs, tools_of
from lensbook.skills.base import SkillLike
from lensbook.skills.redact import clip, redact
from lensbook.skills.untrusted import from_process
from lensbook.types import CompletionResult, Notification, TokenUsage, new_id, utcnow

__all__ = ["AGENT_TOOLS", "OperatorRun", "Session", "Settings"]

_log = logging.getLogger("lensbook.coordinator")

#: the tools of the agent strategy, in the order the model sees them
AGENT_TOOLS = (
    "invoke_operators",
    "wait",
    "get_operator_statuses",
    "get_notifications",
    "update_notification_statuses",
    "produce_insight",
    "message_operator",
    "think",
    "done",
)

#: seconds the coordinator gives its operators, all at once, to stop and hand back their runs
SHUTDOWN_SECONDS = 5.0
#: how long after the coordinator's deadline an operator's own time limit ends its run: as
#: long as the coordinator gives its operators to stop, so the deadline's stop ("stopped")
#: reaches them first even on a loaded machine (at 2 s a clean-clone CI run saw "timeout")
DEADLINE_BACKSTOP_SECONDS = SHUTDOWN_SECONDS
#: cap on one tool's output the model sees
TOOL_MAX_CHARS = 12_000
#: how much of a tool's output its ``coordinator_tool_result`` event keeps
EVENT_CHARS = 2000


@dataclass(frozen=True)
class Settings:
    """The knobs of one coordinator run."""

    max_iterations: int = COORDINATOR_MAX_ITERATIONS
    #: seconds each operator run may take (capped by what is left of the deadline)
    operator_timeout: float = OPERATOR_TIMEOUT
    operator_max_iterations: int | None = None
    #: the longest one `wait` call may sleep
    max_wait_seconds: float = MAX_WAIT_SECONDS
    #: seconds for the whole run (None: no deadline; the iteration limit still ends it)
    deadline: float | None = None
    #: operator runs one coordinator run may start in all
    max_invocations: int = 24
    max_tokens: int = MAX_TOKENS

    def __post_init__(self) -> None:
        if self.max_iterations < 1:
            raise ValueError("max_iterations must be at least 1")
        if self.deadline is not None and self.deadline <= 0:
            raise ValueError("deadline must be a positive number of seconds")


@dataclass
class OperatorRun:
    """One skill's operator inside a coordinator run, and its latest run."""

    skill: str
    operator: Operator
    task: asyncio.Task[None] | None = None
    result: CompletionResult | None = None
    error: str | None = None
    crashed: bool = False
    invocations: int = 0
    reasons: list[str] = field(default_factory=list)

    @property
    def running(self) -> bool:
        return self.task is not None and not self.task.done()


OperatorClient = Callable[[str], Any]


class Session:
    """The state of one coordinator run and the tools its model calls."""

    def __init__(
        self,
        *,
        name: str,
        context: dict[str, Any],
        skills: Mapping[str, SkillLike],
        chain: ClientChain,
        operator_client: OperatorClient,
        settings: Settings,
        strategy: str = "agent",
        on_notification: Callable[[TrackedNotification], Any] | None = None,
        on_insight: Callable[[Insight], Any] | None = None,
    ) -> None:
        self.name = name
        self.run_id = new_id()
        self.context = redact(context)
        self.skills = dict(skills)
        #: triage's strongest signals, swept before the strategy starts (see lensbook._triage)
        self.triage: list[dict[str, Any]] = []
        self.chain = chain
        self.operator_client = operator_client
        self.settings = settings
        self.strategy = strategy
        self.on_notification = on_notification
        self.on_insight = on_insight
        self.notes: dict[str, TrackedNotification] = {}
        self.insights: list[Insight] = []
        self.runs: dict[str, OperatorRun] = {}
        self.iteration = 0
        self.usage = TokenUsage()
        self.summary: str | None = None
        self.finished = False
        self.stop_reason: CoordinatorStopReason = "done"
        self.started_at = utcnow()
        self._started = time.monotonic()
        self._skill_of: dict[str, str] = {}
        # set when something changed since the model last looked (wait returns at once then)
        self.changed = asyncio.Event()
        self.messages: list[Message] = []
        self._sent_upto = 0
        self._sent_list: list[Message] | None = None
        self.tools = tools_of(self, (*AGENT_TOOLS, "select_skills"))
        # a ValueError of the coordinator's own tools (a bad insight) is a refusal too
        self.runtime = ToolRuntime(
            self.tools,
            self._emit,
            event_prefix="coordinator_",
            refusals=(ToolRefused, ValueError),
            max_chars=TOOL_MAX_CHARS,
            event_chars=EVENT_CHARS,
        )
        self.selected: list[str] | None = None

    # -- time ------------------------------------------------------------------------------

    def remaining(self) -> float | None:
        """Seconds left before the deadline (None without one)."""
        if self.settings.deadline is None:
            return None
        return max(0.0, self.settings.deadline - (time.monotonic() - self._started))

    # -- the model -------------------------------------------------------------------------

    def specs(self, names: Iterable[str]) -> tuple[ToolSpec, ...]:
        return specs(self.tools[n] for n in names)

    def briefing(self) -> dict[str, Any]:
        """The question's context, with triage's signals when there are any."""
        return {**self.context, "triage": self.triage} if self.triage else dict(self.context)

    async def ask(
        self, system: str, messages: list[Message], tools: Iterable[str], stage: str
    ) -> ModelTurn:
        """The model's next turn (purpose "investigate", skill_id "coordinator")."""
        request = ModelRequest(
            system=system,
            messages=tuple(messages),
            tools=self.specs(tools),
            max_tokens=self.settings.max_tokens,
            purpose="investigate",
            skill_id=prompts.SKILL_ID,
            context={
                **self.briefing(),
                "strategy": self.strategy,
                "stage": stage,
                "available_skills": list(self.skills),
            },
        )
        # recorded like an operator's turns, so the record replays (the purpose is the stage)
        # the pipeline starts a fresh conversation for its synthesis: then all of it is new
        fresh = messages is not self._sent_list
        new = messages if fresh else messages[self._sent_upto :]
        self._sent_list = messages
        self._sent_upto = len(messages)
        turn = await ask(self.chain, request, self._emit, new, stage=stage)
        self.usage = self.usage + turn.usage
        return turn

    async def execute(self, call: ToolCall, allowed: tuple[str, ...] = AGENT_TOOLS) -> ToolResult:
        """Run one tool call; every failure becomes an error result, never an exception."""

        async def dispatch(c: ToolCall) -> tuple[str, bool]:
            return await self.runtime.run(c, allowed=allowed)

        return await self.runtime.execute(call, dispatch)

    # -- operators -------------------------------------------------------------------------

    def run_of(self, skill: str) -> OperatorRun:
        """The skill's operator in this run, created (idle) on first use."""
        found = self.runs.get(skill)
        if found is not None:
            return found
        options: dict[str, Any] = {"max_wait_seconds": self.settings.max_wait_seconds}
        if self.settings.operator_max_iterations:
            options["max_iterations"] = self.settings.operator_max_iterations
        op = Operator(
            self.skills[skill],
            name=f"{self.name}.{skill}",
            client=self.operator_client(skill),
            on_notification=self._on_note,
            **options,
        )
        self._skill_of[op.name] = skill
        run = self.runs[skill] = OperatorRun(skill=skill, operator=op)
        return run

    def invoke(self, skills: Iterable[str], reason: str) -> dict[str, list[str]]:
        """Start the operators of `skills` (those not running) with `reason` as their context."""
        started: list[str] = []
        running: list[str] = []
        unknown: list[str] = []
        refused: list[str] = []
        total = sum(r.invocations for r in self.runs.values())
        for skill in dict.fromkeys(skills):
            if skill not in self.skills:
                unknown.append(skill)
                continue
            run = self.run_of(skill)
            if run.running:
                running.append(skill)
                continue
            if total >= self.settings.max_invocations:
                refused.append(skill)
                continue
            total += 1
            run.invocations += 1
            run.reasons.append(reason)
            run.result, run.error, run.crashed = None, None, False
            context: dict[str, Any] = {"reason": reason, "requested_by": "lensbook coordinator"}
            question = self.context.get("reason")
            if question and question != reason:
                context["question"] = question
            # the sweep was done once for the whole coordination: the operators start from it
            context["triage"] = [s for s in self.triage if s.get("skill") != skill][:5]
            run.task = asyncio.get_running_loop().create_task(
                self._serve(run, context), name=f"lensbook-{run.operator.name}"
            )
            started.append(skill)
        if started:
            self._emit(
                "coordinator_operators_invoked",
                skills=started,
                reason=reason,
                operators={s: self.runs[s].operator.name for s in started},
            )
        return {
            "started": started,
            "already_running": running,
            "unknown": unknown,
            "over_limit": refused,
        }

    async def _serve(self, run: OperatorRun, context: dict[str, Any]) -> None:
        options: dict[str, Any] = {"timeout": self.settings.operator_timeout}
        left = self.remaining()
        if left is not None:
            # the deadline stops the operators itself (stop reason "stopped"); their own time
            # limit is a backstop just after it, so the two do not race
            backstop = left + DEADLINE_BACKSTOP_SECONDS
            options["timeout"] = max(1.0, min(self.settings.operator_timeout, backstop))
        op = run.operator
        try:
            result = await op.arun_result(context, **options)
        except OperatorCrashed as exc:
            run.crashed, run.error = True, str(exc)
            result = exc.result or self._empty_result(run, str(exc))
        except RunFailed as exc:
            run.error = str(exc)
            result = exc.result or self._empty_result(run, str(exc))
        except asyncio.CancelledError:
            raise
        except Exception as exc:  # the operator must not take the coordinator down with it
            _log.exception("operator %s failed", op.name)
            run.error = f"{type(exc).__name__}: {exc}"
            result = self._empty_result(run, run.error)
        run.result = result
        self._emit(
            "coordinator_operator_finished",
            skill=run.skill,
            operator_name=op.name,
            operator_run_id=result.run_id,
            record=_record_name(result.run_id),
            state=result.state,
            stop_reason=result.stop_reason,
            crashed=run.crashed,
            error=run.error or result.error,
            notifications=len(result.notifications),
        )
        self.changed.set()

    def _empty_result(self, run: OperatorRun, error: str) -> CompletionResult:
        return CompletionResult(
            operator=run.operator.name,
            run_id="",
            state=run.operator.state,
            stop_reason="error",
            error=error,
        )

    def _on_note(self, note: Notification) -> None:
        """An operator of this run sent a notification (called on the lens loop)."""
        skill = self._skill_of.get(note.operator, note.operator)
        tracked = TrackedNotification(notification=note, skill=skill)
        self.notes[note.id] = tracked
        self._emit("coordinator_notification", skill=skill, notification=note.to_dict())
        self.changed.set()
        if self.on_notification is not None:
            _call(self.on_notification, tracked)

    def running(self) -> list[OperatorRun]:
        return [r for r in self.runs.values() if r.running]

    async def wait_all(self) -> None:
        """Until every started operator run has ended (the deadline is enforced above)."""
        tasks = [r.task for r in self.runs.values() if r.task is not None]
        if tasks:
            await asyncio.wait(tasks)

    async def shutdown(self) -> None:
        """Stop this run's operators; their runs hand back what they found.

        Stops are concurrent and bounded: an operator whose run does not end when stopped
        (see `SHUTDOWN_SECONDS`) is left behind rather than keeping the caller waiting.
        """
        ops = [r.operator for r in self.runs.values()]
        if ops:
            stops = [asyncio.ensure_future(op.astop()) for op in ops]
            _, late = await asyncio.wait(stops, timeout=SHUTDOWN_SECONDS)
            for stop in late:
                _log.warning("an operator of %s did not stop in time; leaving it", self.name)
                stop.add_done_callback(lambda f: f.cancelled() or f.exception())
        tasks = [r.task for r in self.runs.values() if r.task is not None and not r.task.done()]
        if tasks:
            _, late_runs = await asyncio.wait(tasks, timeout=1.0)
            for task in late_runs:
                task.cancel()
        for run in self.runs.values():
            if run.task is not None and run.task.done() and run.result is None:
                run.error = run.error or "stopped without a result"
            if run.result is None and run.invocations:
                run.result = self._empty_result(run, run.error or "stopped without a result")
        self._emit("coordinator_operators_stopped", skills=[r.skill for r in self.runs.values()])

    # -- views for the model ---------------------------------------------------------------

    def operator_status(self, run: OperatorRun) -> dict[str, Any]:
        status = run.operator.status()
        row: dict[str, Any] = {
            "skill": run.skill,
            "running": run.running,
            "state": status.state,
            "iteration": status.iteration,
            "notifications": sum(1 for n in self.notes.values() if n.skill == run.skill),
            "invocations": run.invocations,
        }
        if run.result is not None and not run.running:
            row["stop_reason"] = run.result.stop_reason
            if run.result.summary:
                row["summary"] = from_process(clip(run.result.summary, 400))
        if run.error:
            row["error"] = clip(run.error, 400)
        if run.crashed:
            row["crashed"] = True
        return row

    def statuses(self) -> list[dict[str, Any]]:
        return [self.operator_status(r) for r in self.runs.values() if r.invocations]

    def unread(self) -> int:
        return sum(1 for n in self.notes.values() if n.status == "unread")

    def note_view(self, tracked: TrackedNotification) -> dict[str, Any]:
        n = tracked.notification
        return {
            "id": n.id,
            "skill": tracked.skill,
            "anomaly_type": n.anomaly_type,
            "severity": n.severity,
            # written by an operator's model from what the process showed it: data, delimited
            "context": from_process(clip(n.context, 800)),
            "observation": from_process(clip(n.observation, 1200)),
            "hypothesis": from_process(clip(n.hypothesis, 600)) if n.hypothesis else None,
            "detected_at": n.detected_at.isoformat(),
            "status": tracked.status,
        }

    # -- tools -----------------------------------------------------------------------------

    async def tool_invoke_operators(self, skills: list[str], context: str) -> dict[str, Any]:
        """Start operators on these skills; they investigate in the background and notify.

        Args:
            skills: skill ids to investigate (from the list in the first message).
            context: what each operator should look for, in a sentence (its reason).
        """
        unknown = [s for s in skills if s not in self.skills]
        if not skills or len(unknown) == len(skills):
            raise ToolRefused(
                f"no known skill in {skills}; available skills: {', '.join(self.skills)}"
            )
        outcome: dict[str, Any] = dict(self.invoke(skills, context))
        if not outcome["started"] and outcome["over_limit"]:
            raise ToolRefused(
                f"this run may start at most {self.settings.max_invocations} operator runs; "
                "work with what the operators found"
            )
        outcome["operators"] = self.statuses()
        self.changed.clear()
        return outcome

    async def tool_wait(self, seconds: float = 10.0) -> dict[str, Any]:
        """Let the operators work; returns early when a notification arrives or one finishes.

        Args:
            seconds: the longest to wait (capped by the coordinator's max_wait_seconds).
        """
        before = len(self.notes)
        started = time.monotonic()
        if not self.running():
            note = "no operator is running: read get_notifications, then produce insights or done"
        else:
            limit = min(max(seconds, 0.0), self.settings.max_wait_seconds)
            if not self.changed.is_set():
                with contextlib.suppress(asyncio.TimeoutError):
                    await asyncio.wait_for(self.changed.wait(), limit)
            note = ""
        self.changed.clear()
        out: dict[str, Any] = {
            "waited_seconds": round(time.monotonic() - started, 2),
            "new_notifications": len(self.notes) - before,
            "unread": self.unread(),
            "operators": self.statuses(),
        }
        if note:
            out["note"] = note
        return out

    async def tool_get_operator_statuses(self) -> dict[str, Any]:
        """Each invoked operator: running or not, health state, iteration, findings, errors."""
        self.changed.clear()
        return {
            "operators": self.statuses(),
            "not_invoked": [s for s in self.skills if s not in self.runs],
            "unread": self.unread(),
        }

    async def tool_get_notifications(
        self,
        status: Literal["unread", "acknowledged", "resolved", "all"] = "unread",
        limit: int = 50,
    ) -> dict[str, Any]:
        """The operators' notifications, oldest first, filtered by status.

        Args:
            status: unread, acknowledged, resolved, or all.
            limit: how many to return (at most 100).
        """
        chosen = [n for n in self.notes.values() if status == "all" or n.status == status]
        shown = chosen[: max(1, min(limit, 100))]
        self.changed.clear()
        return {
            "status": status,
            "count": len(chosen),
            "notifications": [self.note_view(n) for n in shown],
            "operators_running": [r.skill for r in self.running()],
        }

    async def tool_update_notification_statuses(
        self, ids: list[str], status: NotificationStatus, reason: str = ""
    ) -> dict[str, Any]:
        """Mark notifications as unread, acknowledged (seen, no action) or resolved (explained).

        Args:
            ids: notification ids from get_notifications.
            status: unread, acknowledged or resolved.
            reason: why, in a sentence.
        """
        unknown = [i for i in ids if i not in self.notes]
        if not ids or len(unknown) == len(ids):
            raise ToolRefused(f"no known notification id in {ids}; call get_notifications")
        updated = [i for i in dict.fromkeys(ids) if i in self.notes]
        self._set_status(updated, status, reason)
        self._emit("coordinator_notification_status", ids=updated, status=status, reason=reason)
        return {"updated": updated, "status": status, "unknown": unknown}

    def _set_status(self, ids: Iterable[str], status: NotificationStatus, reason: str) -> None:
        for i in ids:
            self.notes[i] = self.notes[i].model_copy(update={"status": status, "reason": reason})

    async def tool_produce_insight(
        self,
        notification_ids: list[str],
        correlation_type: CorrelationType,
        summary: str,
        matched_observations: list[str],
        hypothesis_grounded: bool,
        confidence: Confidence,
        root_cause_hypothesis: str | None = None,
    ) -> dict[str, Any]:
        """Record an insight linking notifications; they are then marked resolved.

        Args:
            notification_ids: the notifications it links (ids from get_notifications).
            correlation_type: temporal (same time window), causal (one explains the other by a
                known mechanism) or symptomatic (one problem seen from several domains).
            summary: the insight in one or two sentences.
            matched_observations: the observations that match, quoted with their numbers.
            hypothesis_grounded: whether the root-cause hypothesis rests on that evidence.
            confidence: high, medium or low; high only for a known mechanism with evidence.
            root_cause_hypothesis: the likely root cause, if there is one.
        """
        ids = list(dict.fromkeys(notification_ids))
        unknown = [i for i in ids if i not in self.notes]
        if not ids or unknown:
            raise ToolRefused(
                "an insight must link known notifications"
                + (f"; unknown ids: {', '.join(unknown)}" if unknown else "")
                + "; call get_notifications for their ids"
            )
        skills = tuple(dict.fromkeys(self.notes[i].skill for i in ids))
        insight = Insight(
            notification_ids=tuple(ids),
            skills=skills,
            correlation_type=correlation_type,
            summary=summary,
            matched_observations=tuple(matched_observations),
            hypothesis_grounded=hypothesis_grounded,
            root_cause_hypothesis=root_cause_hypothesis or None,
            confidence=confidence,
        )
        self.insights.append(insight)
        self._set_status(ids, "resolved", f"explained by insight {insight.id}")
        self._emit("insight", insight=insight.to_dict())
        if self.on_insight is not None:
            _call(self.on_insight, insight)
        return {"id": insight.id, "status": "produced", "resolved": ids, "skills": list(skills)}

    async def tool_message_operator(self, skill: str, message: str) -> dict[str, Any]:
        """Ask one operator a question about its investigation (its conversation is kept).

        Args:
            skill: the operator's skill id.
            message: the question.
        """
        if skill not in self.skills:
            raise ToolRefused(f"no skill {skill!r}; available skills: {', '.join(self.skills)}")
        op = self.run_of(skill).operator
        left = self.remaining()
        timeout = 60.0 if left is None else max(1.0, min(60.0, left))
        answer = await op.amessage(message, timeout=timeout)
        return answer.to_dict()

    async def tool_think(self, thought: str) -> str:
        """Think out loud; the thought is kept in the conversation and costs nothing.

        Args:
            thought: your reasoning.
        """
        return "noted"

    async def tool_done(self, summary: str = "") -> str:
        """End the coordination (refused while operators still run).

        Args:
            summary: the answer to the question, with the insights that support it.
        """
        running = self.running()
        if running:
            names = ", ".join(
                f"{r.skill} (iteration {r.operator.status().iteration})" for r in running
            )
            raise ToolRefused(
                f"{len(running)} operator(s) still running: {names}. Call wait until they "
                "finish; done is refused while operators run."
            )
        self.finished = True
        self.summary = summary or self.summary
        return "coordination complete"

    async def tool_select_skills(self, skills: list[str], reason: str = "") -> dict[str, Any]:
        """Choose the skills whose operators answer the question (pipeline strategy).

        Args:
            skills: skill ids, as few as answer the question.
            reason: why these, in a sentence.
        """
        known = [s for s in dict.fromkeys(skills) if s in self.skills]
        if not known:
            raise ToolRefused(f"no known skill in {skills}; available: {', '.join(self.skills)}")
        self.selected = known
        return {"selected": known, "ignored": [s for s in skills if s not in self.skills]}

    # -- the result ------------------------------------------------------------------------

    def result(
        self, stop_reason: CoordinatorStopReason, error: str | None = None
    ) -> CoordinatorResult:
        operator_results = {
            skill: run.result for skill, run in self.runs.items() if run.result is not None
        }
        return CoordinatorResult(
            run_id=self.run_id,
            context=self.context,
            strategy="pipeline" if self.strategy == "pipeline" else "agent",
            insights=tuple(self.insights),
            operator_results=operator_results,
            notifications=tuple(self.notes.values()),
            stop_reason=stop_reason,
            summary=self.summary,
            error=error,
            iterations=self.iteration,
            usage=self.usage,
            client=self.chain.last_client,
            started_at=self.started_at,
            finished_at=utcnow(),
        )

    def _emit(self, kind: str, **data: Any) -> None:
        events.publish(kind, self.name, self.run_id, **data)


def _record_name(run_id: str) -> str | None:
    """The file name of an operator run's record (None when it was not recorded)."""
    from lensbook.records import writer

    path = writer.path_of(run_id) if run_id else None
    return path.name if path is not None else None


def _call(callback: Callable[[Any], Any], value: Any) -> None:
    try:
        callback(value)
    except Exception:
        _log.exception("coordinator callback %r failed", callback)
