"""ScriptedClient.batches: a run plays each batch of calls in turn, then done; a compaction or
summary request gets text and does not consume a batch."""

from __future__ import annotations

import asyncio

from lensbook.clients.base import ModelRequest
from lensbook.clients.scripted import ScriptedClient, call


def _names(client: ScriptedClient, purpose: str) -> list[str]:
    request = ModelRequest(system="s", messages=[], tools=[], purpose=purpose)
    turn = asyncio.run(client.complete(request))
    return [b.name for b in turn.tool_calls] or [b.text for b in turn.content if b.type == "text"]


def test_batches_are_played_in_turn_and_summaries_do_not_consume_one() -> None:
    client = ScriptedClient.batches([[call("a"), call("b")], [call("c")]])
    assert _names(client, "investigate") == ["a", "b"]
    assert _names(client, "compact") == ["summary: the calls so far"]
    assert _names(client, "investigate") == ["c"]
    assert _names(client, "investigate") == ["done"]
    assert _names(client, "investigate") == ["done"]
