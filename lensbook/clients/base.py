"""The LLMClient Protocol and the message types the operator loop speaks.

These are lensbook's own types, not any provider's: the Anthropic adapter (and any other) converts
them to and from its wire format, so the loop, the offline investigator and the scripted test
model all plug in behind `LLMClient`.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator
from typing import TYPE_CHECKING, Annotated, Any, Literal, Protocol, runtime_checkable

from pydantic import BaseModel, ConfigDict, Field

from lensbook.limits import MAX_TOKENS
from lensbook.types import TokenUsage

__all__ = [
    "Block",
    "LLMClient",
    "Message",
    "ModelRequest",
    "ModelTurn",
    "Purpose",
    "TextBlock",
    "ToolCall",
    "ToolResult",
    "ToolSpec",
    "answered_calls",
]


class _Model(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid")


class TextBlock(_Model):
    type: Literal["text"] = "text"
    text: str


class ToolCall(_Model):
    """The model asks for one tool. `arguments` is whatever the model sent (validated later)."""

    type: Literal["tool_call"] = "tool_call"
    id: str
    name: str
    arguments: Any = Field(default_factory=dict)


class ToolResult(_Model):
    type: Literal["tool_result"] = "tool_result"
    tool_call_id: str
    content: str
    is_error: bool = False


Block = Annotated[TextBlock | ToolCall | ToolResult, Field(discriminator="type")]


class _Reads:
    """What a message and a model turn both read from their content."""

    if TYPE_CHECKING:  # a pydantic field of each model, not of this mixin
        content: tuple[TextBlock | ToolCall | ToolResult, ...]

    @property
    def tool_calls(self) -> list[ToolCall]:
        return [b for b in self.content if isinstance(b, ToolCall)]

    @property
    def text(self) -> str:
        return "\n".join(b.text for b in self.content if isinstance(b, TextBlock))


class Message(_Reads, _Model):
    role: Literal["user", "assistant"]
    content: tuple[Block, ...]

    @classmethod
    def user(cls, *blocks: TextBlock | ToolResult | str) -> Message:
        return cls(role="user", content=tuple(_block(b) for b in blocks))

    @classmethod
    def assistant(cls, *blocks: TextBlock | ToolCall | str) -> Message:
        return cls(role="assistant", content=tuple(_block(b) for b in blocks))

    @property
    def tool_results(self) -> list[ToolResult]:
        return [b for b in self.content if isinstance(b, ToolResult)]


def _block(b: TextBlock | ToolCall | ToolResult | str) -> TextBlock | ToolCall | ToolResult:
    return TextBlock(text=b) if isinstance(b, str) else b


def answered_calls(messages: Iterable[Message]) -> Iterator[tuple[ToolCall, ToolResult]]:
    """Each tool result of a conversation with the call it answers, in order (a result that
    answers no call is skipped): how a client that is not a model reads what happened."""
    calls: dict[str, ToolCall] = {}
    for message in messages:
        for call in message.tool_calls:
            calls[call.id] = call
        for result in message.tool_results:
            found = calls.get(result.tool_call_id)
            if found is not None:
                yield found, result


class ToolSpec(_Model):
    """A tool as the model sees it: name, description and JSON schema of its input."""

    name: str
    description: str
    input_schema: dict[str, Any]


Purpose = Literal["investigate", "summarize", "compact", "message"]


class ModelRequest(_Model):
    """One request for the model's next turn.

    `purpose` says why it is asked: the investigation's next step, the final summary after the
    iteration limit, a compaction summary, or an answer to `message()`; `tools` is empty for all
    but the first. `skill_id` and `context` let a client that is not a model (the offline
    investigator) know what it investigates.
    """

    system: str
    messages: tuple[Message, ...]
    tools: tuple[ToolSpec, ...] = ()
    max_tokens: int = MAX_TOKENS
    purpose: Purpose = "investigate"
    skill_id: str = ""
    context: dict[str, Any] = Field(default_factory=dict)
    #: seconds this call may take; the chain sets it from the run's model timeout, and a client
    #: without a timeout of its own uses it
    timeout: float | None = None
    #: the skill object itself, for in-process clients (never serialised or sent)
    skill: Any = Field(default=None, exclude=True, repr=False)


class ModelTurn(_Reads, _Model):
    """The model's answer: text and tool calls in order, why it stopped, and token usage."""

    content: tuple[TextBlock | ToolCall, ...] = ()
    stop_reason: str = "end_turn"
    usage: TokenUsage = TokenUsage()
    model: str = ""

    @classmethod
    def of(
        cls,
        items: Iterable[TextBlock | ToolCall | str],
        *,
        model: str = "",
        usage: TokenUsage | None = None,
    ) -> ModelTurn:
        """A turn of these calls and texts (strings become text), stopped for tool use if it
        calls any: how in-process clients (scripted, offline) answer."""
        content = tuple(TextBlock(text=i) if isinstance(i, str) else i for i in items)
        stop = "tool_use" if any(isinstance(b, ToolCall) for b in content) else "end_turn"
        return cls(content=content, stop_reason=stop, usage=usage or TokenUsage(), model=model)


@runtime_checkable
class LLMClient(Protocol):
    """Anything that can take a `ModelRequest` and produce the model's next `ModelTurn`.

    Failures are raised as `lensbook.ProviderError` (with `retryable` set for rate limits,
    overload and timeouts); the client chain retries, falls back, and finally raises `LLMError`.
    """

    name: str

    async def complete(self, request: ModelRequest) -> ModelTurn: ...
