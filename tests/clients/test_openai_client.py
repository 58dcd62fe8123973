"""OpenAIClient over the wire: the real openai SDK talking to a scripted local chat API."""

from __future__ import annotations

import asyncio
import json
import subprocess
import sys
from collections.abc import Callable, Iterator
from typing import Any

import openai
import pytest

import lensbook
from lensbook import ProviderError
from lensbook.clients.base import Message, ModelRequest, TextBlock, ToolCall, ToolResult, ToolSpec
from lensbook.clients.openai_ import OLLAMA_URL, VLLM_URL, OpenAIClient
from lensbook.clients.registry import clients_from_registry
from lensbook.clients.resolve import resolve_client
from lensbook.events import Event
from lensbook.types import TokenUsage
from tests.fakes import messages_server as anthropic_fake
from tests.fakes.chat_server import (
    ChatRequest,
    ChatServer,
    Delay,
    Reply,
    bad_request,
    completion,
    error,
    rate_limited,
    server_error,
    text_reply,
    tool_call,
)
from tests.fakes.chat_server import server_pool as chat_pool
from tests.fakes.messages_server import MessagesServer
from tests.fakes.messages_server import server_pool as messages_pool

Chats = Callable[..., ChatServer]
Servers = Callable[..., MessagesServer]


@pytest.fixture
def chats() -> Iterator[Chats]:
    """Starts scripted chat completions servers on 127.0.0.1; all are stopped after the test."""
    with chat_pool() as start:
        yield start


@pytest.fixture
def servers() -> Iterator[Servers]:
    """Starts scripted Anthropic Messages servers on 127.0.0.1."""
    with messages_pool() as start:
        yield start


@pytest.fixture(autouse=True)
def _no_openai_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    """The SDK reads these; a developer's own must not leak into the tests."""
    for var in ("OPENAI_API_KEY", "OPENAI_BASE_URL", "OPENAI_ORG_ID", "OPENAI_PROJECT_ID"):
        monkeypatch.delenv(var, raising=False)


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

MALFORMED = completion(tool_call("take_snapshot", arguments='{"oops'))
DONE = completion(tool_call("done", summary="all quiet"))


def _local(name: str, server: ChatServer, provider: str = "ollama", **options: Any) -> Any:
    return {
        "name": name,
        "provider": provider,
        "options": {"base_url": server.base_url, "model": "qwen2.5:7b", "timeout": 5.0, **options},
    }


def _claude(name: str, server: MessagesServer) -> dict[str, Any]:
    return {
        "name": name,
        "provider": "anthropic",
        "options": {"base_url": server.url, "api_key": "k", "model": "claude-haiku-4-5"},
    }


def _registry(*entries: dict[str, Any], attempts: int = 3) -> dict[str, Any]:
    return {"clients": list(entries), "retry": {"attempts": attempts, "backoff": 0.01}}


def _kinds(events: list[Event]) -> list[str]:
    return [e.kind for e in events]


def _notify_and_warn(request: ChatRequest, _server: ChatServer) -> dict[str, Any]:
    """Turn 3: two parallel calls, a notification citing the snapshot and a state change."""
    snapshot = request.result_of("take_snapshot")
    return completion(
        tool_call(
            "send_notification",
            id="call_notify",
            anomaly_type="rss_growth",
            severity="warning",
            context="the process was asked why its memory grows",
            observation=f"RSS is {snapshot['data']['rss_mb']} MB",
            snapshot_ids=[snapshot["id"]],
        ),
        tool_call("set_state", id="call_state", state="warning", reason="RSS grows"),
        prompt_tokens=300,
        completion_tokens=40,
    )


def test_full_investigation_speaks_chat_completions(chats: Chats) -> None:
    server = chats(
        [
            completion(tool_call("take_snapshot", id="call_snap"), completion_tokens=10),
            completion(
                tool_call("runtime_memory_info", id="call_mem"),
                tool_call("runtime_no_such_probe", id="call_bogus"),
                content="Looking at memory, and at a probe that does not exist.",
                prompt_tokens=200,
                cached_tokens=150,
            ),
            _notify_and_warn,
            completion(tool_call("done", id="call_done", summary="RSS grows; one warning.")),
        ]
    )
    op = lensbook.Operator.start(
        skill="runtime", client_registry=_registry(_local("local", server))
    )

    notes = op.run(reason="memory keeps growing")

    result = notes.result
    assert result.stop_reason == "done"
    assert result.iterations == 4
    assert result.state == "warning"
    assert result.summary == "RSS grows; one warning."
    assert result.client == "local"
    (snapshot,) = result.snapshots
    (note,) = notes
    assert note.snapshot_ids == (snapshot.id,)
    assert note.observation == f"RSS is {snapshot.data['rss_mb']} MB"
    # cached prompt tokens are counted apart, as Anthropic's cache reads are
    assert result.usage == TokenUsage(
        input_tokens=100 + 50 + 300 + 100,
        output_tokens=10 + 20 + 40 + 20,
        cache_read_input_tokens=150,
    )

    requests = server.requests
    assert len(requests) == 4
    for request in requests:
        body = request.body
        assert request.path == "/v1/chat/completions"
        # a local server needs no key; the SDK still sends one
        assert request.headers["authorization"] == "Bearer not-needed"
        assert body["model"] == "qwen2.5:7b"
        assert body["max_tokens"] == 4096
        assert "max_completion_tokens" not in body
        assert "stream" not in body or body["stream"] is False
        system = body["messages"][0]
        assert system["role"] == "system"
        assert system["content"].startswith("You are the runtime operator")
        assert body["messages"][1]["role"] == "user"
        tools = body["tools"]
        assert all(t["type"] == "function" for t in tools)
        names = {t["function"]["name"] for t in tools}
        assert names >= BASE_TOOLS | {"runtime_memory_info"}
        assert all(t["function"]["parameters"]["type"] == "object" for t in tools)
    notify = next(
        t for t in requests[0].body["tools"] if t["function"]["name"] == "send_notification"
    )
    assert "snapshot_ids" in notify["function"]["parameters"]["required"]

    # each turn's tool messages answer the calls of the assistant message just before, in order
    sent_ids = [["call_snap"], ["call_mem", "call_bogus"], ["call_notify", "call_state"]]
    for request, ids in zip(requests[1:], sent_ids, strict=True):
        messages = request.body["messages"]
        assistant = messages[-1 - len(ids)]
        assert assistant["role"] == "assistant"
        assert [c["id"] for c in assistant["tool_calls"]] == ids
        assert [m["tool_call_id"] for m in messages[-len(ids) :]] == ids
        assert all(m["role"] == "tool" for m in messages[-len(ids) :])
    mem_turn = requests[2].body["messages"][-3]
    assert mem_turn["content"] == "Looking at memory, and at a probe that does not exist."
    results = {m["tool_call_id"]: m["content"] for m in requests[2].tool_messages}
    assert "rss_mb" in results["call_mem"]
    assert results["call_bogus"].startswith("ERROR: unknown tool 'runtime_no_such_probe'")
    notified = requests[3].result_of("send_notification")
    assert notified == {"id": note.id, "status": "sent"}
    assert requests[3].result_of("set_state") == {"state": "warning", "previous": "healthy"}


def _request(
    *messages: Message, tools: tuple[ToolSpec, ...] = (), system: str = ""
) -> ModelRequest:
    return ModelRequest(system=system, messages=messages, tools=tools, max_tokens=256)


def _complete(client: OpenAIClient, request: ModelRequest) -> Any:
    async def ask() -> Any:
        try:
            return await client.complete(request)
        finally:
            await client.aclose()

    return asyncio.run(ask())


def test_conversation_is_converted_to_chat_messages(chats: Chats) -> None:
    server = chats([text_reply("a summary")])
    client = OpenAIClient(base_url=server.base_url, model="m", max_tokens=99)
    request = _request(
        Message.user("first"),
        Message.user("second"),
        Message.assistant(
            "let me look",
            ToolCall(id="t1", name="probe", arguments={"n": 1}),
            ToolCall(id="t2", name="probe", arguments='{"n": 2'),
        ),
        Message.user(
            ToolResult(tool_call_id="t1", content="42"),
            ToolResult(tool_call_id="t2", content="arguments are not valid JSON", is_error=True),
            ToolResult(tool_call_id="elsewhere", content="stray"),
            "now sum up",
        ),
        Message.assistant(ToolCall(id="t3", name="probe", arguments={})),
        Message.user("the result of t3 was lost"),
    )

    turn = _complete(client, request)

    assert turn.text == "a summary"
    assert turn.tool_calls == []
    assert turn.stop_reason == "end_turn"
    assert turn.model == "m"
    body = server.requests[0].body
    assert "tools" not in body
    assert body["max_tokens"] == 99  # the client's override wins over the request's
    assert body["messages"] == [
        {"role": "user", "content": "first"},
        {"role": "user", "content": "second"},
        {
            "role": "assistant",
            "content": "let me look",
            "tool_calls": [
                {
                    "id": "t1",
                    "type": "function",
                    "function": {"name": "probe", "arguments": '{"n":1}'},
                },
                {
                    "id": "t2",
                    "type": "function",
                    # servers that parse the history get an object; the model sees what it sent
                    "function": {
                        "name": "probe",
                        "arguments": '{"invalid_arguments":"{\\"n\\": 2"}',
                    },
                },
            ],
        },
        {"role": "tool", "tool_call_id": "t1", "content": "42"},
        {"role": "tool", "tool_call_id": "t2", "content": "ERROR: arguments are not valid JSON"},
        {"role": "user", "content": "[tool result elsewhere] stray\nnow sum up"},
        {
            "role": "assistant",
            "content": None,
            "tool_calls": [
                {"id": "t3", "type": "function", "function": {"name": "probe", "arguments": "{}"}}
            ],
        },
        {"role": "tool", "tool_call_id": "t3", "content": "(no result was recorded for this call)"},
        {"role": "user", "content": "the result of t3 was lost"},
    ]


def test_response_calls_arguments_and_usage_are_converted(chats: Chats) -> None:
    server = chats(
        [
            completion(
                tool_call("runtime_interpreter", id="call_1", arguments=""),
                tool_call("set_state", id="call_2", state="observing", reason="r"),
                tool_call("think", id="", arguments=json.dumps(json.dumps({"thought": "hm"}))),
                tool_call("wait", id="call_4", arguments="[1, 2]"),
                tool_call("done", id="call_5", arguments="{not json"),
                content="I will look.",
                model="answering-model",
                prompt_tokens=7,
                completion_tokens=8,
                cached_tokens=3,
            )
        ]
    )
    spec = ToolSpec(name="runtime_interpreter", description="d", input_schema={"properties": {}})
    client = OpenAIClient(base_url=server.base_url, api_key="k", model="m")

    turn = _complete(client, _request(Message.user("go"), tools=(spec,), system="be brief"))

    text, c1, c2, c3, c4, c5 = turn.content
    assert text == TextBlock(text="I will look.")
    assert c1 == ToolCall(id="call_1", name="runtime_interpreter", arguments={})
    assert c2 == ToolCall(
        id="call_2", name="set_state", arguments={"state": "observing", "reason": "r"}
    )
    # an object sent as a JSON string is unwrapped; a missing id is made up
    assert c3.name == "think" and c3.arguments == {"thought": "hm"} and c3.id.startswith("call_lb_")
    # what cannot be used is passed on for the loop to answer with an error result
    assert c4.arguments == [1, 2]
    assert c5.arguments == "{not json"
    assert turn.stop_reason == "tool_use"
    assert turn.model == "answering-model"
    assert turn.usage == TokenUsage(input_tokens=4, output_tokens=8, cache_read_input_tokens=3)
    body = server.requests[0].body
    assert server.requests[0].headers["authorization"] == "Bearer k"
    assert body["messages"][0] == {"role": "system", "content": "be brief"}
    assert body["tools"] == [
        {
            "type": "function",
            "function": {
                "name": "runtime_interpreter",
                "description": "d",
                "parameters": {"properties": {}, "type": "object"},
            },
        }
    ]


def test_openai_itself_gets_max_completion_tokens(
    chats: Chats, monkeypatch: pytest.MonkeyPatch
) -> None:
    server = chats([text_reply("hi")])
    # no base_url: OpenAI's own API, which the SDK lets the environment redirect
    monkeypatch.setenv("OPENAI_BASE_URL", server.base_url)
    monkeypatch.setenv("OPENAI_API_KEY", "sk-from-the-environment")
    client = OpenAIClient(model="gpt-4.1-mini")

    _complete(client, _request(Message.user("hi")))

    body = server.requests[0].body
    assert body["max_completion_tokens"] == 256
    assert "max_tokens" not in body
    assert server.requests[0].headers["authorization"] == "Bearer sk-from-the-environment"


@pytest.mark.parametrize(
    ("reply", "retryable"),
    [
        (rate_limited(), True),
        (server_error(), True),
        (error(503, "server_error", "overloaded"), True),
        (bad_request(), False),
        (
            error(401, "invalid_request_error", "Incorrect API key provided", "invalid_api_key"),
            False,
        ),
        (error(404, "api_error", 'model "qwen9:1b" not found, try pulling it first'), False),
    ],
    ids=lambda v: str(v.status) if isinstance(v, Reply) else str(v),
)
def test_http_errors_become_provider_errors(chats: Chats, reply: Reply, retryable: bool) -> None:
    server = chats([reply])
    client = OpenAIClient(base_url=server.base_url, model="m")

    with pytest.raises(ProviderError) as caught:
        _complete(client, _request(Message.user("hi")))

    assert caught.value.retryable is retryable
    assert caught.value.status == reply.status
    assert isinstance(caught.value.__cause__, openai.APIStatusError)
    error_body = reply.body["error"]
    assert (error_body["code"] or error_body["type"]) in str(caught.value)
    assert error_body["message"] in str(caught.value)
    assert reply.headers["x-request-id"] in str(caught.value)
    assert len(server.requests) == 1  # the SDK's own retries are off


def test_timeout_is_a_retryable_provider_error(chats: Chats) -> None:
    server = chats([Delay(5.0)])
    client = OpenAIClient(base_url=server.base_url, model="m", timeout=0.2)

    with pytest.raises(ProviderError) as caught:
        _complete(client, _request(Message.user("hi")))

    assert caught.value.retryable is True
    assert isinstance(caught.value.__cause__, openai.APITimeoutError)
    assert "no answer within 0.2 s" in str(caught.value)
    assert len(server.requests) == 1


def test_refused_connection_is_a_retryable_provider_error(chats: Chats) -> None:
    server = chats()
    url = server.base_url
    server.stop()  # nothing listens on that port any more
    client = OpenAIClient(base_url=url, model="m", timeout=2.0)

    with pytest.raises(ProviderError) as caught:
        _complete(client, _request(Message.user("hi")))

    assert caught.value.retryable is True
    assert isinstance(caught.value.__cause__, openai.APIConnectionError)
    assert url in str(caught.value)


@pytest.mark.parametrize(
    "body", [{"unexpected": True}, {"choices": []}, {"choices": [{"index": 0}]}], ids=str
)
def test_unreadable_answer_is_a_provider_error(chats: Chats, body: dict[str, Any]) -> None:
    server = chats([Reply(200, body)])
    client = OpenAIClient(base_url=server.base_url, model="m")

    with pytest.raises(ProviderError) as caught:
        _complete(client, _request(Message.user("hi")))

    assert caught.value.retryable is False
    assert "could not read the answer" in str(caught.value)


def test_missing_credentials_are_a_provider_error() -> None:
    client = OpenAIClient(model="gpt-4.1-mini")  # OpenAI itself, and no OPENAI_API_KEY

    with pytest.raises(ProviderError) as caught:
        _complete(client, _request(Message.user("hi")))

    assert caught.value.retryable is False
    assert "OPENAI_API_KEY" in str(caught.value)


def test_server_specific_options_are_sent(chats: Chats) -> None:
    server = chats([text_reply("ok")])
    client = OpenAIClient(
        base_url=server.base_url,
        api_key="vllm-key",
        model="m",
        temperature=0.0,
        extra_body={"top_k": 20},
        headers={"x-team": "sre"},
        max_tokens_field="max_completion_tokens",
    )

    _complete(client, _request(Message.user("hi")))

    (request,) = server.requests
    assert request.body["temperature"] == 0.0
    assert request.body["top_k"] == 20
    assert request.body["max_completion_tokens"] == 256
    assert request.headers["x-team"] == "sre"
    assert request.headers["authorization"] == "Bearer vllm-key"


def test_sdk_client_is_made_per_event_loop(chats: Chats) -> None:
    server = chats([text_reply("one"), text_reply("two")])
    client = OpenAIClient(base_url=server.base_url, model="m")
    request = _request(Message.user("hi"))

    # two asyncio.run calls: two loops, as after lensbook.stop() and a new lens loop
    first = asyncio.run(client.complete(request))
    second = _complete(client, request)

    assert (first.text, second.text) == ("one", "two")


# -- repairs -------------------------------------------------------------------------------------


def test_malformed_arguments_get_an_error_result_and_a_repair(chats: Chats) -> None:
    server = chats([MALFORMED, completion(tool_call("take_snapshot")), DONE])
    op = lensbook.Operator.start(
        skill="runtime", client_registry=_registry(_local("local", server))
    )

    result = op.run(reason="check").result

    assert result.stop_reason == "done"
    assert result.client == "local"
    assert len(result.snapshots) == 1
    assert len(server.requests) == 3
    (repair,) = server.requests[1].tool_messages
    assert repair["content"].startswith("ERROR: take_snapshot: arguments are not valid JSON")
    sent = server.requests[1].body["messages"][-2]["tool_calls"][0]["function"]
    assert json.loads(sent["arguments"]) == {"invalid_arguments": '{"oops'}


@pytest.mark.parametrize(
    "bad_turn",
    [MALFORMED, text_reply("The process looks fine to me.")],
    ids=["malformed-arguments", "no-tool-call"],
)
def test_repairs_are_bounded_then_the_chain_falls_back_to_anthropic(
    chats: Chats, servers: Servers, chain_events: list[Event], bad_turn: dict[str, Any]
) -> None:
    local = chats(then=bad_turn)
    claude = servers(
        [
            anthropic_fake.tool_uses(anthropic_fake.tool_use("take_snapshot")),
            anthropic_fake.tool_uses(anthropic_fake.tool_use("done", summary="took over")),
        ]
    )
    registry = _registry(_local("local", local, max_repairs=2), _claude("claude", claude))
    op = lensbook.Operator.start(skill="runtime", client_registry=registry)

    result = op.run(reason="check").result

    assert result.stop_reason == "done"
    assert result.client == "claude"
    assert result.summary == "took over"
    assert len(result.snapshots) == 1
    # a malformed turn and two repairs reach the model; the third malformed answer is dropped
    # and Claude answers that request; the local model is not asked again in this run
    assert len(local.requests) == 3
    assert len(claude.requests) == 2
    assert result.iterations == 4
    assert _kinds(chain_events) == ["client_fallback", "client_fallback"]
    assert "3 malformed turns in a row" in chain_events[0].data["after"]
    assert "gave up on this investigation" in chain_events[1].data["after"]
    first_for_claude = claude.requests[0].body["messages"]
    assert len(first_for_claude) == 5  # the opening, two bad turns and the answers to them
    if bad_turn is MALFORMED:
        assert local.requests[2].tool_messages[0]["content"].startswith("ERROR: take_snapshot")
    else:
        assert "Reply with tool calls only" in local.requests[2].body["messages"][-1]["content"]


def test_a_new_run_gives_the_local_model_its_repairs_back(chats: Chats, servers: Servers) -> None:
    local = chats(then=MALFORMED)
    claude = servers(then=anthropic_fake.tool_uses(anthropic_fake.tool_use("done", summary="ok")))
    registry = _registry(_local("local", local, max_repairs=1), _claude("claude", claude))
    op = lensbook.Operator.start(skill="runtime", client_registry=registry)

    first = op.run(reason="check").result
    asked_in_first_run = len(local.requests)
    second = op.run(reason="check").result

    assert (first.client, second.client) == ("claude", "claude")
    assert asked_in_first_run == 2
    assert len(local.requests) == 4


def test_a_good_turn_resets_the_repair_count(chats: Chats) -> None:
    server = chats(
        [
            MALFORMED,
            completion(tool_call("take_snapshot")),
            text_reply("thinking aloud"),
            completion(tool_call("think", thought="x")),
            MALFORMED,
            DONE,
        ]
    )
    registry = _registry(_local("local", server, max_repairs=1))
    op = lensbook.Operator.start(skill="runtime", client_registry=registry)

    result = op.run(reason="check").result

    assert result.stop_reason == "done"
    assert result.client == "local"
    assert len(server.requests) == 6


# -- the chain across providers ------------------------------------------------------------------


@pytest.mark.parametrize("failure", [rate_limited(), server_error()], ids=lambda r: str(r.status))
def test_retryable_error_is_retried_on_the_same_local_client(
    chats: Chats, chain_events: list[Event], failure: Reply
) -> None:
    server = chats([failure, DONE])

    op = lensbook.Operator.start(
        skill="runtime", client_registry=_registry(_local("local", server))
    )
    result = op.run(reason="check").result

    assert result.client == "local"
    assert len(server.requests) == 2
    assert server.requests[0].body == server.requests[1].body
    assert _kinds(chain_events) == ["model_retry"]


def test_overloaded_anthropic_primary_falls_back_to_local_ollama(
    chats: Chats, servers: Servers, chain_events: list[Event]
) -> None:
    claude = servers(then=anthropic_fake.overloaded())
    local = chats([completion(tool_call("take_snapshot")), DONE])
    registry = _registry(_claude("claude", claude), _local("local", local), attempts=2)
    op = lensbook.Operator.start(skill="runtime", client_registry=registry)

    result = op.run(reason="memory keeps growing").result

    assert result.stop_reason == "done"
    assert result.client == "local"
    assert len(result.snapshots) == 1
    assert len(claude.requests) == 2 * 2  # two attempts for each of the two turns
    assert len(local.requests) == 2
    assert _kinds(chain_events) == ["model_retry", "client_fallback"] * 2
    assert "529" in chain_events[1].data["after"]
    # the local model got the same conversation, in its own wire format
    messages = local.requests[1].body["messages"]
    assert [m["role"] for m in messages] == ["system", "user", "assistant", "tool"]
    assert json.loads(messages[-1]["content"])["id"] == result.snapshots[0].id


def test_local_timeouts_fall_back_to_anthropic(
    chats: Chats, servers: Servers, chain_events: list[Event]
) -> None:
    local = chats([Delay(5.0), Delay(5.0)])
    claude = servers([anthropic_fake.tool_uses(anthropic_fake.tool_use("done", summary="ok"))])
    registry = _registry(_local("local", local, timeout=0.3), _claude("claude", claude), attempts=2)
    op = lensbook.Operator.start(skill="runtime", client_registry=registry)

    result = op.run(reason="check").result

    assert result.client == "claude"
    assert len(local.requests) == 2
    assert _kinds(chain_events) == ["model_retry", "client_fallback"]
    assert "no answer within 0.3 s" in chain_events[0].data["error"]


# -- the registry ----------------------------------------------------------------------------------


def test_registry_knows_the_openai_compatible_providers(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("OPENAI_API_KEY", "sk-openai-key")
    registry = {
        "clients": [
            {"name": "gpt", "provider": "openai", "options": {"api_key": "sk-secret-value"}},
            {"name": "box", "provider": "openai-generic", "options": {"base_url": "http://h/v1"}},
            {"name": "llama", "provider": "ollama", "options": {"model": "llama3.1:8b"}},
            {"name": "served", "provider": "vllm", "options": {"model": "Qwen/Qwen2.5-7B"}},
        ]
    }

    gpt, box, llama, served = clients_from_registry(registry)

    assert all(isinstance(c, OpenAIClient) for c in (gpt, box, llama, served))
    assert [c.name for c in (gpt, box, llama, served)] == ["gpt", "box", "llama", "served"]
    assert [getattr(c, "provider", None) for c in (gpt, box, llama, served)] == [
        "openai",
        "openai-generic",
        "ollama",
        "vllm",
    ]
    assert isinstance(gpt, OpenAIClient) and gpt.base_url is None
    assert gpt.max_tokens_field == "max_completion_tokens"
    assert isinstance(llama, OpenAIClient) and llama.base_url == OLLAMA_URL
    assert llama.model == "llama3.1:8b" and llama.max_tokens_field == "max_tokens"
    assert isinstance(served, OpenAIClient) and served.base_url == VLLM_URL
    assert "sk-secret-value" not in repr(gpt)
    # Ollama and vLLM are never sent the environment's OpenAI key; a generic server gets what
    # the SDK would choose (the environment's key)
    assert llama.api_key == served.api_key == "not-needed"
    assert isinstance(box, OpenAIClient) and box.api_key is None
    chain = resolve_client("llama", registry)
    assert [c.name for c in chain.clients] == ["llama", "gpt", "box", "served"]


def test_without_the_sdk_the_provider_says_how_to_install_it() -> None:
    code = (
        "import sys; sys.modules['openai'] = None\n"
        "from lensbook.clients.registry import clients_from_registry\n"
        "from lensbook import ClientNotConfigured\n"
        "try:\n"
        "    clients_from_registry({'clients': [{'provider': 'ollama'}]})\n"
        "except ClientNotConfigured as exc:\n"
        "    print('refused:', exc)\n"
    )
    out = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, timeout=60, check=True
    )

    assert out.stdout.startswith("refused: ")
    assert 'pip install "lensbook[openai]"' in out.stdout
