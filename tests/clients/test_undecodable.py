"""Undecodable provider answers: retried, then the chain falls back (both wire formats)."""

from __future__ import annotations

import json
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import pytest

import lensbook
from lensbook.events import Event
from tests.fakes import chat_server, messages_server
from tests.fakes._scripted import Raw, undecodable

BROKEN = sorted(undecodable(b"{}"))


@dataclass(frozen=True)
class Wire:
    """One wire format: its fake server, a good answer to break, a final answer, its URL."""

    server_pool: Callable[[], Any]
    good_answer: Callable[[], dict[str, Any]]
    done: Any
    url: Callable[[Any], str]


WIRES = {
    "anthropic": Wire(
        messages_server.server_pool,
        lambda: messages_server.message(messages_server.text("x" * 200), model="claude-fake"),
        messages_server.tool_uses(messages_server.tool_use("done", summary="all quiet")),
        lambda server: str(server.url),
    ),
    "openai": Wire(
        chat_server.server_pool,
        lambda: chat_server.completion(content="x" * 200, model="m"),
        chat_server.completion(chat_server.tool_call("done", summary="all quiet")),
        lambda server: str(server.base_url),
    ),
}


def _broken(wire: Wire, kind: str) -> Raw:
    return undecodable(json.dumps(wire.good_answer()).encode())[kind]


def _client(provider: str, name: str, url: str) -> dict[str, Any]:
    return {
        "name": name,
        "provider": provider,
        "options": {"base_url": url, "api_key": "k", "model": "m", "timeout": 10.0},
    }


def _investigate(clients: list[dict[str, Any]]) -> lensbook.CompletionResult:
    registry = {
        "primary": clients[0]["name"],
        "clients": clients,
        "retry": {"attempts": 2, "backoff": 0.01},
    }
    op = lensbook.Operator.start(skill="runtime", client_registry=registry)
    return op.run(reason="is anything wrong?").result


@pytest.mark.parametrize("provider", sorted(WIRES))
@pytest.mark.parametrize("kind", BROKEN)
def test_an_undecodable_answer_is_retried_then_falls_back(
    provider: str, kind: str, chain_events: list[Event]
) -> None:
    wire = WIRES[provider]
    with wire.server_pool() as start:
        broken = start(then=_broken(wire, kind))
        healthy = start([wire.done])
        result = _investigate(
            [
                _client(provider, "primary", wire.url(broken)),
                _client(provider, "backup", wire.url(healthy)),
            ]
        )
    assert result.stop_reason == "done" and result.client == "backup"
    assert len(broken.requests) == 2  # retried once: the error was retryable
    assert [e.kind for e in chain_events] == ["model_retry", "client_fallback"]
