"""An application's asyncio loop on a thread of its own, registered with the asyncio skill.

Several scenarios play a service whose loop runs beside the main thread (as a web server's or a
notebook kernel's does): `start_app_loop` starts it, schedules the scenario's coroutines on it,
and returns the loop and a cleanup that cancels every task, stops the loop and joins the thread.
"""

from __future__ import annotations

import asyncio
import threading
from collections.abc import Callable, Coroutine
from typing import Any

from lensbook.skills.aio import register_loop, unregister_loop

__all__ = ["start_app_loop"]


def start_app_loop(
    thread_name: str, main: Callable[[], Coroutine[Any, Any, Any]]
) -> tuple[asyncio.AbstractEventLoop, Callable[[], None]]:
    """Run `main()` as a task on a new loop in thread `thread_name`; returns (loop, cleanup)."""
    loop = asyncio.new_event_loop()
    ready = threading.Event()
    # the loop keeps only weak references to tasks: a task parked on a future that nothing
    # else references would be collected ("Task was destroyed but it is pending!")
    tasks: list[asyncio.Task[Any]] = []

    def serve() -> None:
        asyncio.set_event_loop(loop)
        loop.call_soon(lambda: tasks.append(loop.create_task(main(), name="main")))
        loop.call_soon(ready.set)
        loop.run_forever()

    thread = threading.Thread(target=serve, name=thread_name, daemon=True)
    thread.start()
    ready.wait(10)
    register_loop(loop)

    def cleanup() -> None:
        def cancel_all() -> None:
            for task in asyncio.all_tasks(loop):
                task.cancel()
            loop.call_later(0.05, loop.stop)

        unregister_loop(loop)
        loop.call_soon_threadsafe(cancel_all)
        thread.join(10)
        if not thread.is_alive():
            loop.run_until_complete(asyncio.sleep(0))  # let the cancellations finish
            loop.close()

    return loop, cleanup
