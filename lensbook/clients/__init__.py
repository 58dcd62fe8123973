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
from lensbook.clients.providers import (
    REGISTRY_ENV,
    ProvidersReport,
    check_clients,
    describe_chain,
    load_registry,
    providers_report,
)
from lensbook.clients.registry import (
    Provider,
    provider_names,
    register_provider,
    single_client_registry,
)
from lensbook.clients.resolve import resolve_client
from lensbook.clients.scripted import ScriptedClient, call

__all__ = [
    "REGISTRY_ENV",
    "ClientChain",
    "LLMClient",
    "Message",
    "ModelRequest",
    "ModelTurn",
    "Provider",
    "ProvidersReport",
    "ScriptedClient",
    "TextBlock",
    "ToolCall",
    "ToolResult",
    "ToolSpec",
    "call",
    "check_clients",
    "describe_chain",
    "load_registry",
    "provider_names",
    "providers_report",
    "register_provider",
    "resolve_client",
    "single_client_registry",
]
