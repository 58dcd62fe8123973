"""Reading a client configuration, and the providers report the `%lens providers` magic shows."""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path

import pytest

import lensbook
from lensbook import ClientNotConfigured
from lensbook.clients.chain import ClientChain
from lensbook.clients.offline import OfflineInvestigator
from lensbook.clients.openai_ import OpenAIClient
from lensbook.clients.providers import (
    REGISTRY_ENV,
    ProvidersReport,
    load_registry,
    providers_report,
)
from lensbook.clients.resolve import resolve_client
from tests.fakes.chat_server import ChatServer, completion, server_pool, tool_call


@pytest.fixture
def chat() -> Iterator[ChatServer]:
    with server_pool() as start:
        yield start(
            [completion(tool_call("take_snapshot")), completion(tool_call("done", summary="ok"))]
        )


@pytest.fixture(autouse=True)
def _no_configuration(monkeypatch: pytest.MonkeyPatch) -> None:
    for var in ("ANTHROPIC_API_KEY", "OPENAI_API_KEY", REGISTRY_ENV):
        monkeypatch.delenv(var, raising=False)


def test_registry_from_text_a_file_or_the_environment(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    registry = {"clients": [{"name": "local", "provider": "ollama"}]}
    path = tmp_path / "clients.json"
    path.write_text(json.dumps(registry))

    assert load_registry(json.dumps(registry)) == registry
    assert load_registry(str(path)) == registry
    assert load_registry(None) is None
    monkeypatch.setenv(REGISTRY_ENV, str(path))
    assert load_registry(None) == registry
    with pytest.raises(ClientNotConfigured, match="a 'clients' list"):
        load_registry('{"primary": "x"}')


def test_resolve_client(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("ANTHROPIC_API_KEY", raising=False)
    registry = {
        "clients": [
            {"name": "a", "provider": "ollama"},
            {"name": "b", "provider": "vllm"},
        ]
    }

    (offline,) = resolve_client("offline", registry).clients
    assert isinstance(offline, OfflineInvestigator)
    # no name, no registry: lensbook's default, offline without a key
    assert [type(c) for c in resolve_client(None, None).clients] == [OfflineInvestigator]
    chosen = resolve_client("b", registry)
    assert isinstance(chosen, ClientChain)
    assert [c.name for c in chosen.clients] == ["b", "a"]
    alone = resolve_client("ollama", None)
    assert isinstance(alone, ClientChain)
    (client,) = alone.clients
    assert isinstance(client, OpenAIClient) and client.provider == "ollama"
    with pytest.raises(ClientNotConfigured, match="no client registry given"):
        resolve_client("nobody", None)


def test_report_without_operators_shows_the_default_chain() -> None:
    report = providers_report({})

    assert "offline investigator" in report.text()
    assert "no operator is started" in report.text()


def test_report_shows_each_operators_chain_and_who_answered(chat: ChatServer) -> None:
    registry = {
        "clients": [
            {
                "name": "local",
                "provider": "ollama",
                "options": {"base_url": chat.base_url, "model": "qwen2.5:7b"},
            }
        ]
    }
    lensbook.start(["runtime", "gc"], client_registry=registry, sample_interval=None)
    result = lensbook.run("runtime", reason="check").result

    report = providers_report()

    assert isinstance(report, ProvidersReport)
    (chain,) = report.chains  # both operators use one chain, shown once
    assert chain.label == "runtime, gc"
    assert [(c.name, c.provider, c.model, c.base_url) for c in chain.clients] == [
        ("local", "ollama", "qwen2.5:7b", chat.base_url)
    ]
    assert report.answered == {
        "runtime": f"local (run {result.run_id}, {result.state}, done)",
        "gc": "no run yet",
    }
    bundle = report._repr_mimebundle_()
    assert set(bundle) == {"text/plain", "text/html"}
    assert bundle["text/plain"] == repr(report)
    assert "last answer:" in bundle["text/plain"]
    assert f"local (run {result.run_id}" in bundle["text/plain"]
    assert "<table>" in bundle["text/html"]
    assert "qwen2.5:7b" in bundle["text/html"]
