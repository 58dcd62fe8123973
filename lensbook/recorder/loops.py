"""The event loops lensbook knows: loops registered by the user, the lens loop, and loops
running in any thread of the process now (found as the ``self`` of a ``run_forever`` frame on
a thread's stack, so no registration is needed while a loop runs).

The one registry every part reads: the flight recorder's lag monitor and exception hooks, and
the asyncio and exceptions skills. Loops are kept by weak reference, so knowing a loop never
keeps it alive.
"""

from __future__ import annotations

import asyncio
import threading
import types
import weakref

from lensbook.skills._frames import back
from lensbook.skills._stacks import current_frames, frame_locals

__all__ = ["is_registered", "known_loops", "lens_loop", "register_loop", "unregister_loop"]

_registered: weakref.WeakSet[asyncio.AbstractEventLoop] = weakref.WeakSet()
_registry_lock = threading.Lock()
_LOOP_CODES = frozenset(
    {
        asyncio.BaseEventLoop.run_forever.__code__,
        asyncio.BaseEventLoop._run_once.__code__,  # type: ignore[attr-defined]
    }
)


def register_loop(loop: asyncio.AbstractEventLoop) -> None:
    """Make a loop known to lensbook (kept by weak reference: it does not live longer).

    Loops that run in a thread of this process are found anyway while they run; register
    loops that are stopped between uses, or whose run_forever has no Python frame (uvloop).
    """
    if not isinstance(loop, asyncio.AbstractEventLoop):
        raise TypeError(f"expected an asyncio event loop, got {type(loop).__name__}")
    with _registry_lock:
        _registered.add(loop)


def unregister_loop(loop: asyncio.AbstractEventLoop) -> None:
    """Forget a registered loop (no error if it was not registered)."""
    with _registry_lock:
        _registered.discard(loop)


def lens_loop() -> asyncio.AbstractEventLoop | None:
    from lensbook import _loop

    loop = getattr(_loop, "_loop", None)
    return loop if _loop.is_running() and isinstance(loop, asyncio.AbstractEventLoop) else None


def _discovered() -> list[asyncio.AbstractEventLoop]:
    """Loops running in some thread now: the `self` of a ``run_forever`` frame on its stack."""
    found: list[asyncio.AbstractEventLoop] = []
    for frame in list(current_frames().values()):
        depth = 0
        f: types.FrameType | None = frame
        while f is not None and depth < 200:
            if f.f_code in _LOOP_CODES:
                loop = frame_locals(f).get("self")
                if isinstance(loop, asyncio.AbstractEventLoop) and loop not in found:
                    found.append(loop)
                break
            f = back(f)
            depth += 1
    return found


def known_loops() -> list[asyncio.AbstractEventLoop]:
    """Every loop lensbook knows: registered ones, the lens loop, loops running in any thread."""
    with _registry_lock:
        loops = list(_registered)
    for loop in (lens_loop(), *_discovered()):
        if loop is not None and loop not in loops:
            loops.append(loop)
    return [loop for loop in loops if not loop.is_closed()]


def is_registered(loop: asyncio.AbstractEventLoop) -> bool:
    """Whether the user registered this loop (rather than lensbook finding it running)."""
    with _registry_lock:
        return loop in _registered
