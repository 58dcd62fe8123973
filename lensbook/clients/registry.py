"""Providers and client registries: what ``"provider": NAME`` builds, and the default client.

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

A provider describes itself: its module holds a `Provider` (id, factory, default model and
server, where its key comes from), and its client class declares ``provider`` and ``model``.
Providers are found in three places, first wins: `register_provider` at run time, lensbook's
own (`BUILTIN`: one line each), and installed packages' entry points in the group
``lensbook.providers`` (as jupyter-ai finds its providers), so a third-party provider is one
package:

    [project.entry-points."lensbook.providers"]
    acme = "acme_lensbook:PROVIDER"     # a Provider, or a factory taking the options

A provider's module is imported only when it is used or described, never to list names.
"""

from __future__ import annotations

import importlib
import os
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from importlib.metadata import entry_points
from typing import Any

from lensbook._errors import ClientNotConfigured
from lensbook.clients.base import LLMClient

__all__ = [
    "BUILTIN",
    "ENTRY_POINT_GROUP",
    "Provider",
    "clients_from_registry",
    "default_client",
    "get_provider",
    "provider_names",
    "register_provider",
    "single_client_registry",
]

#: lensbook's own providers: id -> "module:attribute" of its `Provider` (one line a provider)
BUILTIN: dict[str, str] = {
    "anthropic": "lensbook.clients.anthropic_:PROVIDER",
    "openai": "lensbook.clients.openai_:OPENAI",
    "openai-generic": "lensbook.clients.openai_:GENERIC",
    "ollama": "lensbook.clients.openai_:OLLAMA",
    "vllm": "lensbook.clients.openai_:VLLM",
}

#: the entry-point group where installed packages declare providers
ENTRY_POINT_GROUP = "lensbook.providers"


@dataclass(frozen=True)
class Provider:
    """A kind of client, as it describes itself (never a key)."""

    id: str
    #: builds a client from a registry entry's options (keyword arguments)
    factory: Callable[..., LLMClient]
    description: str = ""
    default_model: str = ""
    #: "" for the provider's own API
    default_base_url: str = ""
    #: the environment variable its API key is read from ("" when it needs none)
    key_env: str = ""
    #: the model runs on the user's machine (it costs nothing per token)
    local: bool = False
    #: the lensbook extra its SDK comes with ("" when lensbook's own dependencies suffice)
    extra: str = ""


_registered: dict[str, Provider] = {}


def register_provider(name: str, factory: Callable[..., LLMClient] | Provider) -> None:
    """Make `provider: name` usable in a client registry (and as ``--client name``)."""
    _registered[name] = factory if isinstance(factory, Provider) else Provider(name, factory)


def _entry_points() -> dict[str, Any]:
    return {ep.name: ep for ep in entry_points(group=ENTRY_POINT_GROUP)}


def provider_names() -> list[str]:
    """Every provider id known, without importing any provider."""
    return list(dict.fromkeys([*_registered, *BUILTIN, *_entry_points()]))


def get_provider(name: str) -> Provider:
    """The provider `name`; `ClientNotConfigured` naming the known ones if there is none."""
    if name in _registered:
        return _registered[name]
    if name in BUILTIN:
        module_name, attr = BUILTIN[name].split(":")
        found: Any = getattr(importlib.import_module(module_name), attr)
    else:
        point = _entry_points().get(name)
        if point is None:
            known = ", ".join(sorted(provider_names()))
            raise ClientNotConfigured(f"unknown provider {name!r}; known providers: {known}")
        try:
            found = point.load()
        except Exception as exc:  # a broken third-party package must not look like a typo
            raise ClientNotConfigured(
                f"provider {name!r} ({point.value}) cannot be loaded: {type(exc).__name__}: {exc}"
            ) from None
    if isinstance(found, Provider):
        return found
    if callable(found):
        return Provider(name, found)
    raise ClientNotConfigured(f"provider {name!r} is neither a Provider nor a client factory")


def single_client_registry(
    provider: str, *, model: str | None = None, base_url: str | None = None, name: str = ""
) -> dict[str, Any]:
    """A registry of one client of `provider` (``--client ollama --model qwen2.5:7b``)."""
    options: dict[str, Any] = {}
    if model:
        options["model"] = model
    if base_url:
        options["base_url"] = base_url
    return {"clients": [{"name": name or provider, "provider": provider, "options": options}]}


def registry_names(registry: Mapping[str, Any] | None) -> list[str]:
    """The names of a registry's clients, as written (nothing is built)."""
    return [
        str(e.get("name") or e.get("provider")) if isinstance(e, Mapping) else str(e.name)
        for e in (registry or {}).get("clients") or []
    ]


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
            client = get_provider(provider).factory(**dict(entry.get("options") or {}))
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


def default_client(offline: Callable[[], LLMClient] | None = None) -> LLMClient:
    """Anthropic when ANTHROPIC_API_KEY is set, else `offline()` (the offline investigator)."""
    if os.environ.get("ANTHROPIC_API_KEY"):
        return get_provider("anthropic").factory()
    if offline is not None:
        return offline()
    try:
        module = importlib.import_module("lensbook.clients.offline")
    except ImportError:
        raise ClientNotConfigured(
            "no LLM client: set ANTHROPIC_API_KEY, or pass client=... / client_registry=... "
            "(for example lensbook.ScriptedClient for tests)"
        ) from None
    client: LLMClient = module.OfflineInvestigator()
    return client
