"""The lens loop: one daemon thread owning one asyncio loop, and the bridges to reach it.

The loop starts on first use, never touches the caller's (or the kernel's) event loop, and stops
on `stop_loop()` or at interpreter exit. Blocking calls from the loop's own thread raise
`WrongThread` instead of deadlocking.
"""

from __future__ import annotations

import asyncio
import atexit
import concurrent.futures
import threading
from collections.abc import Coroutine
from typing import Any, TypeVar

from lensbook._errors import WrongThread

__all__ = [
    "call_soon",
    "get_loop",
    "in_lens_thread",
    "is_running",
    "run_sync",
    "stop_loop",
    "submit",
]

T = TypeVar("T")

_lock = threading.Lock()
_loop: asyncio.AbstractEventLoop | None = None
_thread: threading.Thread | None = None
_atexit_registered = False


def _serve(loop: asyncio.AbstractEventLoop, ready: threading.Event) -> None:
    asyncio.set_event_loop(loop)
    loop.call_soon(ready.set)
    try:
        loop.run_forever()
    finally:
        try:
            pending = asyncio.all_tasks(loop)
            for task in pending:
                task.cancel()
            if pending:
                loop.run_until_complete(asyncio.gather(*pending, return_exceptions=True))
            loop.run_until_complete(loop.shutdown_asyncgens())
        finally:
            loop.close()


def get_loop() -> asyncio.AbstractEventLoop:
    """The lens loop, started on first use."""
    global _loop, _thread, _atexit_registered
    with _lock:
        if _loop is not None and _thread is not None and _thread.is_alive():
            return _loop
        loop = asyncio.new_event_loop()
        ready = threading.Event()
        thread = threading.Thread(
            target=_serve, args=(loop, ready), name="lensbook-loop", daemon=True
        )
        thread.start()
        ready.wait()
        _loop, _thread = loop, thread
        if not _atexit_registered:
            atexit.register(stop_loop)
            _atexit_registered = True
        return loop


def is_running() -> bool:
    """Whether the lens loop's thread is alive."""
    return _thread is not None and _thread.is_alive()


def in_lens_thread() -> bool:
    """Whether the caller runs on the lens loop's own thread."""
    return _thread is not None and threading.current_thread() is _thread


def submit(coro: Coroutine[Any, Any, T]) -> concurrent.futures.Future[T]:
    """Schedule `coro` on the lens loop; returns a thread-safe future."""
    return asyncio.run_coroutine_threadsafe(coro, get_loop())


def call_soon(callback: Any, *args: Any) -> None:
    """Run a plain callback on the lens loop (thread-safe)."""
    get_loop().call_soon_threadsafe(callback, *args)


def run_sync(coro: Coroutine[Any, Any, T], timeout: float | None = None) -> T:
    """Run `coro` on the lens loop and block the calling thread for its result.

    Raises `WrongThread` when called from the lens loop itself (it would wait on itself forever),
    and `TimeoutError` if `timeout` passes (the coroutine is then cancelled).
    """
    if in_lens_thread():
        coro.close()
        raise WrongThread(
            "a blocking lensbook call was made from the lens loop's own thread (for example from "
            "an on_notification callback or a probe); use the async API there (await op.arun(...))"
        )
    future = submit(coro)
    try:
        return future.result(timeout)
    except concurrent.futures.TimeoutError:
        future.cancel()
        raise TimeoutError(f"no result within {timeout} s") from None
    except BaseException:
        # KeyboardInterrupt in a notebook: cancel the work on the loop so nothing is left running.
        if not future.done():
            future.cancel()
        raise


async def run_on_loop(coro: Coroutine[Any, Any, T]) -> T:
    """Await `coro` on the lens loop from any other event loop (the async API's bridge)."""
    loop = get_loop()
    try:
        running = asyncio.get_running_loop()
    except RuntimeError:
        running = None
    if running is loop:
        return await coro
    return await asyncio.wrap_future(asyncio.run_coroutine_threadsafe(coro, loop))


def stop_loop(timeout: float = 5.0) -> None:
    """Stop the lens loop and join its thread (cancelling what still runs on it)."""
    global _loop, _thread
    with _lock:
        loop, thread = _loop, _thread
        _loop = _thread = None
    if loop is None or thread is None:
        return
    if thread.is_alive():
        loop.call_soon_threadsafe(loop.stop)
        if threading.current_thread() is not thread:
            thread.join(timeout)
