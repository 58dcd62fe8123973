"""What a record's lines must look like to be read: the header and each kind of event.

A record is data from disk: it may be cut short, edited by hand, written by a buggy tool or
damaged on purpose. The reader checks every line against these shapes before keeping it, so
that `Run`, its tables, `summary()`, `.result` and `replay` only ever meet values of the types
they use; a line of the wrong shape becomes a listed problem, never an AttributeError later.
Fields a reader does not use are kept as they are (``extra="allow"``): the shapes check what is
read, not everything that is written.
"""

from __future__ import annotations

from typing import Annotated, Any, Literal

from pydantic import BaseModel, ConfigDict, Field, TypeAdapter, ValidationError

from lensbook.clients.base import Message, ModelTurn
from lensbook.limits import (
    COMPACTION_KEEP_LAST,
    COMPACTION_MAX_TOKENS,
    MAX_ITERATIONS,
    MAX_WAIT_SECONDS,
)
from lensbook.types import HealthState, Notification, StopReason, TokenUsage

__all__ = ["Header", "check_event", "check_header"]

# Numbers and flags are strict: JSON `false` is not a time, `"3"` is not a count, because the
# reader goes on to use the values as they are on disk. pandas timestamps end in 2262: a time
# past that (or NaN) is damage, not a date.
Seconds = Annotated[float, Field(strict=True, ge=0, lt=9e9, allow_inf_nan=False)]
Count = Annotated[int, Field(strict=True, ge=0, lt=2**53)]
Flag = Annotated[bool, Field(strict=True)]


class _Shape(BaseModel):
    model_config = ConfigDict(extra="allow")


class Header(_Shape):
    type: Literal["header"]
    format: Literal["lensbook-run"]
    version: Annotated[int, Field(strict=True)]
    run_id: str = ""
    operator: str = ""
    skill: str | None = None
    context: dict[str, Any] = Field(default_factory=dict)
    started_at: Seconds = 0.0
    state: HealthState = "healthy"
    client: str = ""
    lensbook: str | None = None
    max_iterations: Annotated[int, Field(strict=True, ge=1, le=100_000)] = MAX_ITERATIONS
    compaction_max_tokens: Count = COMPACTION_MAX_TOKENS
    compaction_keep_last: Count = COMPACTION_KEEP_LAST
    max_wait_seconds: Seconds = MAX_WAIT_SECONDS


class _Event(_Shape):
    type: Literal["event"]
    kind: str
    at: Seconds
    seq: Annotated[int, Field(strict=True)] = 0
    data: dict[str, Any] = Field(default_factory=dict)


class _Notification(_Shape):
    notification: Notification


class _Snapshot(_Shape):
    id: str
    skill: str | None = None
    data: dict[str, Any] | None = None


class _Completed(_Shape):
    state: HealthState | None = None
    stop_reason: StopReason | None = None
    iterations: Count | None = None
    summary: str | None = None
    error: str | None = None
    usage: TokenUsage | None = None
    client: str | None = None


class _StateChanged(_Shape):
    state: HealthState
    previous: str | None = None
    reason: str | None = None


class _ToolCall(_Shape):
    id: str
    name: str
    arguments: Any = None


class _ToolResult(_Shape):
    id: str
    name: str
    content: str
    is_error: Flag = False


class _ModelRequest(_Shape):
    purpose: str = "investigate"
    messages: list[Message] = Field(default_factory=list)


class _ModelResponse(_Shape):
    purpose: str = "investigate"
    client: str | None = None
    turn: ModelTurn


class _Iteration(_Shape):
    iteration: Count
    max_iterations: Count | None = None


# the kinds whose data a reader uses; any other kind only needs to be an event
_DATA: dict[str, type[_Shape]] = {
    "notification": _Notification,
    "snapshot": _Snapshot,
    "run_completed": _Completed,
    "state_changed": _StateChanged,
    "tool_call": _ToolCall,
    "tool_result": _ToolResult,
    "model_request": _ModelRequest,
    "model_response": _ModelResponse,
    "iteration": _Iteration,
}

_header = TypeAdapter(Header)


def check_header(entry: dict[str, Any]) -> str | None:
    """What is wrong with a header line, or None if it can be read."""
    try:
        _header.validate_python(entry)
    except ValidationError as exc:
        return _first(exc)
    return None


def check_event(entry: dict[str, Any]) -> str | None:
    """What is wrong with an event line, or None if it can be read."""
    try:
        event = _Event.model_validate(entry)
        shape = _DATA.get(event.kind)
        if shape is not None:
            shape.model_validate(event.data)
    except ValidationError as exc:
        kind = entry.get("kind")
        what = f"{kind} event" if isinstance(kind, str) else "event"
        return f"{what[:40]} of the wrong shape: {_first(exc)}"
    except RecursionError:
        return "an event nested too deeply to check"
    return None


def _first(exc: ValidationError) -> str:
    error = exc.errors(include_url=False, include_input=False)[0]
    where = ".".join(str(part) for part in error["loc"]) or "line"
    return f"{where}: {error['msg']}"[:160]
