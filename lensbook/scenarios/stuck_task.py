"""An asyncio task stuck awaiting an Event that nobody will ever set.

The application's loop runs in a background thread ("app-loop") and is registered with the
asyncio skill. Next to the stuck task, a healthy ticker sleeps and wakes: it must not be blamed.
"""

from __future__ import annotations

import asyncio
import threading
from collections.abc import Callable

from lensbook.scenarios import Scenario
from lensbook.skills.aio import register_loop, unregister_loop

__all__ = ["SCENARIO", "start_stuck_task"]


async def wait_for_signal(config_loaded: asyncio.Event) -> str:
    """Wait for a configuration that the (missing) loader never announces."""
    await config_loaded.wait()
    return "configured"


async def tick(every: float) -> None:
    while True:
        await asyncio.sleep(every)


def start_stuck_task(thread_name: str = "app-loop") -> Callable[[], None]:
    """Start the loop thread with the stuck task and a ticker; returns the cleanup."""
    loop = asyncio.new_event_loop()
    ready = threading.Event()
    tasks: list[asyncio.Task[object]] = []

    def serve() -> None:
        asyncio.set_event_loop(loop)

        def start() -> None:
            config_loaded = asyncio.Event()
            tasks.append(loop.create_task(wait_for_signal(config_loaded), name="config-waiter"))
            tasks.append(loop.create_task(tick(0.05), name="ticker"))
            loop.call_soon(ready.set)  # after the tasks' first steps: they are suspended now

        loop.call_soon(start)
        loop.run_forever()

    thread = threading.Thread(target=serve, name=thread_name, daemon=True)
    thread.start()
    ready.wait(5)
    register_loop(loop)

    def cleanup() -> None:
        def cancel_all() -> None:
            for task in tasks:
                task.cancel()
            loop.call_later(0.05, loop.stop)

        unregister_loop(loop)
        loop.call_soon_threadsafe(cancel_all)
        thread.join(5)
        if not thread.is_alive():
            loop.run_until_complete(asyncio.sleep(0))  # let the cancellations finish
            loop.close()

    return cleanup


SCENARIO = Scenario(
    name="stuck_task",
    title="An asyncio task stuck awaiting an Event",
    skill="asyncio",
    reason="the service never finishes starting: something seems stuck",
    induce=start_stuck_task,
    expect=(r"stuck", r"wait_for_signal", r"config_loaded\.wait|Event\.wait"),
    settle=1.0,
)
