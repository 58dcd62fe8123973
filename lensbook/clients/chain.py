"""A chain of clients: retries with backoff on each, then falls back to the next."""

from __future__ import annotations

import asyncio
from collections.abc import Callable, Sequence
from typing import Any

from lensbook._errors import LLMError, ProviderError
from lensbook.clients.base import LLMClient, ModelRequest, ModelTurn
from lensbook.clients.redaction import RequestRedactor

__all__ = ["ClientChain"]

EventSink = Callable[..., Any]


class ClientChain:
    """Ordered clients tried in turn; each gets `attempts` tries for retryable errors.

    A non-retryable error (bad request, authentication, malformed answer) moves on to the next
    client at once. When every client has failed, `LLMError` names each failure.
    """

    def __init__(
        self,
        clients: Sequence[LLMClient],
        *,
        attempts: int = 3,
        backoff: float = 0.5,
        max_backoff: float = 8.0,
        request_timeout: float | None = 120.0,
    ) -> None:
        if not clients:
            raise ValueError("a client chain needs at least one client")
        self.clients = list(clients)
        self.attempts = max(1, attempts)
        self.backoff = backoff
        self.max_backoff = max_backoff
        self.request_timeout = request_timeout
        self.last_client = self.clients[0].name
        self._redact = RequestRedactor()

    @property
    def name(self) -> str:
        return " -> ".join(c.name for c in self.clients)

    async def complete(self, request: ModelRequest, on_event: EventSink | None = None) -> ModelTurn:
        request = self._redact(request)  # the model boundary: nothing unredacted goes past
        failures: list[str] = []
        for index, client in enumerate(self.clients):
            if index:
                _emit(on_event, "client_fallback", client=client.name, after=failures[-1])
            for attempt in range(1, self.attempts + 1):
                try:
                    turn: Any = await self._call(client, request)
                except ProviderError as exc:
                    failures.append(f"{client.name} attempt {attempt}: {exc}")
                    if not exc.retryable or attempt == self.attempts:
                        break
                    delay = min(self.max_backoff, self.backoff * 2 ** (attempt - 1))
                    _emit(
                        on_event,
                        "model_retry",
                        client=client.name,
                        attempt=attempt,
                        delay=delay,
                        error=str(exc),
                    )
                    await asyncio.sleep(delay)
                else:
                    if not isinstance(turn, ModelTurn):  # a misbehaving client
                        failures.append(
                            f"{client.name}: returned {type(turn).__name__}, not a ModelTurn"
                        )
                        break
                    self.last_client = client.name
                    return turn
        raise LLMError("every client failed: " + "; ".join(failures))

    async def _call(self, client: LLMClient, request: ModelRequest) -> Any:
        if self.request_timeout is None:
            return await client.complete(request)
        try:
            return await asyncio.wait_for(client.complete(request), self.request_timeout)
        except asyncio.TimeoutError:
            raise ProviderError(
                f"no answer within {self.request_timeout} s", retryable=True
            ) from None


def _emit(sink: EventSink | None, kind: str, **data: Any) -> None:
    if sink is not None:
        sink(kind, **data)
