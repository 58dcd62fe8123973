"""The OpenAI-compatible chat completions adapter: OpenAI, Ollama, vLLM and their kin.

    client = OpenAIClient(model="gpt-4.1-mini")                   # reads OPENAI_API_KEY
    client = ollama(model="qwen2.5:7b")                           # http://localhost:11434/v1
    registry = {"clients": [{"name": "local", "provider": "ollama",
                             "options": {"model": "qwen2.5:7b"}}]}

It is the only module that knows the chat completions wire format; it needs the official SDK
(``pip install "lensbook[openai]"``). The loop, the tools and the redaction are the ones every
client shares. Every SDK failure leaves as `lensbook.ProviderError`, `retryable` for rate limits,
server errors, timeouts, lost connections and answers that cannot be decoded (see `_sdk`); the
SDK's own retries are off, because lensbook's `ClientChain` retries and then falls back to the
next client.

Small local models often answer without a native tool call, or with arguments that are not JSON.
Such a turn goes to the loop as it is (arguments that are not JSON stay a string), and the loop
answers the model with an error result or a reminder: that is a repair. After the first
malformed turn and `max_repairs` failed repairs in a row, the client gives up on the
investigation with a non-retryable `ProviderError`, and keeps refusing it, so the chain hands
it to its next client for good instead of losing more iterations.
"""

from __future__ import annotations

import collections
import hashlib
import itertools
import json
import os
from collections.abc import Sequence
from typing import TYPE_CHECKING, Any

from typing_extensions import Unpack

from lensbook._errors import ClientNotConfigured, ProviderError
from lensbook.clients._sdk import (
    SDKClient,
    SDKOptions,
    call_as_text,
    call_timeout,
    compact_json,
    expect_answer,
    sdk_errors,
    wire_safe,
)
from lensbook.clients.base import (
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

if TYPE_CHECKING:
    import openai

__all__ = [
    "DEFAULT_MODEL",
    "GENERIC",
    "OLLAMA",
    "OLLAMA_URL",
    "OPENAI",
    "VLLM",
    "VLLM_URL",
    "OpenAIClient",
    "build_params",
    "convert_messages",
    "convert_response",
    "convert_tools",
    "generic",
    "ollama",
    "vllm",
]

DEFAULT_MODEL = "gpt-4.1-mini"
OLLAMA_URL = "http://localhost:11434/v1"
VLLM_URL = "http://localhost:8000/v1"

# local servers ignore the key, but the SDK refuses to start without one
_PLACEHOLDER_KEY = "not-needed"
_EMPTY_TEXT = "(empty)"
_NO_RESULT = "(no result was recorded for this call)"
# conversations whose repair count is remembered; old ones are forgotten first
_TRACKED = 256

_STOP_REASONS = {
    "tool_calls": "tool_use",
    "function_call": "tool_use",
    "stop": "end_turn",
    "length": "max_tokens",
}

_ids = itertools.count(1)


def _sdk() -> Any:
    """The `openai` module, or a clear word on how to install it."""
    try:
        import openai
    except ImportError:
        raise ClientNotConfigured(
            'the OpenAI-compatible providers need the openai SDK: pip install "lensbook[openai]"'
        ) from None
    return openai


class OpenAIClient(SDKClient):
    """An `LLMClient` speaking the chat completions API through the SDK's `AsyncOpenAI`.

    Options (as `client_registry` passes them): those of every SDK client (`SDKOptions`:
    `model`, `api_key`, `base_url`, `timeout`, `max_tokens`, `name`), where `base_url`
    defaults to OpenAI's (or the SDK's OPENAI_BASE_URL) and `api_key` to OPENAI_API_KEY (a
    placeholder for a local `base_url`); and `max_tokens_field` (``max_completion_tokens`` for
    OpenAI, ``max_tokens`` elsewhere), `temperature`, `max_repairs`, `extra_body` (sent as is,
    for server-specific fields), `headers`, `provider` (the label shown by ``lensbook
    providers``).
    """

    default_model = DEFAULT_MODEL
    default_name = "openai"

    def __init__(
        self,
        *,
        max_tokens_field: str | None = None,
        temperature: float | None = None,
        max_repairs: int = 2,
        extra_body: dict[str, Any] | None = None,
        headers: dict[str, str] | None = None,
        provider: str = "openai",
        **options: Unpack[SDKOptions],
    ) -> None:
        _sdk()  # fail when the registry is read, not at the first request
        super().__init__(**options)
        base_url = self.base_url
        if self.api_key is None and base_url and not os.environ.get("OPENAI_API_KEY"):
            self.api_key = _PLACEHOLDER_KEY
        self.provider = provider
        # OpenAI's newer models refuse `max_tokens`; servers that copy the API may not know
        # the newer field
        self.max_tokens_field = max_tokens_field or (
            "max_tokens" if base_url else "max_completion_tokens"
        )
        self.temperature = temperature
        self.max_repairs = max(0, max_repairs)
        self.extra_body = dict(extra_body or {})
        self.headers = dict(headers or {})
        self._malformed: collections.OrderedDict[str, int] = collections.OrderedDict()

    async def complete(self, request: ModelRequest) -> ModelTurn:
        """Ask for the next turn; raises `ProviderError` for every failure of the call."""
        conversation = _conversation_key(request)
        if len(request.messages) <= 1:
            # a new run of the same operator opens the same way: it gets its repairs back
            self._malformed.pop(conversation, None)
        self._refuse_if_given_up(conversation)
        params = build_params(
            request,
            model=self.model,
            max_tokens=self.max_tokens,
            max_tokens_field=self.max_tokens_field,
            temperature=self.temperature,
        )
        if self.extra_body:
            params["extra_body"] = self.extra_body
        response = await self._create(params, call_timeout(self.timeout, request))
        expect_answer(self.name, response, _sdk().types.chat.ChatCompletion)
        try:
            turn, problems = convert_response(response)
        except (AttributeError, TypeError, ValueError, IndexError) as exc:
            raise ProviderError(f"{self.name}: could not read the answer: {exc}") from exc
        if request.purpose == "investigate" and request.tools:
            self._count_repairs(conversation, turn, problems)
        return turn

    async def _create(self, params: dict[str, Any], timeout: float) -> Any:
        sdk = _sdk()
        where = self.base_url or "the OpenAI API"
        with sdk_errors(sdk, sdk.OpenAIError, self.name, timeout, where):
            client = self._sdk.get()
            return await client.chat.completions.create(**params, timeout=timeout)

    def _new_sdk(self) -> openai.AsyncOpenAI:
        client: openai.AsyncOpenAI = _sdk().AsyncOpenAI(
            **self._sdk_options(), default_headers=self.headers or None
        )
        return client

    # -- repairs --------------------------------------------------------------------------

    def _refuse_if_given_up(self, conversation: str) -> None:
        count = self._malformed.get(conversation, 0)
        if count > self.max_repairs:
            raise ProviderError(
                f"{self.name}: gave up on this investigation after {count} malformed turns in a "
                "row (no tool call, or arguments that are not a JSON object)"
            )

    def _count_repairs(self, conversation: str, turn: ModelTurn, problems: list[str]) -> None:
        """Count malformed turns in a row; past the repairs allowed, raise to fall back."""
        if not turn.tool_calls:
            problems = ["answered with text instead of a tool call", *problems]
        if not problems:
            self._malformed.pop(conversation, None)
            return
        count = self._malformed.pop(conversation, 0) + 1
        self._malformed[conversation] = count
        while len(self._malformed) > _TRACKED:
            self._malformed.popitem(last=False)
        if count > self.max_repairs:
            raise ProviderError(
                f"{self.name}: {count} malformed turns in a row ({'; '.join(problems)}); "
                f"giving up on this investigation after {self.max_repairs} repair(s)"
            )


def _conversation_key(request: ModelRequest) -> str:
    """Names one investigation: its system prompt and opening message.

    Operators sharing one client have different system prompts; compaction rewrites the opening,
    which starts the count afresh.
    """
    first = request.messages[0].model_dump_json() if request.messages else ""
    digest = hashlib.blake2b(digest_size=12)
    digest.update(request.system.encode())
    digest.update(b"\0")
    digest.update(first.encode())
    return digest.hexdigest()


def _server(provider: str, options: dict[str, Any], **defaults: str) -> OpenAIClient:
    """An `OpenAIClient` named after `provider`, with `defaults` under the caller's options."""
    return OpenAIClient(**{"name": provider, "provider": provider, **defaults, **options})


def ollama(**options: Any) -> OpenAIClient:
    """An `OpenAIClient` for a local Ollama (``http://localhost:11434/v1`` unless told)."""
    # never the environment's OPENAI_API_KEY: it is no business of a local server
    return _server("ollama", options, base_url=OLLAMA_URL, api_key=_PLACEHOLDER_KEY)


def vllm(**options: Any) -> OpenAIClient:
    """An `OpenAIClient` for a vLLM server (``http://localhost:8000/v1`` unless told); give
    `api_key` if the server was started with ``--api-key``."""
    return _server("vllm", options, base_url=VLLM_URL, api_key=_PLACEHOLDER_KEY)


def generic(**options: Any) -> OpenAIClient:
    """An `OpenAIClient` for any server that copies the chat completions API."""
    return _server("openai-generic", options)


OPENAI = Provider(
    "openai",
    OpenAIClient,
    description="OpenAI's chat completions API",
    default_model=DEFAULT_MODEL,
    key_env="OPENAI_API_KEY",
    extra="openai",
)
GENERIC = Provider(
    "openai-generic",
    generic,
    description="any server copying that API (base_url)",
    default_model=DEFAULT_MODEL,
    key_env="OPENAI_API_KEY",
    extra="openai",
)
OLLAMA = Provider(
    "ollama",
    ollama,
    description="a local Ollama server",
    default_base_url=OLLAMA_URL,
    local=True,
    extra="openai",
)
VLLM = Provider(
    "vllm",
    vllm,
    description="a vLLM server",
    default_base_url=VLLM_URL,
    local=True,
    extra="openai",
)


# -- lensbook -> chat completions --------------------------------------------------------------


def build_params(
    request: ModelRequest,
    *,
    model: str,
    max_tokens: int | None = None,
    max_tokens_field: str = "max_tokens",
    temperature: float | None = None,
) -> dict[str, Any]:
    """The keyword arguments of `chat.completions.create` for one request."""
    messages: list[dict[str, Any]] = []
    if request.system.strip():
        messages.append({"role": "system", "content": request.system})
    messages.extend(wire_safe(convert_messages(request.messages)))
    params: dict[str, Any] = {
        "model": model,
        "messages": messages,
        max_tokens_field: max_tokens or request.max_tokens,
    }
    if request.tools:
        params["tools"] = convert_tools(request.tools)
    if temperature is not None:
        params["temperature"] = temperature
    return params


def convert_tools(tools: Sequence[ToolSpec]) -> list[dict[str, Any]]:
    """Tool definitions as functions."""
    converted: list[dict[str, Any]] = []
    for spec in tools:
        schema = dict(spec.input_schema)
        schema.setdefault("type", "object")
        schema.setdefault("properties", {})
        converted.append(
            {
                "type": "function",
                "function": {
                    "name": spec.name,
                    "description": spec.description,
                    "parameters": schema,
                },
            }
        )
    return converted


def convert_messages(messages: Sequence[Message]) -> list[dict[str, Any]]:
    """Chat messages: each assistant turn's calls answered by `tool` messages right after it.

    The API rejects a tool message that answers no call of the turn before it, and a call left
    without an answer; a stray result becomes text and a missing one a placeholder.
    """
    converted: list[dict[str, Any]] = []
    pending: list[str] = []
    for message in messages:
        texts = [b.text for b in message.content if isinstance(b, TextBlock) and b.text]
        if message.role == "assistant":
            _answer_missing(converted, pending)
            calls = [b for b in message.content if isinstance(b, ToolCall)]
            texts += [
                f"[tool result {b.tool_call_id}] {b.content}"
                for b in message.content
                if isinstance(b, ToolResult)
            ]
            entry: dict[str, Any] = {"role": "assistant", "content": "\n".join(texts) or None}
            if calls:
                entry["tool_calls"] = [_tool_call(call) for call in calls]
                pending = [call.id for call in calls]
            elif entry["content"] is None:
                entry["content"] = _EMPTY_TEXT
            converted.append(entry)
            continue
        stray: list[str] = []
        for block in message.content:
            if isinstance(block, ToolResult):
                if block.tool_call_id in pending:
                    pending.remove(block.tool_call_id)
                    converted.append(
                        {
                            "role": "tool",
                            "tool_call_id": block.tool_call_id,
                            "content": _result_text(block),
                        }
                    )
                else:
                    stray.append(f"[tool result {block.tool_call_id}] {_result_text(block)}")
            elif isinstance(block, ToolCall):
                stray.append(call_as_text(block))
        _answer_missing(converted, pending)
        text = "\n".join([*stray, *texts])
        if text or not converted or converted[-1]["role"] != "tool":
            converted.append({"role": "user", "content": text or _EMPTY_TEXT})
    _answer_missing(converted, pending)
    return converted


def _answer_missing(converted: list[dict[str, Any]], pending: list[str]) -> None:
    for call_id in pending:
        converted.append({"role": "tool", "tool_call_id": call_id, "content": _NO_RESULT})
    pending.clear()


def _tool_call(call: ToolCall) -> dict[str, Any]:
    arguments = call.arguments
    if arguments is None:
        arguments = {}
    if not isinstance(arguments, dict):
        # some servers parse the history's arguments and reject a call that is not an object;
        # the model still sees what it sent, and the tool result says what was wrong
        arguments = {"invalid_arguments": arguments}
    return {
        "id": call.id,
        "type": "function",
        "function": {"name": call.name, "arguments": compact_json(arguments)},
    }


def _result_text(result: ToolResult) -> str:
    # the wire has no error flag for tool messages: say it in words the model cannot miss
    content = result.content or _EMPTY_TEXT
    return f"ERROR: {content}" if result.is_error else content


# -- chat completions -> lensbook --------------------------------------------------------------


def convert_response(response: Any) -> tuple[ModelTurn, list[str]]:
    """The model's turn, and what was malformed in it (tool calls whose arguments are unusable).

    Arguments that are not a JSON object are kept as the model sent them, so the loop answers
    the call with an error result the model can act on.
    """
    choices = response.choices or []
    if not choices:
        raise ValueError("the answer has no choices")
    choice = choices[0]
    message = choice.message
    content: list[TextBlock | ToolCall] = []
    text = message.content
    if isinstance(text, str) and text.strip():
        content.append(TextBlock(text=text))
    problems: list[str] = []
    for call in message.tool_calls or []:
        function = getattr(call, "function", None)
        if function is None:  # a kind of tool call lensbook never offers
            continue
        arguments, problem = _parse_arguments(function.arguments)
        name = str(function.name or "")
        if problem:
            problems.append(f"{name or 'a call'}: {problem}")
        call_id = str(getattr(call, "id", "") or "") or f"call_lb_{next(_ids):04d}"
        content.append(ToolCall(id=call_id, name=name, arguments=arguments))
    finish = str(choice.finish_reason or "stop")
    if any(isinstance(b, ToolCall) for b in content):
        stop_reason = "tool_use"
    else:
        stop_reason = _STOP_REASONS.get(finish, finish)
    return (
        ModelTurn(
            content=tuple(content),
            stop_reason=stop_reason,
            usage=_usage(getattr(response, "usage", None)),
            model=str(getattr(response, "model", "") or ""),
        ),
        problems,
    )


def _parse_arguments(raw: Any) -> tuple[Any, str | None]:
    """(arguments for the loop, what is wrong with them or None)."""
    if raw is None or isinstance(raw, dict):
        return raw or {}, None
    if not isinstance(raw, str):
        return raw, f"arguments are a {type(raw).__name__}, not a JSON object"
    if not raw.strip():
        return {}, None
    try:
        value = json.loads(raw)
    except ValueError:
        return raw, "arguments are not valid JSON"
    if isinstance(value, str):
        # a JSON object sent as a JSON string: a slip some models make, and harmless
        try:
            value = json.loads(value)
        except ValueError:
            return raw, "arguments are a JSON string, not an object"
    if value is None:
        return {}, None
    if not isinstance(value, dict):
        return value, f"arguments are a JSON {type(value).__name__}, not an object"
    return value, None


def _usage(usage: Any) -> TokenUsage:
    """Token counts; cached prompt tokens count apart, as Anthropic's cache reads do."""
    if usage is None:
        return TokenUsage()
    prompt = int(getattr(usage, "prompt_tokens", 0) or 0)
    details = getattr(usage, "prompt_tokens_details", None)
    cached = int(getattr(details, "cached_tokens", 0) or 0) if details is not None else 0
    cached = min(cached, prompt)
    return TokenUsage(
        input_tokens=prompt - cached,
        output_tokens=int(getattr(usage, "completion_tokens", 0) or 0),
        cache_read_input_tokens=cached,
    )
