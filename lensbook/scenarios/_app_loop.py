"""An application's asyncio loop on a thread of its own, registered with the asyncio skill.

Several scenarios play a service whose loop runs beside the main thread (as a web server's or a
notebook kernel's does): `start_app_loop` starts it, creates the scenario's named tasks on it,
and returns a cleanup that cancels every task, stops the loop and joins the thread.
`serve_requests` is the main task of a service that handles one request after another.
"""

from __future__ import annotations

import asyncio
import threading
from collections.abc import Awaitable, Callable, Coroutine, Mapping
from typing import Any

from lensbook.scenarios._harness import Workers
from lensbook.skills.aio import register_loop, unregister_loop

__all__ = ["serve_requests", "start_app_loop"]


def start_app_loop(
    thread_name: str, tasks: Mapping[str, Callable[[], Coroutine[Any, Any, Any]]]
) -> Callable[[], None]:
    """Run each of `tasks` (task name -> coroutine function) as a task on a new loop in thread
    `thread_name`, registered with the asyncio skill; returns the cleanup."""
    loop = asyncio.new_event_loop()
    ready = threading.Event()
    # the loop keeps only weak references to tasks: a task parked on a future that nothing
    # else references would be collected ("Task was destroyed but it is pending!")
    running: list[asyncio.Task[Any]] = []

    def create_tasks() -> None:
        running.extend(loop.create_task(main(), name=name) for name, main in tasks.items())
        loop.call_soon(ready.set)  # after the tasks' first steps: they are suspended now

    def serve() -> None:
        asyncio.set_event_loop(loop)
        loop.call_soon(create_tasks)
        loop.run_forever()

    workers = Workers(join_timeout=10)
    workers.start(thread_name, serve)
    ready.wait(10)
    register_loop(loop)

    def cancel_all() -> None:
        for task in asyncio.all_tasks(loop):
            task.cancel()
        loop.call_later(0.05, loop.stop)

    def stop_loop() -> None:
        unregister_loop(loop)
        loop.call_soon_threadsafe(cancel_all)

    def close_loop() -> None:
        if not workers.alive():
            loop.run_until_complete(asyncio.sleep(0))  # let the cancellations finish
            loop.close()

    return workers.cleanup(close_loop, unblock=stop_loop)


def serve_requests(
    handle: Callable[[int], Awaitable[object]], pause: float
) -> Callable[[], Coroutine[Any, Any, None]]:
    """A service's main task: ``await handle(1)``, ``handle(2)``, ... forever, `pause` seconds
    apart (0 still yields to the loop's other tasks between two requests)."""

    async def serve() -> None:
        n = 0
        while True:
            n += 1
            await handle(n)
            await asyncio.sleep(pause)

    return serve
