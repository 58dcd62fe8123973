"""What a client option means: the one resolver `lensbook.run`, operators, the coordinator, the
command line and the ``%lens`` magics all use, so ``--client NAME`` means the same everywhere.

    chain = resolve_client("local", registry)       # "local" first, the registry's rest after
    chain = resolve_client("ollama")                # a provider: a one-client registry of it
    chain = resolve_client("sc", namespace=user_ns) # a notebook variable holding a client

A client option is, in this order:

1. a `ClientChain` (used as it is) or an `LLMClient` object (a chain of one);
2. a name of a variable in `namespace` (a notebook's) that holds either;
3. ``"offline"``: the caller's offline client (the offline investigator for an operator, the
   offline coordinator for a coordinator), key or no key;
4. None or ``"default"``: the registry's chain if there is one, else Anthropic when
   ANTHROPIC_API_KEY is set, else the offline client;
5. a name in the registry: that client first, the others as fallback;
6. a provider id (``anthropic``, ``ollama``, an installed package's): one client of it.

Anything else is `ClientNotConfigured` naming what would have been understood. Building a
chain reaches no network.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import Any

from lensbook._errors import ClientNotConfigured
from lensbook.clients.base import LLMClient
from lensbook.clients.chain import ClientChain
from lensbook.clients.registry import (
    clients_from_registry,
    default_client,
    provider_names,
    registry_names,
    single_client_registry,
)

__all__ = ["ClientOption", "resolve_client"]

#: what a caller may pass as `client=`
ClientOption = LLMClient | ClientChain | str | None


def _offline_investigator() -> LLMClient:
    from lensbook.clients.offline import OfflineInvestigator

    return OfflineInvestigator()


def resolve_client(
    client: ClientOption = None,
    registry: Mapping[str, Any] | None = None,
    *,
    namespace: Mapping[str, Any] | None = None,
    offline: Callable[[], LLMClient] = _offline_investigator,
) -> ClientChain:
    """The chain a run uses for the client option `client` (see the module's docstring)."""
    retry = dict((registry or {}).get("retry") or {})
    if isinstance(client, ClientChain):
        return client
    if isinstance(client, str) and namespace is not None:
        held = namespace.get(client)
        if isinstance(held, (LLMClient, ClientChain)):
            return resolve_client(held, registry)
    if client is None or client == "default":
        if registry is not None:
            return ClientChain(clients_from_registry(registry), **retry)
        return ClientChain([default_client(offline)])
    if not isinstance(client, str):
        return ClientChain([client], **retry)
    if client == "offline":
        return ClientChain([offline()], **retry)
    if client in registry_names(registry):
        assert registry is not None
        clients = clients_from_registry(registry)
        chosen = [c for c in clients if c.name == client]
        rest = [c for c in clients if c.name != client]
        return ClientChain(chosen + rest, **retry)
    if client in provider_names():
        return ClientChain(clients_from_registry(single_client_registry(client)), **retry)
    raise ClientNotConfigured(_unknown(client, registry, namespace is not None))


def _unknown(name: str, registry: Mapping[str, Any] | None, has_namespace: bool) -> str:
    providers = ", ".join(provider_names())
    if registry is None:
        use = f"no client registry given, so use offline, default or a provider ({providers})"
    else:
        names = ", ".join(registry_names(registry))
        use = (
            f"use offline, default, a client of the registry ({names}) or a provider ({providers})"
        )
    variable = ", or the name of a variable holding an LLMClient" if has_namespace else ""
    return f"unknown client {name!r}: {use}{variable}"
