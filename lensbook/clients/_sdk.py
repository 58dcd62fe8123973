"""What the adapters that wrap an async SDK share: the SDK client of the running event loop,
the time one call may take, and the one rule for answers that cannot be decoded.

An SDK parses a 200 answer only after the call returned: a body cut short, an HTML page from a
proxy, invalid UTF-8 or JSON that is not an object escape as `ValueError` (`JSONDecodeError`,
`UnicodeDecodeError`), or come back as a bare `str` instead of the API's type. Such an answer
says nothing about the request, only about the path to the provider, so it is a *retryable*
`ProviderError`: the chain tries again and then falls back to its next client.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from typing import Any, Generic, Protocol, TypeVar

from lensbook._errors import ProviderError
from lensbook.limits import MODEL_CALL_TIMEOUT

__all__ = [
    "UNDECODABLE",
    "PerLoopClient",
    "call_timeout",
    "expect_answer",
    "no_answer",
    "undecodable",
]

#: what an SDK raises while decoding a body it received (both are ValueError subclasses)
UNDECODABLE: tuple[type[Exception], ...] = (ValueError,)


class _Closable(Protocol):
    async def close(self) -> None: ...


T = TypeVar("T", bound=_Closable)


class PerLoopClient(Generic[T]):
    """An SDK client made by `factory` on first use, one per event loop.

    httpx's connection pool belongs to the loop that opened it, and the lens loop is replaced
    after `lensbook.stop()`; a client made on another loop is dropped, not reused.
    """

    def __init__(self, factory: Callable[[], T]) -> None:
        self._factory = factory
        self._client: T | None = None
        self._loop: asyncio.AbstractEventLoop | None = None

    def get(self) -> T:
        """The SDK client of the running loop, created on first use."""
        loop = asyncio.get_running_loop()
        if self._client is None or self._loop is not loop:
            self._client = self._factory()
            self._loop = loop
        return self._client

    async def aclose(self) -> None:
        """Close the SDK client's connections (call on the loop that used the client)."""
        client, self._client, self._loop = self._client, None, None
        if client is not None:
            await client.close()


def call_timeout(own: float | None, request: Any) -> float:
    """Seconds one call may take: the client's own `timeout` option if it has one, else the
    request's (the run's model timeout), else `MODEL_CALL_TIMEOUT`."""
    if own is not None:
        return own
    asked = getattr(request, "timeout", None)
    return float(asked) if asked is not None else MODEL_CALL_TIMEOUT


def no_answer(client: str, seconds: float) -> ProviderError:
    """The retryable error of a call that got no answer within its time limit."""
    return ProviderError(
        f"{client}: no answer within {seconds:g} s", retryable=True, timed_out=True
    )


def undecodable(client: str, detail: object) -> ProviderError:
    """The retryable error of an answer that could not be decoded."""
    text = str(detail)
    return ProviderError(f"{client}: undecodable answer: {text[:200]}", retryable=True)


def expect_answer(client: str, response: Any, answer_type: type[Any]) -> None:
    """Raise `undecodable` unless the SDK gave back an object of the API's answer type."""
    if not isinstance(response, answer_type):
        shown = response[:80] if isinstance(response, str) else type(response).__name__
        raise undecodable(client, f"not a {answer_type.__name__}: {shown!r}")
