"""A chain of clients: retries with backoff on each, then falls back to the next."""

from __future__ import annotations

import asyncio
from collections.abc import Callable, Sequence
from typing import Any

from lensbook._errors import LLMError, ProviderError, containing
from lensbook.clients._sdk import no_answer
from lensbook.clients.base import LLMClient, ModelRequest, ModelTurn
from lensbook.clients.redaction import RequestRedactor
from lensbook.limits import MODEL_CALL_TIMEOUT, TIMED_OUT_ATTEMPTS

__all__ = ["ClientChain"]

EventSink = Callable[..., Any]


class ClientChain:
    """Ordered clients tried in turn; each gets `attempts` tries for retryable errors.

    A non-retryable error (bad request, authentication, malformed answer) moves on to the next
    client at once. When every client has failed, `LLMError` names each failure.

    Each call may take `request_timeout` seconds (or the `timeout` given to `complete`, a run's
    model timeout); a client with its own ``timeout`` attribute (a slow local model configured
    so) gets that instead. The limit is also put on the request, so an SDK client gives up at
    the same moment; the chain's own guard waits a moment longer, for clients that have none.
    A client that lets `timed_out_attempts` calls time out is not answering: the chain moves on
    even if it has attempts left (see `lensbook.limits`).
    """

    def __init__(
        self,
        clients: Sequence[LLMClient],
        *,
        attempts: int = 3,
        backoff: float = 0.5,
        max_backoff: float = 8.0,
        request_timeout: float | None = MODEL_CALL_TIMEOUT,
        timed_out_attempts: int = TIMED_OUT_ATTEMPTS,
    ) -> None:
        if not clients:
            raise ValueError("a client chain needs at least one client")
        self.clients = list(clients)
        self.attempts = max(1, attempts)
        self.backoff = backoff
        self.max_backoff = max_backoff
        self.request_timeout = request_timeout
        self.timed_out_attempts = max(1, timed_out_attempts)
        self.last_client = self.clients[0].name
        self._redact = RequestRedactor()

    @property
    def name(self) -> str:
        return " -> ".join(c.name for c in self.clients)

    async def complete(
        self,
        request: ModelRequest,
        on_event: EventSink | None = None,
        *,
        timeout: float | None = None,
    ) -> ModelTurn:
        """The next turn from the first client that gives one (`timeout`: seconds per call,
        instead of `request_timeout`)."""
        request = self._redact(request)  # the model boundary: nothing unredacted goes past
        failures: list[str] = []
        for index, client in enumerate(self.clients):
            if index:
                _emit(on_event, "client_fallback", client=client.name, after=failures[-1])
            timed_out = 0
            for attempt in range(1, self.attempts + 1):
                try:
                    turn: Any = await self._call(client, request, timeout)
                except ProviderError as exc:
                    failures.append(f"{client.name} attempt {attempt}: {exc}")
                    timed_out += exc.timed_out
                    if (
                        not exc.retryable
                        or attempt == self.attempts
                        or timed_out >= self.timed_out_attempts
                    ):
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

    async def _call(self, client: LLMClient, request: ModelRequest, timeout: float | None) -> Any:
        own = getattr(client, "timeout", None)
        limit = own if isinstance(own, (int, float)) else timeout or self.request_timeout
        # an in-process client's SystemExit is a crash like any bug of its own, not the loop's end
        if limit is None:
            return await containing(client.complete(request))
        request = request.model_copy(update={"timeout": float(limit)})
        try:
            # the client's own timeout reports first; this guard is for clients without one
            return await asyncio.wait_for(containing(client.complete(request)), limit + _GRACE)
        except asyncio.TimeoutError:
            raise no_answer(client.name, limit) from None


# how much longer than a call's limit the chain waits before abandoning it itself
_GRACE = 1.0


def _emit(sink: EventSink | None, kind: str, **data: Any) -> None:
    if sink is not None:
        sink(kind, **data)
