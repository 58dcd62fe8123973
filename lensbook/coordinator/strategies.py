"""How a coordinator works a question: the agent loop, or the cheap three-step pipeline.

    agent:    ask -> run the tools called -> ask ... -> done (refused while operators run)
    pipeline: classify (select_skills) -> run those operators once -> synthesise (insights, done)
              (the operators' statuses and notifications are handed over as tool results)

Both run on the lens loop inside one task that the coordinator bounds by its deadline and
cancels on `cancel()`; both raise `LLMError` when the model fails for good.
"""

from __future__ import annotations

from collections.abc import Callable, Coroutine
from typing import Any

from lensbook.clients.base import Message, TextBlock, ToolCall
from lensbook.coordinator import prompts
from lensbook.coordinator.session import AGENT_TOOLS, Session

__all__ = ["STRATEGIES", "run_agent", "run_pipeline"]

#: synthesis turns the pipeline allows before it takes the model's text as the answer
SYNTHESIS_TURNS = 3


async def run_agent(session: Session) -> None:
    """The tool-calling loop: the model invokes operators, waits, correlates, and ends."""
    session.messages = [
        Message.user(
            prompts.first_message(
                session.briefing(),
                {sid: s.description for sid, s in session.skills.items()},
                session.remaining(),
            )
        )
    ]
    while not session.finished:
        if session.iteration >= session.settings.max_iterations:
            session.stop_reason = "max_iterations"
            return
        await _step(session, prompts.COORDINATOR_PROTOCOL, AGENT_TOOLS, "agent")
    session.stop_reason = "done"


async def _step(session: Session, system: str, tools: tuple[str, ...], stage: str) -> None:
    session.iteration += 1
    session._emit(
        "coordinator_iteration",
        iteration=session.iteration,
        max_iterations=session.settings.max_iterations,
    )
    turn = await session.ask(system, session.messages, tools, stage)
    content = turn.content or (TextBlock(text="(no content)"),)
    session.messages.append(Message(role="assistant", content=content))
    if not turn.tool_calls:
        session.messages.append(
            Message.user("Reply with tool calls only. Call done when the coordination is complete.")
        )
        return
    results = [await session.execute(call, allowed=tools) for call in turn.tool_calls]
    session.messages.append(Message(role="user", content=tuple(results)))


async def run_pipeline(session: Session) -> None:
    """Classify which skills matter, run their operators once, synthesise one answer."""
    offer = {sid: s.description for sid, s in session.skills.items()}
    session.messages = [Message.user(prompts.classify_message(session.briefing(), offer))]
    for _ in range(2):  # one more chance if the model names no known skill
        await _step(session, prompts.PIPELINE_CLASSIFY, ("select_skills",), "classify")
        if session.selected:
            break
    chosen = session.selected or list(session.skills)[:1]
    reason = str(session.context.get("reason") or "look for anything abnormal")
    session.invoke(chosen, reason)
    await session.wait_all()

    # What the operators found reaches the model as tool results (data it reads), never as
    # user text (which it would obey): lensbook makes the two reading calls on its behalf.
    tools = (
        "get_operator_statuses",
        "get_notifications",
        "produce_insight",
        "update_notification_statuses",
        "done",
    )
    reads = (
        ToolCall(id="lensbook_read_statuses", name="get_operator_statuses", arguments={}),
        ToolCall(
            id="lensbook_read_notifications",
            name="get_notifications",
            arguments={"status": "all", "limit": 100},
        ),
    )
    session.messages = [
        Message.user(prompts.synthesis_message(session.context)),
        Message(role="assistant", content=reads),
        Message(
            role="user",
            content=tuple([await session.execute(call, allowed=tools) for call in reads]),
        ),
    ]
    for _ in range(SYNTHESIS_TURNS):
        await _step(session, prompts.PIPELINE_SYNTHESISE, tools, "synthesise")
        if session.finished:
            break
    if not session.finished:
        # the model answered in text (or kept calling tools): its last words are the answer
        last = session.messages[-2] if len(session.messages) >= 2 else None
        text = last.text if last is not None and last.role == "assistant" else ""
        session.summary = session.summary or text or None
        session.finished = True
    session.stop_reason = "done"


STRATEGIES: dict[str, Callable[[Session], Coroutine[Any, Any, None]]] = {
    "agent": run_agent,
    "pipeline": run_pipeline,
}
