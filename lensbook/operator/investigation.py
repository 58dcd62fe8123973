"""One investigation: the operator's tool-calling loop between a model and a skill.

    run() -> step() -> client.complete() -> execute(tool calls) -> ... -> done

(Not to be confused with `lensbook._loop`, the lens event loop this runs on.) Limits are
checked before each model call. The loop never raises for a tool's sake: unknown tools, bad
arguments, probes that raise or overrun become error results the model sees (the shared
`tool_runtime` does that; this module keeps the operator's policy: its base tools, probes run
under their budget in the probe pool, the repeated-call guard). It ends when the model calls
`done`, at the iteration limit (after one last turn to sum up), or by an `LLMError` that
carries the notifications already made.
"""

from __future__ import annotations

import asyncio
import json
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from lensbook import events
from lensbook._errors import LLMError
from lensbook._triage import is_vague, triage
from lensbook.clients.base import (
    Message,
    ModelRequest,
    ModelTurn,
    TextBlock,
    ToolCall,
    ToolResult,
    ToolSpec,
)
from lensbook.clients.chain import ClientChain
from lensbook.evidence import BASE_TOOLS
from lensbook.limits import (
    COMPACTION_KEEP_LAST,
    COMPACTION_MAX_TOKENS,
    MAX_ITERATIONS,
    MAX_TOKENS,
    MAX_WAIT_SECONDS,
    MODEL_CALL_TIMEOUT,
)
from lensbook.operator import compaction, history_tool, prompts
from lensbook.operator.probe_pool import DaemonPool
from lensbook.operator.tool_runtime import (
    ToolRefused,
    ToolRuntime,
    ask,
    specs,
    tools_of,
    within_budget,
)
from lensbook.skills import intrusion
from lensbook.skills.base import ProbeTool, SkillLike, outgoing, probe
from lensbook.skills.redact import redact
from lensbook.types import (
    CompletionResult,
    HealthState,
    Notification,
    Severity,
    Snapshot,
    StopReason,
    TokenUsage,
    new_id,
    utcnow,
)

__all__ = ["Investigation", "RunSettings", "ToolRefused", "publish_completed"]

REPEAT_LIMIT = 3


# daemon threads: the interpreter never waits at exit for a probe its budget abandoned
# (16: a probe's budget runs from its submission, so probes must not queue behind windows)
_probe_pool = DaemonPool(max_workers=16, name="lensbook-probe")


def release_probe_threads() -> None:
    """Let the probe threads end (`lensbook.stop()`); the next probe starts one again."""
    _probe_pool.release()


@dataclass(frozen=True)
class RunSettings:
    """The knobs of one run (per-call options already merged over the operator's)."""

    max_iterations: int = MAX_ITERATIONS
    compaction_max_tokens: int = COMPACTION_MAX_TOKENS
    compaction_keep_last: int = COMPACTION_KEEP_LAST
    max_wait_seconds: float = MAX_WAIT_SECONDS
    max_tokens: int = MAX_TOKENS
    model_timeout: float = MODEL_CALL_TIMEOUT

    def __post_init__(self) -> None:
        if self.max_iterations < 1:
            raise ValueError("max_iterations must be at least 1")
        timeout = self.model_timeout
        if isinstance(timeout, bool) or not isinstance(timeout, (int, float)):
            raise ValueError(f"model_timeout must be a number of seconds, not {timeout!r}")
        if not timeout > 0:
            raise ValueError("model_timeout must be a positive number of seconds")


class Investigation:
    """The state and loop of one run of one operator."""

    def __init__(
        self,
        *,
        operator: str,
        skill: SkillLike,
        chain: ClientChain,
        context: dict[str, Any],
        settings: RunSettings,
        state: HealthState = "healthy",
        on_notification: Callable[[Notification], None] | None = None,
        run_id: str | None = None,
    ) -> None:
        self.operator = operator
        self.skill = skill
        self.chain = chain
        self.context = redact(context)
        self.settings = settings
        self.state: HealthState = state
        self.run_id = run_id or new_id()
        self.on_notification = on_notification
        self.system = f"{skill.system_prompt.strip()}\n\n{prompts.OPERATOR_PROTOCOL}".strip()
        self.messages: list[Message] = [
            Message.user(prompts.first_message(self.context, state, skill.title or skill.id))
        ]
        self.snapshots: dict[str, Snapshot] = {}
        #: ids of the history events (flight recorder) this run was shown: citable evidence
        self.history_ids: set[str] = set()
        self.notifications: list[Notification] = []
        self.iteration = 0
        self.usage = TokenUsage()
        self.conversation_tokens = 0
        self.summary: str | None = None
        self.current_action = ""
        self.started_at: datetime = utcnow()
        self._done = False
        self._last_call: tuple[str, str] | None = None
        self._repeats = 0
        self._sent_upto = 0
        self.tools: dict[str, ProbeTool] = tools_of(self, BASE_TOOLS)
        self._base_names = set(self.tools)
        for tool in skill.probes():
            self.tools[tool.name] = tool
        self.tool_specs = specs(self.tools.values())
        self.runtime = ToolRuntime(self.tools, self._emit)

    # -- the loop -------------------------------------------------------------------------

    async def run(self) -> CompletionResult:
        """Run to completion; raises `LLMError` (with the notifications made) if the model fails."""
        await self._triage_if_vague()
        self._emit(
            "run_started",
            context=self.context,
            state=self.state,
            client=self.chain.name,
            skill=self.skill.id,
            skill_title=self.skill.title,
            max_iterations=self.settings.max_iterations,
            compaction_max_tokens=self.settings.compaction_max_tokens,
            compaction_keep_last=self.settings.compaction_keep_last,
            max_wait_seconds=self.settings.max_wait_seconds,
            model_timeout=self.settings.model_timeout,
        )
        try:
            while not self._done:
                if self.iteration >= self.settings.max_iterations:
                    await self._final_turn()
                    return self.result("max_iterations")
                await self.step()
        except LLMError as exc:
            result = self.result("error", error=str(exc))
            self._emit("error", error=str(exc))
            raise LLMError(str(exc), notifications=self.notifications, result=result) from exc
        finally:
            # whatever ended the run (done, limit, timeout, stop, cancel, crash, model error),
            # what its probes switched on in the process is switched off now
            undone = intrusion.undo_owned_by(self.run_id)
            if undone:
                self._emit("intrusions_undone", count=undone)
        return self.result("done")

    async def _triage_if_vague(self) -> None:
        """A reason that names no domain ("is anything wrong?") starts from triage: its ranked
        signals join the context the model (or the offline investigator) reads first."""
        reason = str(self.context.get("reason") or "")
        if "triage" in self.context or not is_vague(reason):
            return
        try:
            swept = await asyncio.get_running_loop().run_in_executor(None, triage)
        except Exception as exc:  # triage is a hint: a failure must not fail the run
            self.context["triage_error"] = f"{type(exc).__name__}: {exc}"
            return
        self.context["triage"] = swept.brief()  # redacted and delimited
        self.messages[0] = Message.user(
            prompts.first_message(self.context, self.state, self.skill.title or self.skill.id)
        )

    async def step(self) -> None:
        """One iteration: compact if needed, ask the model, run the tools it called."""
        if self.should_compact():
            await self._compact()
        self.iteration += 1
        self._emit(
            "iteration", iteration=self.iteration, max_iterations=self.settings.max_iterations
        )
        self.current_action = "waiting for the model"
        turn = await self._ask(self.messages, self.tool_specs, "investigate")
        content = turn.content or (TextBlock(text="(no content)"),)
        self.messages.append(Message(role="assistant", content=content))
        calls = turn.tool_calls
        if not calls:
            self.messages.append(
                Message.user(
                    "Reply with tool calls only. Call done when the investigation is complete."
                )
            )
            return
        results = [await self.execute(call) for call in calls]
        self.messages.append(Message(role="user", content=tuple(results)))

    async def _ask(
        self, messages: list[Message], tools: tuple[ToolSpec, ...], purpose: str
    ) -> ModelTurn:
        request = ModelRequest(
            system=self.system,
            messages=tuple(messages),
            tools=tools,
            max_tokens=self.settings.max_tokens,
            purpose=purpose,  # type: ignore[arg-type]
            skill_id=self.skill.id,
            context=self.context,
            skill=self.skill,
        )
        new = messages[self._sent_upto :] if purpose == "investigate" else messages[-1:]
        self._sent_upto = len(messages)
        turn = await ask(self.chain, request, self._emit, new, timeout=self.settings.model_timeout)
        self.usage = self.usage + turn.usage
        reported = (
            turn.usage.input_tokens
            + turn.usage.cache_read_input_tokens
            + turn.usage.cache_creation_input_tokens
            + turn.usage.output_tokens
        )
        self.conversation_tokens = reported or compaction.estimate_tokens(
            self.system, [*messages, Message(role="assistant", content=turn.content)], tools
        )
        return turn

    def should_compact(self) -> bool:
        """Whether the conversation has grown past the compaction threshold."""
        return self.conversation_tokens > self.settings.compaction_max_tokens

    async def _final_turn(self) -> None:
        """At the iteration limit: one last turn without tools to sum up."""
        self.current_action = "summing up"
        messages = _with_user_text(
            self.messages, prompts.final_turn_prompt(self.settings.max_iterations)
        )
        turn = await self._ask(messages, (), "summarize")
        self.summary = turn.text or None

    async def _compact(self) -> None:
        head, tail = compaction.split(self.messages, self.settings.compaction_keep_last)
        if not head:
            return
        before = self.conversation_tokens
        self.current_action = "compacting the conversation"
        request_messages = [
            Message.user(
                compaction.COMPACTION_PROMPT
                + "\n\nThe investigation so far:\n"
                + compaction.transcript(head)
            )
        ]
        turn = await self._ask(request_messages, (), "compact")
        facts = self._facts()
        text = f"[Summary of the investigation so far]\n{turn.text.strip()}\n\n{facts}"
        self.messages = compaction.merge_into_first_user(text, tail)
        self._sent_upto = 0
        self.conversation_tokens = compaction.estimate_tokens(
            self.system, self.messages, self.tool_specs
        )
        self._emit(
            "compaction",
            tokens_before=before,
            tokens_after=self.conversation_tokens,
            messages_summarised=len(head),
            messages_kept=len(tail),
        )

    def _facts(self) -> str:
        """What must survive compaction verbatim."""
        snaps = ", ".join(f"{s.id} ({s.captured_at:%H:%M:%S})" for s in self.snapshots.values())
        notes = "; ".join(f"{n.id} {n.severity} {n.anomaly_type}" for n in self.notifications)
        return (
            f"Known snapshot ids: {snaps or 'none'}.\nNotifications sent: {notes or 'none'}.\n"
            f"Health state: {self.state}. Iteration {self.iteration} of "
            f"{self.settings.max_iterations}."
        )

    # -- tools ----------------------------------------------------------------------------

    async def execute(self, call: ToolCall) -> ToolResult:
        """Run one tool call; every failure becomes an error result, never an exception."""
        self.current_action = f"calling {call.name}"
        result = await self.runtime.execute(call, self._dispatch)
        if call.name == "get_history" and not result.is_error:
            self.history_ids.update(history_tool.ids_in(result.content))
        return result

    async def _dispatch(self, call: ToolCall) -> tuple[str, bool]:
        """The tool's output text and whether it is an error (a replay overrides this)."""
        return await self.run_tool(call)

    async def run_tool(self, call: ToolCall) -> tuple[str, bool]:
        """Validate and run one tool call for real."""
        return await self.runtime.run(call, check=self._repeated, invoke=self._invoke)

    def _repeated(self, call: ToolCall) -> str | None:
        """The same call again and again gets the same answer: say so instead."""
        signature = (call.name, _canonical(call.arguments))
        self._repeats = self._repeats + 1 if signature == self._last_call else 1
        self._last_call = signature
        if self._repeats < REPEAT_LIMIT:
            return None
        return (
            f"{call.name} was called with the same arguments {self._repeats} times in a "
            "row; its answer will not change. Try another tool, or call done."
        )

    async def _invoke(self, tool: ProbeTool, kwargs: dict[str, Any]) -> Any:
        """Base tools run on the loop; probes under their budget, in the probe pool."""
        if tool.name in self._base_names:
            return await tool.fn(**kwargs)
        return await _run_probe(tool, kwargs, self.run_id)

    async def tool_take_snapshot(self) -> dict[str, Any]:
        """Take a snapshot of the skill's key numbers; returns its id and data."""
        snap = await self.capture_snapshot()
        self.snapshots[snap.id] = snap
        self._emit("snapshot", id=snap.id, skill=self.skill.id, data=snap.data)
        return {"id": snap.id, "captured_at": snap.captured_at.isoformat(), "data": snap.data}

    async def capture_snapshot(self) -> Snapshot:
        """The skill's snapshot, made outgoing (redacted, delimited; a replay overrides this)."""
        loop = asyncio.get_running_loop()
        data = await asyncio.wait_for(loop.run_in_executor(_probe_pool, self.skill.snapshot), 10)
        return Snapshot(data=outgoing(data))

    async def tool_get_snapshot(self, id: str) -> dict[str, Any]:
        """Get one snapshot taken in this run by its id.

        Args:
            id: the snapshot id returned by take_snapshot.
        """
        if id not in self.snapshots:
            raise ToolRefused(f"no snapshot {id!r}; known: {', '.join(self.snapshots) or 'none'}")
        return self.snapshots[id].to_dict()

    async def tool_get_snapshots(self, limit: int = 10, offset: int = 0) -> list[dict[str, Any]]:
        """List this run's snapshots, oldest first.

        Args:
            limit: how many to return (at most 50).
            offset: how many to skip from the oldest.
        """
        snaps = list(self.snapshots.values())[
            max(0, offset) : max(0, offset) + min(max(limit, 0), 50)
        ]
        return [s.to_dict() for s in snaps]

    @probe(max_chars=history_tool.MAX_CHARS + 500)
    async def tool_get_history(
        self, kinds: list[str] | None = None, since_s: float | None = None, limit: int = 40
    ) -> dict[str, Any]:
        """What happened before and during this run (flight recorder): exceptions, thread
        deaths and growth, log and error rates, event-loop stalls. Cite event ids (h-...) in
        snapshot_ids.

        Args:
            kinds: only these event kinds (all if empty).
            since_s: only the last this many seconds.
            limit: at most this many of the newest events (at most 200).
        """
        return history_tool.read(kinds, since_s, limit)

    async def tool_send_notification(
        self,
        anomaly_type: str,
        severity: Severity,
        context: str,
        observation: str,
        snapshot_ids: list[str],
        hypothesis: str | None = None,
    ) -> dict[str, Any]:
        """Report a finding, grounded in snapshots of this run.

        Args:
            anomaly_type: short name of the anomaly, e.g. "memory_leak".
            severity: info, warning or critical.
            context: the facts around the finding, with numbers.
            observation: what was observed, with numbers and the culprit it names.
            snapshot_ids: ids of the snapshots (from take_snapshot) and history events (h-...,
                from get_history) that prove it: at least one.
            hypothesis: what probably causes it (optional).
        """
        unknown = [s for s in snapshot_ids if s not in self.snapshots and s not in self.history_ids]
        if not snapshot_ids or unknown:
            raise ToolRefused(
                "a notification must cite at least one snapshot taken (or history event shown) "
                "in this run"
                + (f"; unknown ids: {', '.join(unknown)}" if unknown else "")
                + "; known snapshot ids: "
                + (", ".join(self.snapshots) or "none (call take_snapshot)")
            )
        note = Notification(
            operator=self.operator,
            anomaly_type=anomaly_type,
            severity=severity,
            context=context,
            observation=observation,
            hypothesis=hypothesis,
            snapshot_ids=tuple(snapshot_ids),
            trace_id=self.run_id,
        )
        self.notifications.append(note)
        self._emit("notification", notification=note.to_dict())
        if self.on_notification is not None:
            self.on_notification(note)
        return {"id": note.id, "status": "sent"}

    async def tool_get_notifications(self) -> list[dict[str, Any]]:
        """The notifications sent in this run, oldest first."""
        return [n.to_dict() for n in self.notifications]

    async def tool_set_state(self, state: HealthState, reason: str) -> dict[str, Any]:
        """Set the operator's health state.

        Args:
            state: healthy, observing, warning or critical.
            reason: why, in one sentence with the deciding numbers.
        """
        previous, self.state = self.state, state
        self._emit("state_changed", previous=previous, state=state, reason=reason)
        return {"state": state, "previous": previous}

    async def tool_think(self, thought: str) -> str:
        """Think out loud; the thought is kept in the conversation and costs no probe.

        Args:
            thought: your reasoning.
        """
        return "noted"

    async def tool_wait(self, seconds: float) -> dict[str, Any]:
        """Wait before looking again (to see a trend); the conversation is kept.

        Args:
            seconds: how long, at most the operator's max_wait_seconds.
        """
        waited = min(max(seconds, 0.0), self.settings.max_wait_seconds)
        self.current_action = f"waiting {waited:g} s"
        await asyncio.sleep(waited)
        return {"waited_seconds": waited}

    async def tool_done(self, summary: str = "") -> str:
        """End the investigation.

        Args:
            summary: a few sentences on what was found.
        """
        self._done = True
        if summary:
            self.summary = summary
        return "investigation complete"

    # -- results and events ---------------------------------------------------------------

    def result(self, stop_reason: StopReason, error: str | None = None) -> CompletionResult:
        return CompletionResult(
            operator=self.operator,
            run_id=self.run_id,
            state=self.state,
            notifications=tuple(self.notifications),
            snapshots=tuple(self.snapshots.values()),
            iterations=self.iteration,
            max_iterations=self.settings.max_iterations,
            stop_reason=stop_reason,
            summary=self.summary,
            error=error,
            usage=self.usage,
            client=self.chain.last_client,
            started_at=self.started_at,
            finished_at=utcnow(),
        )

    def _emit(self, kind: str, **data: Any) -> None:
        events.publish(kind, self.operator, self.run_id, **data)


def publish_completed(operator: str, result: CompletionResult, **extra: Any) -> None:
    """Publish the ``run_completed`` event of a run (an operator's, or a replay's)."""
    events.publish(
        "run_completed",
        operator,
        result.run_id,
        state=result.state,
        stop_reason=result.stop_reason,
        iterations=result.iterations,
        notifications=len(result.notifications),
        error=result.error,
        usage=result.usage.to_dict(),
        client=result.client,
        summary=result.summary,
        **extra,
    )


async def _run_probe(tool: ProbeTool, kwargs: dict[str, Any], run_id: str) -> Any:
    """Run a probe under its budget, its process changes attributed to run `run_id`."""
    if tool.is_async:
        with intrusion.run_scope(run_id):  # the probe's task copies this context
            return await within_budget(tool, tool.fn(**kwargs))

    def call() -> Any:
        with intrusion.run_scope(run_id):
            return tool.fn(**kwargs)

    loop = asyncio.get_running_loop()
    return await within_budget(tool, loop.run_in_executor(_probe_pool, call))


def _canonical(arguments: Any) -> str:
    try:
        return json.dumps(arguments, sort_keys=True, default=str)
    except (TypeError, ValueError):
        return repr(arguments)


def _with_user_text(messages: list[Message], text: str) -> list[Message]:
    """The conversation with `text` added to (or as) the last user turn."""
    if messages and messages[-1].role == "user":
        last = messages[-1]
        return [*messages[:-1], Message(role="user", content=(*last.content, TextBlock(text=text)))]
    return [*messages, Message.user(text)]
