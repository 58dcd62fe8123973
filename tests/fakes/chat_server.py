"""A scripted OpenAI-compatible chat completions API on 127.0.0.1, for driving the real SDK.

    with ChatServer([completion(tool_call("take_snapshot")), rate_limited()]) as server:
        client = OpenAIClient(base_url=server.base_url, model="qwen2.5:7b")
        ...
        server.requests[0].body["tools"]   # every request, parsed, with its headers

It speaks the wire format Ollama, vLLM and OpenAI share. Each POST .../chat/completions takes the
next item of the script:

- a dict: a chat completion body (see `completion`), answered with 200;
- a `Reply`: any status and JSON body (see `error`, `rate_limited`, `server_error`, ...);
- a `Delay`: wait, then answer (for provoking client timeouts);
- a callable `(request, server) -> item`, called when the request arrives, so a reply can use
  what the client sent (a snapshot id from a tool result, say).

When the script is empty the server answers with `then` (for "fails forever"), or else with a 400
naming the exhausted script, so a test never hangs on it. The server is bounded: it shuts itself
down after `lifetime` seconds and answers at most `max_requests` requests; delays end early when
it stops. It listens on the loopback interface only and never makes a request of its own. It can
be driven from a child process too (a test's `lensbook eval`), since it is plain HTTP.
"""

from __future__ import annotations

import itertools
import json
from collections.abc import Callable
from contextlib import AbstractContextManager
from dataclasses import dataclass
from typing import Any, TypeAlias

from tests.fakes._scripted import Delay, RecordedBase, Reply, ScriptedServer, pool

__all__ = [
    "ChatRequest",
    "ChatServer",
    "Delay",
    "Reply",
    "bad_request",
    "completion",
    "error",
    "rate_limited",
    "server_error",
    "server_pool",
    "text_reply",
    "tool_call",
]

_ids = itertools.count(1)

Item: TypeAlias = "dict[str, Any] | Reply | Delay | Callable[[ChatRequest, ChatServer], Any]"


@dataclass(frozen=True)
class ChatRequest(RecordedBase):
    """One request as the server received it."""

    @property
    def messages(self) -> list[dict[str, Any]]:
        found = self.body.get("messages") if isinstance(self.body, dict) else None
        return list(found or [])

    @property
    def tool_messages(self) -> list[dict[str, Any]]:
        """The `tool` messages after the last assistant message (this turn's results)."""
        tail: list[dict[str, Any]] = []
        for msg in reversed(self.messages):
            if msg.get("role") == "assistant":
                break
            if msg.get("role") == "tool":
                tail.append(msg)
        return list(reversed(tail))

    def result_of(self, tool_name: str) -> Any:
        """The content of the latest tool message answering a call of `tool_name`, or None.

        Tool results that are JSON (as lensbook renders them) come back parsed.
        """
        names: dict[str, str] = {}
        found: Any = None
        for msg in self.messages:
            for call in msg.get("tool_calls") or []:
                names[call["id"]] = call["function"]["name"]
            if msg.get("role") == "tool" and names.get(msg.get("tool_call_id", "")) == tool_name:
                found = msg.get("content")
        return self._parsed(found)


# -- script items --------------------------------------------------------------------------------


def tool_call(
    name: str, /, *, id: str | None = None, arguments: str | None = None, **kwargs: Any
) -> dict[str, Any]:
    """A function tool call; `arguments` is the raw string sent (malformed JSON, say)."""
    raw = arguments if arguments is not None else json.dumps(kwargs)
    return {
        "id": id if id is not None else f"call_fake_{next(_ids):04d}",
        "type": "function",
        "function": {"name": name, "arguments": raw},
    }


def completion(
    *calls: dict[str, Any],
    content: str | None = None,
    finish_reason: str | None = None,
    model: str | None = None,
    prompt_tokens: int = 100,
    completion_tokens: int = 20,
    cached_tokens: int | None = None,
) -> dict[str, Any]:
    """A chat completion body. `model` defaults to the model the request named."""
    message: dict[str, Any] = {"role": "assistant", "content": content}
    if calls:
        message["tool_calls"] = list(calls)
    usage: dict[str, Any] = {
        "prompt_tokens": prompt_tokens,
        "completion_tokens": completion_tokens,
        "total_tokens": prompt_tokens + completion_tokens,
    }
    if cached_tokens is not None:
        usage["prompt_tokens_details"] = {"cached_tokens": cached_tokens}
    body: dict[str, Any] = {
        "id": f"chatcmpl-fake-{next(_ids):04d}",
        "object": "chat.completion",
        "created": 1_700_000_000,
        "choices": [
            {
                "index": 0,
                "message": message,
                "finish_reason": finish_reason or ("tool_calls" if calls else "stop"),
            }
        ],
        "usage": usage,
    }
    if model is not None:
        body["model"] = model
    return body


def text_reply(value: str, **usage: Any) -> dict[str, Any]:
    """A completion with text only, no tool call (what small local models often send)."""
    return completion(content=value, **usage)


def error(status: int, kind: str, text: str, code: str | None = None) -> Reply:
    """An error as the API sends it: `{"error": {"message": ..., "type": ..., "code": ...}}`."""
    return Reply(
        status,
        {"error": {"message": text, "type": kind, "param": None, "code": code}},
        {"x-request-id": f"req_fake_{next(_ids):04d}"},
    )


def rate_limited() -> Reply:
    return error(429, "requests", "Rate limit reached for requests", "rate_limit_exceeded")


def server_error() -> Reply:
    return error(500, "server_error", "The server had an error while processing your request")


def bad_request(text: str = "messages: field required") -> Reply:
    return error(400, "invalid_request_error", text)


# -- the server ----------------------------------------------------------------------------------


class ChatServer(ScriptedServer[ChatRequest]):
    """A local HTTP server answering POST /v1/chat/completions from a script."""

    request_type = ChatRequest
    thread_name = "fake-chat-server"

    @property
    def base_url(self) -> str:
        """What an OpenAI-compatible client is given (the SDK appends /chat/completions)."""
        return f"{self.url}/v1"

    def _routes(self, path: str) -> bool:
        return path.endswith("/chat/completions")

    def _not_found(self, path: str) -> Reply:
        return error(404, "invalid_request_error", f"no route {path}")

    def _bad_request(self, text: str) -> Reply:
        return bad_request(text)

    def _script_failed(self, exc: Exception) -> Reply:
        return error(500, "server_error", f"fake server script failed: {exc!r}")

    def _late(self) -> Any:
        return text_reply("late")

    def _ok(self, item: dict[str, Any], request: ChatRequest) -> Reply:
        body = dict(item)
        body.setdefault("model", request.body.get("model", "fake-model"))
        return Reply(200, body, {"x-request-id": f"req_fake_{next(_ids):04d}"})


def server_pool() -> AbstractContextManager[Callable[..., ChatServer]]:
    """A starter of servers, `start(script, then=..., ...)`; every one is stopped on exit."""
    return pool(ChatServer)
