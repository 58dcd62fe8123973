"""LLM clients: one Protocol in lensbook's own small message types, and its implementations."""

from __future__ import annotations

from lensbook.clients.base import (
    LLMClient,
    Message,
    ModelRequest,
    ModelTurn,
    TextBlock,
    ToolCall,
    ToolResult,
    ToolSpec,
)
from lensbook.clients.chain import ClientChain
from lensbook.clients.scripted import ScriptedClient, call

__all__ = [
    "ClientChain",
    "LLMClient",
    "Message",
    "ModelRequest",
    "ModelTurn",
    "ScriptedClient",
    "TextBlock",
    "ToolCall",
    "ToolResult",
    "ToolSpec",
    "call",
]
