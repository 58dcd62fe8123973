"""The SDK client of the running event loop, shared by the adapters that wrap an async SDK."""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from typing import Generic, Protocol, TypeVar

__all__ = ["PerLoopClient"]


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
