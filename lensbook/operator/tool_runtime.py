"""The tool runtime both agent loops share: asking the model and running the tools it calls.

    tools = tools_of(self, ("think", "done"))              # typed `tool_<name>` methods
    runtime = ToolRuntime(tools, self._emit)
    turn = await ask(chain, request, self._emit, new_messages)
    result = await runtime.execute(call, runtime.run)       # a ToolResult, never an exception

The operator's investigation and the coordinator's session differ in policy only: which tools a
turn may call, how a tool is invoked (a probe under its time budget in the probe pool, a base
tool on the loop), which exceptions are a refusal the model reads as it is, how much of a
result an event keeps, and the names of their events. Everything else lives here once, so the
two loops cannot drift: tool lookup, argument parsing and validation, error results, output
rendering (redacted, capped), and the ``tool_call`` / ``tool_result`` / ``model_request`` /
``model_response`` events, whose arguments are made JSON-safe and redacted before they leave.
"""

from __future__ import annotations

import asyncio
import json
import time
from collections.abc import Awaitable, Callable, Iterable, Mapping, Sequence
from typing import Any

from lensbook._errors import contained, containing
from lensbook.clients.base import Message, ModelRequest, ModelTurn, ToolCall, ToolResult, ToolSpec
from lensbook.clients.chain import ClientChain
from lensbook.skills.base import ProbeTool, jsonable, raised, render_output
from lensbook.skills.redact import clip, redact

__all__ = [
    "Emit",
    "Overran",
    "ToolRefused",
    "ToolRuntime",
    "ask",
    "event_arguments",
    "parse_arguments",
    "specs",
    "tools_of",
    "within_budget",
]

#: how a loop publishes one event: ``emit(kind, **data)``
Emit = Callable[..., None]
#: how a loop invokes a validated tool: ``await invoke(tool, kwargs)``
Invoke = Callable[[ProbeTool, dict[str, Any]], Awaitable[Any]]
#: what runs one call to (content, is_error): the runtime's `run`, or a loop's override
Dispatch = Callable[[ToolCall], Awaitable[tuple[str, bool]]]


class ToolRefused(Exception):
    """A loop's own tool refuses a call; the message goes back to the model."""


class Overran(Exception):
    """A tool ran past its time budget and was abandoned (see `within_budget`)."""


async def within_budget(tool: ProbeTool, work: Awaitable[Any]) -> Any:
    """`work` given `tool`'s time budget; past it, `Overran` (the work is abandoned)."""
    try:
        return await asyncio.wait_for(containing(work), tool.budget)
    except asyncio.TimeoutError:
        raise Overran(tool.name) from None


def tools_of(owner: object, names: Iterable[str]) -> dict[str, ProbeTool]:
    """The tools of `owner`'s ``tool_<name>`` methods; schemas come from their signatures."""
    return {n: ProbeTool.from_function(getattr(owner, f"tool_{n}"), name=n) for n in names}


def specs(tools: Iterable[ProbeTool]) -> tuple[ToolSpec, ...]:
    """The tools as the model sees them."""
    return tuple(
        ToolSpec(name=t.name, description=t.description, input_schema=t.input_schema) for t in tools
    )


def parse_arguments(arguments: Any) -> Any:
    """A call's arguments, decoded when the model sent them as JSON text (`ValueError` if not
    JSON); validation against the tool's schema comes after."""
    if isinstance(arguments, str):
        try:
            return json.loads(arguments) if arguments.strip() else {}
        except json.JSONDecodeError as exc:
            raise ValueError(f"arguments are not valid JSON ({exc.msg} at {exc.pos})") from None
    return arguments


def event_arguments(arguments: Any) -> Any:
    """A call's arguments as an event may carry them: JSON-safe first, then redacted (bytes or
    objects from an in-process client would otherwise pass the redactor untouched)."""
    return redact(jsonable(arguments))


async def _call_directly(tool: ProbeTool, kwargs: dict[str, Any]) -> Any:
    return await tool.fn(**kwargs)


class ToolRuntime:
    """Runs one loop's tool calls: every failure becomes an error result the model reads.

    `refusals` are the exceptions whose message is the whole answer (a loop's own refusals);
    any other exception is rendered by `raised`, its text delimited as the process's. Output is
    capped at `max_chars` (None: each tool's own cap); events keep `event_chars` of it (None:
    all, as a replay needs for the operator's probes).
    """

    def __init__(
        self,
        tools: Mapping[str, ProbeTool],
        emit: Emit,
        *,
        event_prefix: str = "",
        refusals: tuple[type[Exception], ...] = (ToolRefused,),
        max_chars: int | None = None,
        event_chars: int | None = None,
    ) -> None:
        self.tools = tools  # the loop's own mapping: a tool it adds later is offered too
        self.emit = emit
        self.call_kind = f"{event_prefix}tool_call"
        self.result_kind = f"{event_prefix}tool_result"
        self.refusals = refusals
        self.max_chars = max_chars
        self.event_chars = event_chars

    async def execute(self, call: ToolCall, dispatch: Dispatch) -> ToolResult:
        """Publish the call, run it through `dispatch`, publish and return its result."""
        self.emit(
            self.call_kind, id=call.id, name=call.name, arguments=event_arguments(call.arguments)
        )
        started = time.perf_counter()
        content, is_error = await dispatch(call)
        # a lone surrogate (echoed from a hostile argument or read from the process) cannot be
        # encoded for a record or a provider: it would end the run; replace it instead
        content = content.encode("utf-8", "replace").decode("utf-8")
        shown = content if self.event_chars is None else clip(content, self.event_chars)
        self.emit(
            self.result_kind,
            id=call.id,
            name=call.name,
            is_error=is_error,
            content=shown,
            bytes=len(content.encode()),
            seconds=round(time.perf_counter() - started, 4),
        )
        return ToolResult(tool_call_id=call.id, content=content, is_error=is_error)

    async def run(
        self,
        call: ToolCall,
        *,
        allowed: Sequence[str] | None = None,
        check: Callable[[ToolCall], str | None] | None = None,
        invoke: Invoke = _call_directly,
    ) -> tuple[str, bool]:
        """Validate and run one call: (output text, whether it is an error).

        `allowed` limits the tools this turn may call; `check` is a loop's guard before the
        arguments are read (its message, or None to go on).
        """
        offered = list(self.tools) if allowed is None else list(allowed)
        tool = self.tools.get(call.name) if call.name in offered else None
        if tool is None:
            return f"unknown tool {call.name!r}; available tools: {', '.join(offered)}", True
        refusal = check(call) if check is not None else None
        if refusal is not None:
            return refusal, True
        try:
            kwargs = tool.validate(parse_arguments(call.arguments))
        except ValueError as exc:
            return f"{call.name}: {exc}", True
        try:
            value = await invoke(tool, kwargs)
        except self.refusals as exc:
            return f"{call.name}: {exc}", True
        except Overran:
            return (
                f"{call.name} overran its time budget of {tool.budget:g} s and was abandoned",
                True,
            )
        except BaseException as exc:  # a probe's SystemExit too: it would end the lens loop
            if not contained(exc):
                raise
            return raised(call.name, exc), True
        return render_output(value, self.max_chars or tool.max_chars), False


async def ask(
    chain: ClientChain,
    request: ModelRequest,
    emit: Emit,
    new: Sequence[Message],
    *,
    timeout: float | None = None,
    **tags: Any,
) -> ModelTurn:
    """The model's next turn, between a ``model_request`` event (carrying the messages `new`
    since the loop last asked, so a record replays) and a ``model_response`` event; `tags`
    (a coordinator's stage) go on both."""
    emit(
        "model_request",
        purpose=request.purpose,
        **tags,
        messages=[m.model_dump(mode="json", fallback=jsonable) for m in new],
    )
    started = time.perf_counter()
    turn = await chain.complete(request, on_event=emit, timeout=timeout)
    emit(
        "model_response",
        purpose=request.purpose,
        **tags,
        client=chain.last_client,
        turn=turn.model_dump(mode="json", fallback=jsonable),
        seconds=round(time.perf_counter() - started, 4),
    )
    return turn
