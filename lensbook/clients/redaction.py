"""The model boundary: every request is redacted once more before any client sees it.

What a conversation holds was redacted where it was made (probe output, snapshots, context, tool
errors: see `lensbook.skills.redact`). This is the net under that rule, in the one place every
request of every loop (operators, coordinator, compaction, `message()`) goes through: the
client chain. Text blocks, tool-call arguments, tool results, the context and the system prompt
are redacted; a message already redacted in an earlier request of the same conversation is
taken from a small identity cache, so the cost grows with what is new, not with the
conversation's length.
"""

from __future__ import annotations

import operator
from typing import Any

from lensbook.clients.base import Message, ModelRequest, TextBlock, ToolCall, ToolResult
from lensbook.skills.redact import redact, redact_text

__all__ = ["RequestRedactor"]

#: messages remembered; past this the cache starts over (a new conversation, or compaction)
_CACHE_SIZE = 512


class RequestRedactor:
    """Redacts requests; remembers what it has already redacted (by identity)."""

    def __init__(self) -> None:
        # id -> (the original, kept alive so its id is not reused; its redacted copy)
        self._done: dict[int, tuple[Message, Message]] = {}
        # the previous request's messages and their redacted copies: a conversation grows by
        # appending, so the next request usually starts with exactly these objects
        self._sent: tuple[Message, ...] = ()
        self._clean: tuple[Message, ...] = ()
        self._system = ("", "")

    def __call__(self, request: ModelRequest) -> ModelRequest:
        if len(self._done) > _CACHE_SIZE:
            self._done.clear()
        messages = request.messages
        n = len(self._sent)
        if n and len(messages) >= n and all(map(operator.is_, messages[:n], self._sent)):
            clean = self._clean + tuple(self._message(m) for m in messages[n:])
        else:
            clean = tuple(self._message(m) for m in messages)
        self._sent, self._clean = messages, clean
        if self._system[0] is not request.system:
            self._system = (request.system, redact_text(request.system))
        return request.model_copy(
            update={
                "system": self._system[1],
                "messages": clean,
                "context": redact(request.context),
            }
        )

    def _message(self, message: Message) -> Message:
        found = self._done.get(id(message))
        if found is not None and found[0] is message:
            return found[1]
        clean = Message(role=message.role, content=tuple(_block(b) for b in message.content))
        self._done[id(message)] = (message, clean)
        return clean


def _block(block: TextBlock | ToolCall | ToolResult) -> Any:
    if isinstance(block, TextBlock):
        return TextBlock(text=redact_text(block.text))
    if isinstance(block, ToolCall):
        return ToolCall(id=block.id, name=block.name, arguments=redact(block.arguments))
    return ToolResult(
        tool_call_id=block.tool_call_id,
        content=redact_text(block.content),
        is_error=block.is_error,
    )
