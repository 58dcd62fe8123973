"""The model boundary: whatever a loop puts in a request, the client sees it redacted.

The client chain redacts every request (system, text, tool-call arguments, tool results,
context) and events are redacted on publication, so a secret that slipped past its producer (a
coordinator's question, a model echoing a key in its arguments) reaches neither the model nor a
record. The redactor reuses the redacted prefix of a growing conversation; a conversation that
changed in the middle is redacted again, not served from that prefix.
"""

from __future__ import annotations

import asyncio
from typing import Any

import lensbook
from lensbook import events
from lensbook.clients import ScriptedClient, call
from lensbook.clients.base import Message, ModelRequest, TextBlock, ToolCall, ToolResult
from lensbook.clients.chain import ClientChain
from lensbook.skills.redact import REDACTED
from tests.coordinator._scripts import Alpha
from tests.skills._secret_corpus import SHAPES, leaks

KEY = SHAPES[0].secret  # an Anthropic-shaped key
PASSWORD = "Zq8VxW2mK9pL4nR7tY1u"


def _complete(chain: ClientChain, request: ModelRequest) -> None:
    asyncio.run(chain.complete(request))


def test_every_part_of_a_request_is_redacted() -> None:
    client = ScriptedClient([call("done")] * 3)
    chain = ClientChain([client])
    first = Message.user(f"the job failed with password={PASSWORD}")
    echo = Message(
        role="assistant",
        content=(
            TextBlock(text=f"trying {KEY}"),
            ToolCall(id="t1", name="probe", arguments={"api_key": KEY, "n": 3}),
        ),
    )
    result = Message(role="user", content=(ToolResult(tool_call_id="t1", content=f"k={KEY}"),))
    request = ModelRequest(
        system=f"You look after {KEY}.",
        messages=(first, echo, result),
        context={"reason": f"mysql -u root -p{PASSWORD} fails"},
    )
    _complete(chain, request)
    seen = client.requests[0]
    assert leaks(seen.model_dump_json()) == [] and PASSWORD not in seen.model_dump_json()
    assert seen.messages[1].tool_calls[0].arguments == {"api_key": REDACTED, "n": 3}
    assert request.messages[0] is first and PASSWORD in first.text  # the caller's are untouched


def test_a_conversation_changed_in_the_middle_is_not_served_from_the_prefix() -> None:
    client = ScriptedClient([call("done")] * 3)
    chain = ClientChain([client])
    a, b, c = Message.user("one"), Message.assistant("two"), Message.user(f"three {KEY}")
    _complete(chain, ModelRequest(system="s", messages=(a, b)))
    _complete(chain, ModelRequest(system="s", messages=(a, b, c)))  # appended: prefix reused
    other = Message.assistant("changed")
    _complete(chain, ModelRequest(system="s", messages=(a, other, c)))
    texts = [[m.text for m in r.messages] for r in client.requests]
    assert texts[1] == ["one", "two", f"three {REDACTED}"]
    assert texts[2] == ["one", "changed", f"three {REDACTED}"]


def test_coordinator_question_and_tool_call_events_are_redacted() -> None:
    seen: list[events.Event] = []
    token = events.subscribe(seen.append)
    try:
        client = ScriptedClient(
            [
                call("think", thought=f"the config has password={PASSWORD}"),
                call("done", summary="nothing"),
            ]
        )
        result = lensbook.Coordinator(skills=[Alpha], client=client).run(
            f"why does login fail with api_key={KEY}?"
        )
    finally:
        events.unsubscribe(token)
    assert result.stop_reason == "done"
    sent = "\n".join(r.model_dump_json() for r in client.requests)
    assert leaks(sent) == [] and PASSWORD not in sent
    recorded: Any = [e.data for e in seen if e.kind.startswith("coordinator")]
    text = repr(recorded)
    assert any(e.kind == "coordinator_tool_call" for e in seen)
    assert leaks(text) == [] and PASSWORD not in text


def test_both_loops_publish_tool_calls_with_the_same_redacted_arguments() -> None:
    """The operator's and the coordinator's tool-call events carry the same JSON-safe,
    redacted arguments, even those an in-process client sent as bytes."""
    arguments = {"thought": b"password=" + PASSWORD.encode()}
    seen: list[events.Event] = []
    token = events.subscribe(seen.append)
    try:
        operator_client = ScriptedClient(
            [call("think", **arguments), call("done", summary="nothing")]
        )
        op = lensbook.Operator.start(skill=Alpha, client=operator_client)
        try:
            op.run({"reason": "look"})
        finally:
            op.stop()
        coordinator_client = ScriptedClient(
            [call("think", **arguments), call("done", summary="nothing")]
        )
        lensbook.Coordinator(skills=[Alpha], client=coordinator_client).run("look")
    finally:
        events.unsubscribe(token)
    published = {
        e.kind: e.data["arguments"]
        for e in seen
        if e.kind in ("tool_call", "coordinator_tool_call") and e.data.get("name") == "think"
    }
    assert set(published) == {"tool_call", "coordinator_tool_call"}
    assert published["tool_call"] == published["coordinator_tool_call"]
    assert PASSWORD not in repr(published) and leaks(repr(published)) == []
