"""Undecodable provider answers: retried, then the chain falls back (both wire formats)."""

from __future__ import annotations

import json
from collections.abc import Iterator
from typing import Any

import pytest

import lensbook
from lensbook.events import Event, subscribe, unsubscribe
from tests.fakes import chat_server, messages_server
from tests.fakes._scripted import Raw, undecodable

BROKEN = sorted(undecodable(b"{}"))


@pytest.fixture
def chain_events() -> Iterator[list[Event]]:
    seen: list[Event] = []
    token = subscribe(seen.append, kinds=("model_retry", "client_fallback"))
    yield seen
    unsubscribe(token)


def _anthropic_broken(kind: str) -> Raw:
    good = json.dumps(
        messages_server.message(messages_server.text("x" * 200), model="claude-fake")
    ).encode()
    return undecodable(good)[kind]


def _openai_broken(kind: str) -> Raw:
    good = json.dumps(chat_server.completion(content="x" * 200, model="m")).encode()
    return undecodable(good)[kind]


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


@pytest.mark.parametrize("kind", BROKEN)
def test_anthropic_undecodable_answer_is_retried_then_falls_back(
    kind: str, chain_events: list[Event]
) -> None:
    done = messages_server.tool_uses(messages_server.tool_use("done", summary="all quiet"))
    with messages_server.server_pool() as start:
        broken = start(then=_anthropic_broken(kind))
        healthy = start([done])
        result = _investigate(
            [
                _client("anthropic", "primary", broken.url),
                _client("anthropic", "backup", healthy.url),
            ]
        )
    assert result.stop_reason == "done" and result.client == "backup"
    assert len(broken.requests) == 2  # retried once: the error was retryable
    assert [e.kind for e in chain_events] == ["model_retry", "client_fallback"]


@pytest.mark.parametrize("kind", BROKEN)
def test_openai_undecodable_answer_is_retried_then_falls_back(
    kind: str, chain_events: list[Event]
) -> None:
    done = chat_server.completion(chat_server.tool_call("done", summary="all quiet"))
    with chat_server.server_pool() as start:
        broken = start(then=_openai_broken(kind))
        healthy = start([done])
        result = _investigate(
            [
                _client("openai", "primary", broken.base_url),
                _client("openai", "backup", healthy.base_url),
            ]
        )
    assert result.stop_reason == "done" and result.client == "backup"
    assert len(broken.requests) == 2
    assert [e.kind for e in chain_events] == ["model_retry", "client_fallback"]
