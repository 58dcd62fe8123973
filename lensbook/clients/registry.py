"""Choosing clients: the `client_registry` mapping, names, and the default client.

    client_registry = {
        "primary": "claude",
        "clients": [
            {"name": "claude", "provider": "anthropic",
             "options": {"model": "claude-sonnet-4-5", "api_key": "...", "base_url": "..."}},
            {"name": "backup", "provider": "anthropic", "options": {"model": "claude-haiku-4-5"}},
            {"name": "local", "provider": "ollama", "options": {"model": "qwen2.5:7b"}},
        ],
        "retry": {"attempts": 3, "backoff": 0.5},
    }

The primary client is tried first, then the others in the order given. Providers: `anthropic`
(the Messages API), `openai` (OpenAI's chat completions), `openai-generic` (any server copying
that API, at its `base_url`), and its aliases `ollama` and `vllm`, which default `base_url` to
the local server; these need ``pip install "lensbook[openai]"``.
"""

from __future__ import annotations

import importlib
import os
from collections.abc import Callable, Mapping
from typing import Any

from lensbook._errors import ClientNotConfigured
from lensbook.clients.base import LLMClient
from lensbook.clients.chain import ClientChain

__all__ = ["PROVIDERS", "build_chain", "default_client", "register_provider"]

#: provider name -> "module:factory", the factory taking the options as keyword arguments.
PROVIDERS: dict[str, str] = {
    "anthropic": "lensbook.clients.anthropic_:AnthropicClient",
    "openai": "lensbook.clients.openai_:OpenAIClient",
    "openai-generic": "lensbook.clients.openai_:generic",
    "ollama": "lensbook.clients.openai_:ollama",
    "vllm": "lensbook.clients.openai_:vllm",
}

_factories: dict[str, Callable[..., LLMClient]] = {}


def register_provider(name: str, factory: Callable[..., LLMClient]) -> None:
    """Make `provider: name` usable in a client registry."""
    _factories[name] = factory


def _factory(provider: str) -> Callable[..., LLMClient]:
    if provider in _factories:
        return _factories[provider]
    if provider not in PROVIDERS:
        known = ", ".join(sorted({*PROVIDERS, *_factories}))
        raise ClientNotConfigured(f"unknown provider {provider!r}; known providers: {known}")
    module_name, attr = PROVIDERS[provider].split(":")
    factory: Callable[..., LLMClient] = getattr(importlib.import_module(module_name), attr)
    return factory


def clients_from_registry(registry: Mapping[str, Any]) -> list[LLMClient]:
    """The registry's clients, primary first."""
    entries = list(registry.get("clients") or [])
    if not entries:
        raise ClientNotConfigured("client_registry has no clients")
    built: list[LLMClient] = []
    for entry in entries:
        if isinstance(entry, LLMClient):
            built.append(entry)
            continue
        name = entry.get("name") or entry.get("provider")
        provider = entry.get("provider")
        if not provider:
            raise ClientNotConfigured(f"client {name!r} in client_registry names no provider")
        try:
            client = _factory(provider)(**dict(entry.get("options") or {}))
        except TypeError as exc:
            raise ClientNotConfigured(f"client {name!r} ({provider}): bad options: {exc}") from None
        client.name = str(name)
        built.append(client)
    primary = registry.get("primary")
    if primary is not None:
        names = [c.name for c in built]
        if primary not in names:
            raise ClientNotConfigured(f"primary {primary!r} is not among the clients {names}")
        built.sort(key=lambda c: c.name != primary)
    return built


def default_client() -> LLMClient:
    """Anthropic when ANTHROPIC_API_KEY is set, else the offline investigator."""
    if os.environ.get("ANTHROPIC_API_KEY"):
        return _factory("anthropic")()
    try:
        offline = importlib.import_module("lensbook.clients.offline")
    except ImportError:
        raise ClientNotConfigured(
            "no LLM client: set ANTHROPIC_API_KEY, or pass client=... / client_registry=... "
            "(for example lensbook.ScriptedClient for tests)"
        ) from None
    client: LLMClient = offline.OfflineInvestigator()
    return client


def build_chain(
    client: LLMClient | ClientChain | str | None = None,
    client_registry: Mapping[str, Any] | None = None,
) -> ClientChain:
    """The chain one run uses: an explicit client, a registry (or a name in it), or the default."""
    retry = dict((client_registry or {}).get("retry") or {})
    if isinstance(client, ClientChain):
        return client
    if client == "offline":
        from lensbook.clients.offline import OfflineInvestigator

        return ClientChain([OfflineInvestigator()], **retry)
    if isinstance(client, str):
        if client_registry is None:
            if client == "default":
                return ClientChain([default_client()], **retry)
            raise ClientNotConfigured(f"client {client!r} named but no client_registry given")
        clients = clients_from_registry(client_registry)
        chosen = [c for c in clients if c.name == client]
        if not chosen:
            raise ClientNotConfigured(
                f"no client named {client!r} in the registry ({[c.name for c in clients]})"
            )
        rest = [c for c in clients if c.name != client]
        return ClientChain(chosen + rest, **retry)
    if client is not None:
        return ClientChain([client], **retry)
    if client_registry is not None:
        return ClientChain(clients_from_registry(client_registry), **retry)
    return ClientChain([default_client()])
