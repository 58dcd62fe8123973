"""Compaction: keep a long investigation inside the model's context.

When the conversation passes `compaction_max_tokens`, everything but the last
`compaction_keep_last` messages is summarised by the model. A tool call and its result are never
split; the snapshot ids, notifications and state survive verbatim (they are appended to the
summary by lensbook, not left to the model).
"""

from __future__ import annotations

import json
from collections.abc import Sequence

from lensbook.clients.base import Message, TextBlock, ToolCall, ToolResult, ToolSpec
from lensbook.skills.redact import redact_text

__all__ = ["COMPACTION_PROMPT", "estimate_tokens", "merge_into_first_user", "split", "transcript"]

COMPACTION_PROMPT = (
    "You summarise a runtime investigation so it can continue in a fresh context. Keep every "
    "snapshot id, every metric value that matters, every anomaly and every notification sent, "
    "and what was still to be checked. Be factual and compact; no speculation beyond what the "
    "investigation stated."
)


def estimate_tokens(
    system: str, messages: Sequence[Message], tools: Sequence[ToolSpec] = ()
) -> int:
    """A rough token count (4 characters a token) for clients that report no usage."""
    chars = len(system) + sum(len(json.dumps(t.input_schema)) + len(t.description) for t in tools)
    for message in messages:
        for block in message.content:
            if isinstance(block, TextBlock):
                chars += len(block.text)
            elif isinstance(block, ToolCall):
                chars += len(block.name) + len(json.dumps(block.arguments, default=str))
            else:
                chars += len(block.content)
    return chars // 4 + 1


def split(messages: Sequence[Message], keep_last: int) -> tuple[list[Message], list[Message]]:
    """Split into (head to summarise, tail kept verbatim) without separating a tool pair.

    The tail never starts with tool results whose calls would stay in the head. Returns an empty
    head when there is nothing worth compacting.
    """
    cut = max(1, len(messages) - max(1, keep_last))
    while cut > 0 and messages[cut].role == "user" and messages[cut].tool_results:
        cut -= 1
    if cut <= 0:
        return [], list(messages)
    return list(messages[:cut]), list(messages[cut:])


def transcript(messages: Sequence[Message], limit: int = 60_000) -> str:
    """The head of a conversation as plain text for the summarising request."""
    lines: list[str] = []
    for message in messages:
        for block in message.content:
            if isinstance(block, TextBlock):
                lines.append(f"{message.role}: {block.text}")
            elif isinstance(block, ToolCall):
                args = json.dumps(block.arguments, default=str)
                lines.append(f"assistant called {block.name}({args}) [{block.id}]")
            elif isinstance(block, ToolResult):
                tag = "error" if block.is_error else "result"
                lines.append(f"{tag} [{block.tool_call_id}]: {block.content}")
    # redacted before it is cut: the cut must never leave part of a credential behind
    text = redact_text("\n".join(lines))
    return text if len(text) <= limit else text[-limit:]


def merge_into_first_user(text: str, tail: list[Message]) -> list[Message]:
    """Put `text` first in the conversation, keeping roles alternating from a user turn."""
    if tail and tail[0].role == "user":
        first = tail[0]
        merged = Message(role="user", content=(*first.content, TextBlock(text=text)))
        if first.tool_results:
            # tool results must stay first in their message, text goes after them
            return [merged, *tail[1:]]
        return [Message(role="user", content=(TextBlock(text=text), *first.content)), *tail[1:]]
    return [Message.user(text), *tail]
