"""An asyncio.Lock left locked by a cancelled task: every later caller waits forever.

Modelled on ApeWorX/web3.py#2693 (web3's ``async_lock`` took the lock, then the task was
cancelled before the ``try/finally`` that releases it began, "the lock will never be released
by the task, and all future uses of async_lock will hang"). Here a session cache refreshes its
token under a lock taken with ``await lock.acquire()`` and released after the refresh without a
``finally``; the refresh is cancelled by a timeout (``asyncio.wait_for``), so the lock stays
held by a task that no longer exists, and every request handler that needs the session waits
on it while a healthy ticker keeps running.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Callable

from lensbook.scenarios import scenario
from lensbook.scenarios._app_loop import start_app_loop

__all__ = ["SessionCache", "induce"]


class SessionCache:
    """A token shared by the handlers, refreshed under a lock."""

    def __init__(self) -> None:
        self.lock = asyncio.Lock()
        self.token = "initial"

    async def refresh(self) -> None:
        await self.lock.acquire()
        await asyncio.sleep(5)  # the identity provider is slow today
        self.token = "fresh"
        self.lock.release()  # the bug: not in a finally, so a cancellation skips it

    async def get_session(self) -> str:
        async with self.lock:
            return self.token


async def handle_request(cache: SessionCache, n: int) -> str:
    return await cache.get_session()


async def tick() -> None:
    while True:
        await asyncio.sleep(0.05)


async def service() -> None:
    loop = asyncio.get_running_loop()
    cache = SessionCache()
    ticker = loop.create_task(tick(), name="ticker")
    # the refresh gives up after 0.1 s; nobody notices the lock it leaves held
    with contextlib.suppress(asyncio.TimeoutError):
        await asyncio.wait_for(cache.refresh(), timeout=0.1)
    requests = [loop.create_task(handle_request(cache, n), name=f"request-{n}") for n in range(3)]
    await asyncio.gather(ticker, *requests)


@scenario(
    skill="asyncio",
    reason="API requests hang since the token refresh timed out",
    expect=(r"stuck", r"get_session", r"lock_after_cancel\.py:\d+", r"lock"),
    settle=0.5,
)
def induce() -> Callable[[], None]:
    return start_app_loop("api-loop", {"main": service})
