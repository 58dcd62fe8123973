"""An asyncio task stuck awaiting an Event that nobody will ever set.

The application's loop runs in a background thread ("app-loop") and is registered with the
asyncio skill. Next to the stuck task, a healthy ticker sleeps and wakes: it must not be blamed.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable

from lensbook.scenarios import scenario
from lensbook.scenarios._app_loop import start_app_loop

__all__ = ["start_stuck_task"]


async def wait_for_signal(config_loaded: asyncio.Event) -> str:
    """Wait for a configuration that the (missing) loader never announces."""
    await config_loaded.wait()
    return "configured"


async def tick(every: float) -> None:
    while True:
        await asyncio.sleep(every)


@scenario(
    skill="asyncio",
    reason="the service never finishes starting: something seems stuck",
    expect=(r"stuck", r"wait_for_signal", r"config_loaded\.wait|Event\.wait"),
)
def start_stuck_task(thread_name: str = "app-loop") -> Callable[[], None]:
    """Start the loop thread with the stuck task and a ticker; returns the cleanup."""
    config_loaded = asyncio.Event()  # bound to the app's loop when first awaited there
    return start_app_loop(
        thread_name,
        {"config-waiter": lambda: wait_for_signal(config_loaded), "ticker": lambda: tick(0.05)},
    )
