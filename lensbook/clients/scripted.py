"""A client that plays a script of turns: for tests, examples and reproducible demos."""

from __future__ import annotations

import itertools
from collections.abc import Callable, Iterable
from typing import Any, TypeAlias

from lensbook._errors import ScriptExhausted
from lensbook.clients.base import ModelRequest, ModelTurn, TextBlock, ToolCall
from lensbook.types import TokenUsage

__all__ = ["ScriptedClient", "Turn", "call"]

_ids = itertools.count(1)

Turn: TypeAlias = (
    ModelTurn
    | str
    | ToolCall
    | list[ToolCall | TextBlock | str]
    | BaseException
    | Callable[[ModelRequest], Any]
)


def call(name: str, /, **arguments: Any) -> ToolCall:
    """A tool call for a script: ``call("set_state", state="warning", reason="...")``."""
    return ToolCall(id=f"call_{next(_ids)}", name=name, arguments=arguments)


class ScriptedClient:
    """Answers each request with the next turn of its script and records every request.

    A turn is a `ModelTurn`, a string (text only), a `ToolCall` or a list of calls and text,
    an exception (raised, to simulate a provider failure), or a callable taking the request and
    returning any of these. Requests for compaction, summaries and messages consume turns like any
    other. When the script runs out it raises `ScriptExhausted`, naming the request it could not
    answer.
    """

    provider = "scripted"
    in_process = True

    def __init__(
        self, turns: Iterable[Turn], *, name: str = "scripted", usage: TokenUsage | None = None
    ) -> None:
        self.name = name
        self.turns: list[Turn] = list(turns)
        self.requests: list[ModelRequest] = []
        self.usage = usage or TokenUsage()
        self._next = 0

    @classmethod
    def batches(cls, batches: Iterable[Iterable[ToolCall]], **options: Any) -> ScriptedClient:
        """Plays `batches` of tool calls, one per investigation request, then calls ``done``;
        requests for compaction and summaries (which huge tool results bring on) get a text
        answer instead of consuming a batch."""
        pending = iter([list(batch) for batch in batches])

        def turn(request: ModelRequest) -> Any:
            if request.purpose != "investigate":
                return "summary: the calls so far"
            return next(pending, [call("done")])

        # enough turns for every batch, each maybe preceded by a compaction, and the done
        return cls([turn] * 10_000, **options)

    @property
    def remaining(self) -> int:
        return len(self.turns) - self._next

    async def complete(self, request: ModelRequest) -> ModelTurn:
        self.requests.append(request)
        if self._next >= len(self.turns):
            raise ScriptExhausted(
                f"script of {len(self.turns)} turn(s) exhausted at request "
                f"{len(self.requests)} (purpose {request.purpose})"
            )
        turn = self.turns[self._next]
        self._next += 1
        answer: Any = turn
        if callable(answer) and not isinstance(answer, (ModelTurn, ToolCall, BaseException)):
            answer = answer(request)
        return self._as_turn(answer)

    def _as_turn(self, turn: Any) -> ModelTurn:
        if isinstance(turn, BaseException):
            raise turn
        if isinstance(turn, ModelTurn):
            return turn
        if isinstance(turn, str):
            return ModelTurn(content=(TextBlock(text=turn),), usage=self.usage, model=self.name)
        items = [turn] if isinstance(turn, ToolCall) else list(turn)
        return ModelTurn.of(items, model=self.name, usage=self.usage)
