"""One resolver for every client option: objects, notebook variables, offline, the default,
registry names and providers, including a third-party provider found through entry points."""

from __future__ import annotations

import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

from lensbook import ClientNotConfigured
from lensbook.clients import ScriptedClient
from lensbook.clients.chain import ClientChain
from lensbook.clients.offline import OfflineInvestigator
from lensbook.clients.openai_ import OpenAIClient
from lensbook.clients.providers import ProvidersReport, describe_client
from lensbook.clients.registry import ENTRY_POINT_GROUP, provider_names
from lensbook.clients.resolve import resolve_client
from lensbook.coordinator import coordinator_chain
from lensbook.coordinator.offline import OfflineCoordinator

REGISTRY = {
    "clients": [{"name": "box", "provider": "vllm"}, {"name": "local", "provider": "ollama"}],
    "retry": {"attempts": 2, "backoff": 0.0},
}


def test_the_order_of_meanings(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("ANTHROPIC_API_KEY", raising=False)
    sc = ScriptedClient([])
    chain = ClientChain([sc])
    assert resolve_client(chain) is chain
    assert resolve_client(sc).clients == [sc]
    # a notebook variable holding a client wins over every other meaning of its name
    assert resolve_client("local", REGISTRY, namespace={"local": sc}).clients == [sc]
    # a variable holding anything else is not a client: the name keeps its meaning
    assert resolve_client("local", REGISTRY, namespace={"local": 3}).clients[0].name == "local"
    registry_first = resolve_client("local", REGISTRY)
    assert [c.name for c in registry_first.clients] == ["local", "box"]
    assert registry_first.attempts == 2
    assert [c.name for c in resolve_client(None, REGISTRY).clients] == ["box", "local"]
    assert [c.name for c in resolve_client("default", REGISTRY).clients] == ["box", "local"]
    (provider,) = resolve_client("vllm").clients
    assert isinstance(provider, OpenAIClient) and provider.provider == "vllm"
    assert [type(c) for c in resolve_client("offline", REGISTRY).clients] == [OfflineInvestigator]
    assert [type(c) for c in resolve_client().clients] == [OfflineInvestigator]


def test_an_unknown_name_says_what_would_have_been_understood() -> None:
    with pytest.raises(ClientNotConfigured) as no_registry:
        resolve_client("nobody")
    assert "unknown client 'nobody'" in str(no_registry.value)
    assert "ollama" in str(no_registry.value) and "variable" not in str(no_registry.value)
    with pytest.raises(ClientNotConfigured) as with_registry:
        resolve_client("nobody", REGISTRY, namespace={})
    text = str(with_registry.value)
    assert "(box, local)" in text and "a variable holding an LLMClient" in text


def test_the_coordinator_resolves_names_as_operators_do_with_its_own_offline_client(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.delenv("ANTHROPIC_API_KEY", raising=False)
    assert [type(c) for c in coordinator_chain("offline").clients] == [OfflineCoordinator]
    assert [type(c) for c in coordinator_chain(OfflineInvestigator()).clients] == [
        OfflineCoordinator
    ]
    assert [c.name for c in coordinator_chain("local", REGISTRY).clients] == ["local", "box"]
    (provider,) = coordinator_chain("ollama").clients
    assert isinstance(provider, OpenAIClient)
    with pytest.raises(ClientNotConfigured, match="unknown client 'nobody'"):
        coordinator_chain("nobody")


def test_every_client_declares_its_provider_itself() -> None:
    assert describe_client(OfflineInvestigator()).provider == "offline"
    assert describe_client(OfflineInvestigator()).base_url == "in process"
    assert describe_client(OfflineCoordinator()).model == "rules"
    assert describe_client(ScriptedClient([])).provider == "scripted"
    (ollama,) = resolve_client("ollama").clients
    assert describe_client(ollama).provider == "ollama"
    assert {"anthropic", "openai", "openai-generic", "ollama", "vllm"} <= set(provider_names())


def test_the_providers_report_lists_what_each_provider_says_of_itself(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setenv("ANTHROPIC_API_KEY", "sk-ant-never-shown")
    monkeypatch.delenv("OPENAI_API_KEY", raising=False)
    report = ProvidersReport([])
    text, page = report.text(), report.html()
    rows = {line.split()[0]: line for line in text.splitlines()[1:]}
    assert "ANTHROPIC_API_KEY set" in rows["anthropic"]
    assert "OPENAI_API_KEY not set" in rows["openai"]
    assert "http://localhost:11434/v1" in rows["ollama"]
    assert "sk-ant-never-shown" not in text + page + repr(report.to_dict())
    assert "<td>vllm</td>" in page


_THIRD_PARTY = """
from lensbook.clients.base import ModelRequest, ModelTurn, TextBlock
from lensbook.clients.registry import Provider


class AcmeClient:
    provider = "acme"

    def __init__(self, *, model: str = "acme-1", name: str = "acme") -> None:
        self.name, self.model = name, model

    async def complete(self, request: ModelRequest) -> ModelTurn:
        return ModelTurn(content=(TextBlock(text="hello from acme"),))


PROVIDER = Provider("acme", AcmeClient, description="Acme's models", default_model="acme-1")
"""

_CHECK = """
import asyncio
from lensbook import ClientNotConfigured
from lensbook.clients.base import Message, ModelRequest
from lensbook.clients.providers import describe_client, describe_providers
from lensbook.clients.registry import get_provider, provider_names
from lensbook.clients.resolve import resolve_client

assert "acme" in provider_names() and "broken" in provider_names()
assert get_provider("acme").description == "Acme's models"
chain = resolve_client("acme")
info = describe_client(chain.clients[0])
turn = asyncio.run(chain.complete(ModelRequest(system="s", messages=(Message.user("hi"),))))
registry = {"clients": [{"name": "a", "provider": "acme", "options": {"model": "acme-2"}}]}
(built,) = resolve_client("a", registry).clients
try:
    resolve_client("broken")
except ClientNotConfigured as exc:
    broken = str(exc)
rows = {p.id: p.row() for p in describe_providers()}
assert rows["acme"] == ("acme", "Acme's models", ""), rows["acme"]
assert rows["broken"][1].startswith("not usable: provider 'broken'"), rows["broken"]
print(info.provider, info.model, built.model, turn.text, "|", broken)
"""


def test_a_third_party_provider_is_one_package_found_through_entry_points(
    tmp_path: Path,
) -> None:
    """A real installed distribution (a dist-info folder on the path), in a child process."""
    (tmp_path / "acme_lensbook.py").write_text(textwrap.dedent(_THIRD_PARTY))
    dist = tmp_path / "acme_lensbook-1.0.dist-info"
    dist.mkdir()
    (dist / "METADATA").write_text("Metadata-Version: 2.1\nName: acme-lensbook\nVersion: 1.0\n")
    (dist / "entry_points.txt").write_text(
        f"[{ENTRY_POINT_GROUP}]\nacme = acme_lensbook:PROVIDER\nbroken = no_such_module:X\n"
    )
    out = subprocess.run(
        [sys.executable, "-c", f"import sys; sys.path.insert(0, {str(tmp_path)!r})\n" + _CHECK],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert out.returncode == 0, out.stderr
    found, broken = out.stdout.strip().split(" | ")
    assert found == "acme acme-1 acme-2 hello from acme"
    assert "provider 'broken' (no_such_module:X) cannot be loaded: ModuleNotFoundError" in broken
