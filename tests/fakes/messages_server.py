"""A scripted Anthropic Messages API on 127.0.0.1, for driving the real SDK in tests.

    with MessagesServer([tool_uses(tool_use("take_snapshot")), overloaded()]) as server:
        client = AnthropicClient(base_url=server.url, api_key="test-key")
        ...
        server.requests[0].body["tools"]   # every request, parsed, with its headers

Each POST /v1/messages takes the next item of the script:

- a dict: a message body (see `message`), answered with 200;
- a `Reply`: any status and JSON body (see `error`, `rate_limited`, `overloaded`, ...);
- a `Delay`: wait, then answer (for provoking client timeouts);
- a callable `(request, server) -> item`, called when the request arrives, so a reply can use
  what the client sent (a snapshot id from a tool result, say).

When the script is empty the server answers with `then` (for "fails forever"), or else with a 400
naming the exhausted script, so a test never hangs on it. The server is bounded: it shuts itself
down after `lifetime` seconds and answers at most `max_requests` requests; delays end early when
it stops. It listens on the loopback interface only and never makes a request of its own.
"""

from __future__ import annotations

import itertools
from collections.abc import Callable
from contextlib import AbstractContextManager
from dataclasses import dataclass
from typing import Any, TypeAlias

from tests.fakes._scripted import Delay, RecordedBase, Reply, ScriptedServer, pool

__all__ = [
    "Delay",
    "MessagesServer",
    "RecordedRequest",
    "Reply",
    "api_error",
    "bad_request",
    "error",
    "message",
    "overloaded",
    "rate_limited",
    "server_pool",
    "text",
    "tool_use",
    "tool_uses",
]

_ids = itertools.count(1)


@dataclass(frozen=True)
class RecordedRequest(RecordedBase):
    """One request as the server received it."""

    @property
    def tool_results(self) -> list[dict[str, Any]]:
        """The tool_result blocks of the last (user) message."""
        last = (self.body.get("messages") or [{}])[-1]
        content = last.get("content")
        if not isinstance(content, list):
            return []
        return [b for b in content if b.get("type") == "tool_result"]

    def result_of(self, tool_name: str) -> Any:
        """The content of the latest tool_result answering a tool_use of `tool_name`, or None.

        Tool results that are JSON (as lensbook renders them) come back parsed.
        """
        names: dict[str, str] = {}
        found: Any = None
        for msg in self.body.get("messages") or []:
            content = msg.get("content")
            if not isinstance(content, list):
                continue
            for block in content:
                if block.get("type") == "tool_use":
                    names[block["id"]] = block["name"]
                elif (
                    block.get("type") == "tool_result"
                    and names.get(block.get("tool_use_id")) == tool_name
                ):
                    found = block.get("content")
        return self._parsed(found)


Item: TypeAlias = (
    "dict[str, Any] | Reply | Delay | Callable[[RecordedRequest, MessagesServer], Any]"
)


# -- script items --------------------------------------------------------------------------------


def text(value: str) -> dict[str, Any]:
    """A text content block."""
    return {"type": "text", "text": value}


def tool_use(name: str, /, *, id: str | None = None, **arguments: Any) -> dict[str, Any]:
    """A tool_use content block with a fresh `toolu_...` id."""
    return {
        "type": "tool_use",
        "id": id or f"toolu_fake_{next(_ids):04d}",
        "name": name,
        "input": arguments,
    }


def tool_uses(*blocks: dict[str, Any], **usage: Any) -> dict[str, Any]:
    """A message whose content is the given blocks, stopping for tool use (usage: see `message`)."""
    return message(*blocks, stop_reason="tool_use", **usage)


def message(
    *blocks: dict[str, Any],
    stop_reason: str | None = None,
    model: str | None = None,
    input_tokens: int = 100,
    output_tokens: int = 20,
    cache_read_input_tokens: int | None = 0,
    cache_creation_input_tokens: int | None = 0,
) -> dict[str, Any]:
    """A Messages API message body. `model` defaults to the model the request named."""
    if stop_reason is None:
        stop_reason = "tool_use" if any(b["type"] == "tool_use" for b in blocks) else "end_turn"
    body: dict[str, Any] = {
        "id": f"msg_fake_{next(_ids):04d}",
        "type": "message",
        "role": "assistant",
        "content": list(blocks),
        "stop_reason": stop_reason,
        "stop_sequence": None,
        "usage": {
            "input_tokens": input_tokens,
            "output_tokens": output_tokens,
            "cache_read_input_tokens": cache_read_input_tokens,
            "cache_creation_input_tokens": cache_creation_input_tokens,
        },
    }
    if model is not None:
        body["model"] = model
    return body


def error(status: int, kind: str, text: str) -> Reply:
    """An error as the API sends it: `{"type": "error", "error": {"type": kind, ...}}`."""
    return Reply(
        status,
        {"type": "error", "error": {"type": kind, "message": text}},
        {"request-id": f"req_fake_{next(_ids):04d}"},
    )


def rate_limited() -> Reply:
    return error(429, "rate_limit_error", "Number of request tokens has exceeded your rate limit")


def api_error() -> Reply:
    return error(500, "api_error", "Internal server error")


def overloaded() -> Reply:
    return error(529, "overloaded_error", "Overloaded")


def bad_request(text: str = "messages: field required") -> Reply:
    return error(400, "invalid_request_error", text)


# -- the server ----------------------------------------------------------------------------------


class MessagesServer(ScriptedServer[RecordedRequest]):
    """A local HTTP server answering POST /v1/messages from a script; records every request."""

    request_type = RecordedRequest
    thread_name = "fake-messages-server"

    def bodies(self) -> list[Any]:
        """The parsed JSON bodies of the requests so far."""
        with self._lock:
            return [r.body for r in self.requests]

    def _routes(self, path: str) -> bool:
        return path == "/v1/messages"

    def _not_found(self, path: str) -> Reply:
        return error(404, "not_found_error", f"no route {path}")

    def _bad_request(self, text: str) -> Reply:
        return bad_request(text)

    def _script_failed(self, exc: Exception) -> Reply:
        return error(500, "api_error", f"fake server script failed: {exc!r}")

    def _late(self) -> Any:
        return message(text("late"))

    def _ok(self, item: dict[str, Any], request: RecordedRequest) -> Reply:
        body = dict(item)
        body.setdefault("model", request.body.get("model", "claude-fake"))
        return Reply(200, body, {"request-id": f"req_fake_{next(_ids):04d}"})


def server_pool() -> AbstractContextManager[Callable[..., MessagesServer]]:
    """A starter of servers, `start(script, then=..., ...)`; every one is stopped on exit.

    A test module turns it into its fixture::

        @pytest.fixture
        def servers() -> Iterator[Callable[..., MessagesServer]]:
            with server_pool() as start:
                yield start
    """
    return pool(MessagesServer)
