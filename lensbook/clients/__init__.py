"""LLM clients: one Protocol in lensbook's own small message types, its implementations, and
the one resolver of a client option (`resolve_client`, see `lensbook.clients.resolve`)."""

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
from lensbook.clients.registry import Provider, register_provider
from lensbook.clients.resolve import resolve_client
from lensbook.clients.scripted import ScriptedClient, call

__all__ = [
    "ClientChain",
    "LLMClient",
    "Message",
    "ModelRequest",
    "ModelTurn",
    "Provider",
    "ScriptedClient",
    "TextBlock",
    "ToolCall",
    "ToolResult",
    "ToolSpec",
    "call",
    "register_provider",
    "resolve_client",
]
