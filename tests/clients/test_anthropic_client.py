"""AnthropicClient over the wire: the real SDK talking to a scripted local Messages API."""

from __future__ import annotations

import asyncio
from collections.abc import Callable, Iterator
from typing import Any

import anthropic
import pytest

import lensbook
from lensbook import ProviderError
from lensbook.clients.anthropic_ import DEFAULT_MODEL, AnthropicClient
from lensbook.clients.base import Message, ModelRequest, TextBlock, ToolCall, ToolResult, ToolSpec
from lensbook.clients.registry import default_client
from lensbook.clients.resolve import resolve_client
from lensbook.types import TokenUsage
from tests.fakes.messages_server import (
    Delay,
    MessagesServer,
    RecordedRequest,
    Reply,
    api_error,
    bad_request,
    error,
    message,
    overloaded,
    rate_limited,
    server_pool,
    text,
    tool_use,
    tool_uses,
)

Servers = Callable[..., MessagesServer]


@pytest.fixture
def servers() -> Iterator[Servers]:
    """Starts scripted Messages API servers on 127.0.0.1; all are stopped after the test."""
    with server_pool() as start:
        yield start


EPHEMERAL = {"type": "ephemeral"}
BASE_TOOLS = {
    "take_snapshot",
    "get_snapshot",
    "get_snapshots",
    "send_notification",
    "get_notifications",
    "set_state",
    "think",
    "wait",
    "done",
}


def _api_key(request: RecordedRequest) -> str | None:
    """The key the SDK sent (as x-api-key or as a bearer token, depending on its version)."""
    if "x-api-key" in request.headers:
        return request.headers["x-api-key"]
    auth = request.headers.get("authorization", "")
    return auth.removeprefix("Bearer ") if auth.startswith("Bearer ") else None


def _notify_citing_snapshot(request: RecordedRequest, _server: MessagesServer) -> dict[str, Any]:
    """Turn 3 of the investigation: cite the snapshot id that take_snapshot returned."""
    snapshot = request.result_of("take_snapshot")
    return tool_uses(
        tool_use(
            "send_notification",
            id="toolu_notify",
            anomaly_type="rss_growth",
            severity="warning",
            context="the process was asked why its memory grows",
            observation=f"RSS is {snapshot['data']['rss_mb']} MB",
            snapshot_ids=[snapshot["id"]],
            hypothesis="a cache that is never trimmed",
        ),
        input_tokens=300,
        output_tokens=40,
        cache_read_input_tokens=None,  # the API may omit cache figures: read as 0
        cache_creation_input_tokens=None,
    )


def test_full_investigation_speaks_the_messages_api(servers: Servers) -> None:
    server = servers(
        [
            tool_uses(
                tool_use("take_snapshot", id="toolu_snap"),
                input_tokens=100,
                output_tokens=10,
                cache_creation_input_tokens=2000,
            ),
            tool_uses(
                text("Looking at memory, and at a probe that does not exist."),
                tool_use("runtime_memory_info", id="toolu_mem"),
                tool_use("runtime_no_such_probe", id="toolu_bogus"),
                input_tokens=200,
                output_tokens=20,
                cache_read_input_tokens=2000,
            ),
            _notify_citing_snapshot,
            tool_uses(
                tool_use("set_state", id="toolu_state", state="warning", reason="RSS grows"),
                input_tokens=400,
                output_tokens=30,
                cache_read_input_tokens=2000,
            ),
            tool_uses(
                tool_use("done", id="toolu_done", summary="RSS grows; one warning sent."),
                input_tokens=500,
                output_tokens=50,
                cache_read_input_tokens=2000,
            ),
        ]
    )
    client = AnthropicClient(base_url=server.url, api_key="test-key", model="claude-haiku-4-5")
    op = lensbook.Operator.start(skill="runtime", client=client)

    notes = op.run(reason="memory keeps growing")

    result = notes.result
    assert result.stop_reason == "done"
    assert result.iterations == 5
    assert result.state == "warning"
    assert result.summary == "RSS grows; one warning sent."
    assert result.client == "anthropic"
    assert len(result.snapshots) == 1
    snapshot = result.snapshots[0]
    assert len(notes) == 1
    assert notes[0].anomaly_type == "rss_growth"
    assert notes[0].severity == "warning"
    assert notes[0].snapshot_ids == (snapshot.id,)
    assert notes[0].observation == f"RSS is {snapshot.data['rss_mb']} MB"
    assert result.usage == TokenUsage(
        input_tokens=100 + 200 + 300 + 400 + 500,
        output_tokens=10 + 20 + 40 + 30 + 50,
        cache_read_input_tokens=3 * 2000,
        cache_creation_input_tokens=2000,
    )

    requests = server.requests
    assert len(requests) == 5
    for request in requests:
        body = request.body
        assert request.path == "/v1/messages"
        assert _api_key(request) == "test-key"
        assert body["model"] == "claude-haiku-4-5"
        assert body["max_tokens"] == 4096
        # the cached prefix: the system prompt, and every tool up to the last
        assert len(body["system"]) == 1
        assert body["system"][0]["type"] == "text"
        assert body["system"][0]["text"].startswith("You are the runtime operator")
        assert body["system"][0]["cache_control"] == EPHEMERAL
        tools = body["tools"]
        names = {t["name"] for t in tools}
        assert names >= BASE_TOOLS | {"runtime_memory_info", "runtime_interpreter"}
        assert all(t["input_schema"]["type"] == "object" for t in tools)
        assert all(t["description"] for t in tools)
        assert tools[-1]["cache_control"] == EPHEMERAL
        assert all("cache_control" not in t for t in tools[:-1])
        roles = [m["role"] for m in body["messages"]]
        assert roles == ["user", "assistant"] * (len(roles) // 2) + ["user"]
    notify_schema = next(t for t in requests[0].body["tools"] if t["name"] == "send_notification")
    assert "snapshot_ids" in notify_schema["input_schema"]["required"]

    # each tool_result answers the tool_use ids of the assistant turn just before it, in order
    sent_ids = [
        ["toolu_snap"],
        ["toolu_mem", "toolu_bogus"],
        ["toolu_notify"],
        ["toolu_state"],
    ]
    for request, ids in zip(requests[1:], sent_ids, strict=True):
        assistant, user = request.body["messages"][-2:]
        assert [b["id"] for b in assistant["content"] if b["type"] == "tool_use"] == ids
        assert [b["tool_use_id"] for b in user["content"]] == ids
        assert all(b["type"] == "tool_result" for b in user["content"])

    mem_turn, mem_results = requests[2].body["messages"][-2:]
    assert mem_turn["content"][0] == {
        "type": "text",
        "text": "Looking at memory, and at a probe that does not exist.",
    }
    results = {b["tool_use_id"]: b for b in mem_results["content"]}
    assert results["toolu_mem"]["is_error"] is False
    assert "rss_mb" in results["toolu_mem"]["content"]
    assert results["toolu_bogus"]["is_error"] is True
    assert "unknown tool 'runtime_no_such_probe'" in results["toolu_bogus"]["content"]
    notified = requests[3].result_of("send_notification")
    assert notified["status"] == "sent"
    assert notified["id"] == notes[0].id


def _request(
    *messages: Message, tools: tuple[ToolSpec, ...] = (), system: str = ""
) -> ModelRequest:
    return ModelRequest(system=system, messages=messages, tools=tools, max_tokens=256)


def _complete(client: AnthropicClient, request: ModelRequest) -> Any:
    async def ask() -> Any:
        try:
            return await client.complete(request)
        finally:
            await client.aclose()

    return asyncio.run(ask())


def test_request_without_tools_sends_no_tools_and_merges_same_role_messages(
    servers: Servers,
) -> None:
    server = servers([message(text("a summary"), stop_reason="end_turn")])
    client = AnthropicClient(base_url=server.url, api_key="k", max_tokens=99)
    request = _request(
        Message.user("first"),
        Message.user("second"),
        Message.assistant("let me look", ToolCall(id="t1", name="probe", arguments={"n": 1})),
        Message.user(ToolResult(tool_call_id="t1", content="42")),
        Message.user("now sum up"),
    )

    turn = _complete(client, request)

    assert turn.text == "a summary"
    assert turn.tool_calls == []
    assert turn.stop_reason == "end_turn"
    assert turn.model == DEFAULT_MODEL
    body = server.requests[0].body
    assert "tools" not in body
    assert "system" not in body  # an empty system prompt is not sent
    assert body["max_tokens"] == 99  # the client's override wins over the request's
    assert body["model"] == DEFAULT_MODEL
    assert body["messages"] == [
        {
            "role": "user",
            "content": [{"type": "text", "text": "first"}, {"type": "text", "text": "second"}],
        },
        {
            "role": "assistant",
            "content": [
                {"type": "text", "text": "let me look"},
                {"type": "tool_use", "id": "t1", "name": "probe", "input": {"n": 1}},
            ],
        },
        {
            "role": "user",
            "content": [
                {"type": "tool_result", "tool_use_id": "t1", "content": "42", "is_error": False},
                {"type": "text", "text": "now sum up"},
            ],
        },
    ]


def test_response_blocks_stop_reason_and_usage_are_converted(servers: Servers) -> None:
    server = servers(
        [
            message(
                text("I will look."),
                tool_use("runtime_interpreter", id="toolu_1"),
                tool_use("set_state", id="toolu_2", state="observing", reason="r"),
                model="claude-answering-model",
                input_tokens=7,
                output_tokens=8,
                cache_read_input_tokens=9,
                cache_creation_input_tokens=None,
            )
        ]
    )
    spec = ToolSpec(name="runtime_interpreter", description="d", input_schema={"properties": {}})
    client = AnthropicClient(base_url=server.url, api_key="k")

    turn = _complete(client, _request(Message.user("go"), tools=(spec,), system="be brief"))

    assert turn.content == (
        TextBlock(text="I will look."),
        ToolCall(id="toolu_1", name="runtime_interpreter", arguments={}),
        ToolCall(id="toolu_2", name="set_state", arguments={"state": "observing", "reason": "r"}),
    )
    assert turn.stop_reason == "tool_use"
    assert turn.model == "claude-answering-model"
    assert turn.usage == TokenUsage(
        input_tokens=7, output_tokens=8, cache_read_input_tokens=9, cache_creation_input_tokens=0
    )
    body = server.requests[0].body
    assert body["system"] == [{"type": "text", "text": "be brief", "cache_control": EPHEMERAL}]
    assert body["tools"] == [
        {
            "name": "runtime_interpreter",
            "description": "d",
            "input_schema": {"properties": {}, "type": "object"},
            "cache_control": EPHEMERAL,
        }
    ]


@pytest.mark.parametrize(
    ("reply", "retryable"),
    [
        (rate_limited(), True),
        (api_error(), True),
        (error(503, "api_error", "service unavailable"), True),
        (overloaded(), True),
        (bad_request(), False),
        (error(401, "authentication_error", "invalid x-api-key"), False),
        (error(403, "permission_error", "no access to this model"), False),
        (error(404, "not_found_error", "model: claude-nope"), False),
    ],
    ids=lambda v: str(v.status) if isinstance(v, Reply) else str(v),
)
def test_http_errors_become_provider_errors(
    servers: Servers, reply: Reply, retryable: bool
) -> None:
    server = servers([reply])
    client = AnthropicClient(base_url=server.url, api_key="k")

    with pytest.raises(ProviderError) as caught:
        _complete(client, _request(Message.user("hi")))

    assert caught.value.retryable is retryable
    assert caught.value.status == reply.status
    assert isinstance(caught.value.__cause__, anthropic.APIStatusError)
    assert reply.body["error"]["type"] in str(caught.value)
    assert reply.body["error"]["message"] in str(caught.value)
    assert reply.headers["request-id"] in str(caught.value)
    assert len(server.requests) == 1  # the SDK's own retries are off


def test_timeout_is_a_retryable_provider_error(servers: Servers) -> None:
    server = servers([Delay(5.0)])
    client = AnthropicClient(base_url=server.url, api_key="k", timeout=0.2)

    with pytest.raises(ProviderError) as caught:
        _complete(client, _request(Message.user("hi")))

    assert caught.value.retryable is True
    assert isinstance(caught.value.__cause__, anthropic.APITimeoutError)
    assert "no answer within 0.2 s" in str(caught.value)
    assert len(server.requests) == 1


def test_refused_connection_is_a_retryable_provider_error(servers: Servers) -> None:
    server = servers()
    url = server.url
    server.stop()  # nothing listens on that port any more
    client = AnthropicClient(base_url=url, api_key="k", timeout=2.0)

    with pytest.raises(ProviderError) as caught:
        _complete(client, _request(Message.user("hi")))

    assert caught.value.retryable is True
    assert isinstance(caught.value.__cause__, anthropic.APIConnectionError)


def test_malformed_answer_is_a_provider_error(servers: Servers) -> None:
    server = servers([Reply(200, {"unexpected": True})])
    client = AnthropicClient(base_url=server.url, api_key="k")

    with pytest.raises(ProviderError) as caught:
        _complete(client, _request(Message.user("hi")))

    assert caught.value.retryable is False


def test_missing_credentials_are_a_provider_error(
    servers: Servers, monkeypatch: pytest.MonkeyPatch, tmp_path: Any
) -> None:
    for var in ("ANTHROPIC_API_KEY", "ANTHROPIC_AUTH_TOKEN", "ANTHROPIC_PROFILE"):
        monkeypatch.delenv(var, raising=False)
    monkeypatch.setenv("ANTHROPIC_CONFIG_DIR", str(tmp_path))  # no profile on disk either
    server = servers([message(text("never sent"))])
    client = AnthropicClient(base_url=server.url)

    with pytest.raises(ProviderError) as caught:
        _complete(client, _request(Message.user("hi")))

    assert caught.value.retryable is False
    assert server.requests == []


def test_sdk_client_is_made_per_event_loop(servers: Servers) -> None:
    server = servers([message(text("one")), message(text("two"))])
    client = AnthropicClient(base_url=server.url, api_key="k")
    request = _request(Message.user("hi"))

    # two asyncio.run calls: two loops, as after lensbook.stop() and a new lens loop
    first = asyncio.run(client.complete(request))
    second = _complete(client, request)

    assert (first.text, second.text) == ("one", "two")


def test_default_client_is_anthropic_when_the_key_is_set(
    servers: Servers, monkeypatch: pytest.MonkeyPatch
) -> None:
    server = servers([tool_uses(tool_use("done", summary="nothing to see"))])
    monkeypatch.setenv("ANTHROPIC_API_KEY", "env-key")
    monkeypatch.setenv("ANTHROPIC_BASE_URL", server.url)  # the SDK's own setting

    client = default_client()
    assert isinstance(client, AnthropicClient)
    assert client.name == "anthropic"
    assert client.model == DEFAULT_MODEL

    # and a run with no client at all goes to it
    notes = lensbook.Operator.start(skill="runtime").run(reason="check")
    assert notes.result.client == "anthropic"
    assert notes.result.summary == "nothing to see"
    assert _api_key(server.requests[0]) == "env-key"
    assert server.requests[0].body["model"] == DEFAULT_MODEL


def test_client_registry_builds_anthropic_clients(servers: Servers) -> None:
    server = servers([tool_uses(tool_use("done", summary="fine"))])
    registry = {
        "primary": "claude",
        "clients": [
            {"name": "spare", "provider": "anthropic", "options": {"api_key": "spare-key"}},
            {
                "name": "claude",
                "provider": "anthropic",
                "options": {
                    "model": "claude-haiku-4-5",
                    "base_url": server.url,
                    "api_key": "registry-key",
                    "timeout": 5.0,
                },
            },
        ],
        "retry": {"attempts": 2, "backoff": 0.01},
    }

    chain = resolve_client(None, registry)
    assert [c.name for c in chain.clients] == ["claude", "spare"]
    assert all(isinstance(c, AnthropicClient) for c in chain.clients)
    assert chain.attempts == 2

    notes = lensbook.Operator.start(skill="runtime", client_registry=registry).run(reason="x")
    assert notes.result.client == "claude"
    assert notes.result.summary == "fine"
    assert len(server.requests) == 1
    assert _api_key(server.requests[0]) == "registry-key"
    assert server.requests[0].body["model"] == "claude-haiku-4-5"
