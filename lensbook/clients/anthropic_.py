"""The Anthropic Messages API adapter: lensbook's message types to the wire and back.

    client = AnthropicClient(model="claude-sonnet-5")        # reads ANTHROPIC_API_KEY
    lensbook.run("runtime", reason="...", client=client)

It is the only module that knows the Messages API. Requests carry prompt-caching breakpoints on
the system prompt and on the last tool definition, so the stable prefix of a long investigation
(system + tools) is cached between turns. Every SDK failure leaves as `lensbook.ProviderError`,
`retryable` for rate limits, overload, server errors, timeouts, lost connections and answers
that cannot be decoded (see `_sdk`).
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from typing import Any

import anthropic
from anthropic.types import (
    CacheControlEphemeralParam,
    MessageParam,
    TextBlockParam,
    ToolParam,
    ToolResultBlockParam,
    ToolUseBlockParam,
)

from lensbook._errors import ProviderError
from lensbook.clients._sdk import (
    SDKClient,
    call_as_text,
    call_timeout,
    expect_answer,
    sdk_errors,
    wire_safe,
)
from lensbook.clients.base import (
    Block,
    Message,
    ModelRequest,
    ModelTurn,
    TextBlock,
    ToolCall,
    ToolResult,
    ToolSpec,
)
from lensbook.clients.registry import Provider
from lensbook.types import TokenUsage

__all__ = ["DEFAULT_MODEL", "PROVIDER", "AnthropicClient"]

DEFAULT_MODEL = "claude-sonnet-5"

_EPHEMERAL: CacheControlEphemeralParam = {"type": "ephemeral"}

# The API rejects empty text blocks; an empty turn still needs some content.
_EMPTY_TEXT = "(empty)"

_UserBlock = TextBlockParam | ToolResultBlockParam
_AssistantBlock = TextBlockParam | ToolUseBlockParam


class AnthropicClient(SDKClient):
    """An `LLMClient` that asks Claude through the official SDK's `AsyncAnthropic`.

    Options (as `client_registry` passes them): `model`, `api_key` (default: the SDK reads
    ANTHROPIC_API_KEY), `base_url`, `timeout` in seconds per request (default: the run's model
    timeout, see `lensbook.limits`), `max_tokens` (overrides the request's), `name`.
    """

    provider = default_name = "anthropic"
    default_model = DEFAULT_MODEL

    async def complete(self, request: ModelRequest) -> ModelTurn:
        """Ask for the next turn; raises `ProviderError` for every failure of the call."""
        params = build_params(request, model=self.model, max_tokens=self.max_tokens)
        timeout = call_timeout(self.timeout, request)
        where = self.base_url or "the Anthropic API"
        with sdk_errors(anthropic, anthropic.AnthropicError, self.name, timeout, where):
            sdk = self._sdk.get()
            response = await sdk.messages.create(**params, timeout=timeout)
        expect_answer(self.name, response, anthropic.types.Message)
        try:
            return convert_response(response)
        except (AttributeError, TypeError, ValueError) as exc:
            raise ProviderError(f"{self.name}: could not read the answer: {exc}") from exc

    def _new_sdk(self) -> anthropic.AsyncAnthropic:
        return anthropic.AsyncAnthropic(**self._sdk_options())


# -- lensbook -> Messages API ------------------------------------------------------------------


def build_params(
    request: ModelRequest, *, model: str, max_tokens: int | None = None
) -> dict[str, Any]:
    """The keyword arguments of `messages.create` for one request."""
    params: dict[str, Any] = {
        "model": model,
        "max_tokens": max_tokens or request.max_tokens,
        "messages": wire_safe(convert_messages(request.messages)),
    }
    if request.system.strip():
        system: list[TextBlockParam] = [
            {"type": "text", "text": request.system, "cache_control": _EPHEMERAL}
        ]
        params["system"] = system
    if request.tools:
        params["tools"] = convert_tools(request.tools)
    return params


def convert_tools(tools: Sequence[ToolSpec]) -> list[ToolParam]:
    """Tool definitions, the last one marked as the end of the cached prefix."""
    converted: list[ToolParam] = []
    for spec in tools:
        schema = dict(spec.input_schema)
        schema.setdefault("type", "object")
        tool: ToolParam = {
            "name": spec.name,
            "description": spec.description,
            "input_schema": schema,
        }
        converted.append(tool)
    if converted:
        converted[-1]["cache_control"] = _EPHEMERAL
    return converted


def convert_messages(messages: Sequence[Message]) -> list[MessageParam]:
    """Messages API turns; consecutive messages of one role are merged into one turn."""
    turns: list[tuple[str, list[Block]]] = []
    for message in messages:
        if turns and turns[-1][0] == message.role:
            turns[-1][1].extend(message.content)
        else:
            turns.append((message.role, list(message.content)))
    converted: list[MessageParam] = []
    for role, blocks in turns:
        if role == "user":
            user = _user_blocks(blocks)
            converted.append({"role": "user", "content": user or [_text(_EMPTY_TEXT)]})
        else:
            assistant = _assistant_blocks(blocks)
            converted.append({"role": "assistant", "content": assistant or [_text(_EMPTY_TEXT)]})
    return converted


def _user_blocks(content: Sequence[Block]) -> list[_UserBlock]:
    results: list[_UserBlock] = []
    blocks: list[_UserBlock] = []
    for block in content:
        if isinstance(block, ToolResult):
            result: ToolResultBlockParam = {
                "type": "tool_result",
                "tool_use_id": block.tool_call_id,
                "content": block.content or _EMPTY_TEXT,
                "is_error": block.is_error,
            }
            results.append(result)
        elif isinstance(block, TextBlock) and block.text:
            blocks.append(_text(block.text))
        elif isinstance(block, ToolCall):
            # a tool call in a user turn cannot be sent as one; keep what it said
            blocks.append(_text(call_as_text(block)))
    # the API wants a turn's tool results before any text that follows them
    return results + blocks


def _assistant_blocks(content: Sequence[Block]) -> list[_AssistantBlock]:
    blocks: list[_AssistantBlock] = []
    for block in content:
        if isinstance(block, ToolCall):
            use: ToolUseBlockParam = {
                "type": "tool_use",
                "id": block.id,
                "name": block.name,
                "input": _as_input(block.arguments),
            }
            blocks.append(use)
        elif isinstance(block, TextBlock) and block.text:
            blocks.append(_text(block.text))
        elif isinstance(block, ToolResult):
            blocks.append(_text(f"[tool result {block.tool_call_id}] {block.content}"))
    return blocks


def _text(text: str) -> TextBlockParam:
    return {"type": "text", "text": text}


def _as_input(arguments: Any) -> dict[str, object]:
    """Tool input must be a JSON object; arguments from other clients may be a string."""
    if isinstance(arguments, dict):
        return dict(arguments)
    if isinstance(arguments, str):
        try:
            parsed = json.loads(arguments)
        except ValueError:
            parsed = None
        if isinstance(parsed, dict):
            return parsed
    return {"arguments": arguments}


# -- Messages API -> lensbook ------------------------------------------------------------------


def convert_response(message: anthropic.types.Message) -> ModelTurn:
    """The model's turn: text and tool calls in order (other block kinds are not used)."""
    content: list[TextBlock | ToolCall] = []
    for block in message.content:
        if isinstance(block, anthropic.types.TextBlock):
            content.append(TextBlock(text=block.text))
        elif isinstance(block, anthropic.types.ToolUseBlock):
            content.append(ToolCall(id=block.id, name=block.name, arguments=block.input))
    usage = message.usage
    return ModelTurn(
        content=tuple(content),
        stop_reason=message.stop_reason or "end_turn",
        usage=TokenUsage(
            input_tokens=usage.input_tokens or 0,
            output_tokens=usage.output_tokens or 0,
            cache_read_input_tokens=usage.cache_read_input_tokens or 0,
            cache_creation_input_tokens=usage.cache_creation_input_tokens or 0,
        ),
        model=str(message.model),
    )


PROVIDER = Provider(
    "anthropic",
    AnthropicClient,
    description="Claude, through the Messages API",
    default_model=DEFAULT_MODEL,
    key_env="ANTHROPIC_API_KEY",
)
