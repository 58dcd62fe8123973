"""A coroutine that calls a synchronous sleep: the whole event loop stops while it waits.

Modelled on zksync-sdk/zksync-python#29 ("Blocking sleep operation in async code":
``time.sleep()`` inside an ``async def`` polling a transaction's status, blocking the whole
event loop) and home-assistant/core#63766 (Home Assistant now warns "Detected blocking call to
sleep inside the event loop" because integrations did exactly this). Here a quote poller
running on the service's loop waits between retries with ``time.sleep`` instead of
``await asyncio.sleep``, so a heartbeat task and every other coroutine on the loop stall for
most of each second.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable
from functools import partial

from lensbook.scenarios import scenario
from lensbook.scenarios._app_loop import serve_requests, start_app_loop

__all__ = ["induce", "wait_for_confirmation"]

#: seconds between two polls of a transaction's status
POLL_S = 1.0


async def wait_for_confirmation(tx: int) -> bool:
    """Poll a transaction until it is confirmed, waiting the wrong way between polls."""
    for _ in range(3):
        # the bug: a synchronous sleep on the loop's thread
        time.sleep(POLL_S)
    return tx % 2 == 0


async def heartbeat(beats: list[float]) -> None:
    while True:
        beats.append(time.monotonic())
        del beats[:-100]
        await asyncio.sleep(0.05)


@scenario(
    skill="asyncio",
    reason="the service's requests time out every now and then",
    expect=(
        r"event_loop_(blocked|lag)",
        r"wait_for_confirmation",
        r"blocking_coroutine\.py:\d+",
        r"time\.sleep",
    ),
    settle=0.5,
)
def induce() -> Callable[[], None]:
    return start_app_loop(
        "quotes-loop",
        {
            "main": serve_requests(wait_for_confirmation, pause=0),
            "heartbeat": partial(heartbeat, []),
        },
    )
