"""Stacks as text: one frame as ``file:line in function``, a bounded stack like a traceback;
and the one way lensbook reads other threads' frames (`current_frames`, `frame_locals`).

Every skill that shows where a thread, a task or a callback is (threads, asyncio, memory) writes
frames the same way, so one module does it. Paths are shortened by `lensbook.skills._frames`
(as an import would name them); source lines come from `linecache` (no file is opened twice)
and are capped, since a minified or generated line can be megabytes.

Another thread's frames are read with collections put off (`_heap.collections_off`). A running
frame has no frame object until someone asks for one (``sys._current_frames()``, ``f_back``,
``cr_frame``), and CPython makes it in two moves (seen on 3.11): it allocates the object, then
links it with the frame. The allocation can start a collection, and a collection runs Python
code (gc.callbacks, lensbook's own among them; finalizers), at whose first bytecode the
interpreter may hand the GIL to the frame's thread, which may return from that frame
meanwhile. The link is then made with memory that thread has let go of or reused for another
frame: a frame object over freed memory, or a word written into another frame's locals (seen
as an ``int`` coming back from ``f_back``, a collection crashing in another thread, a
segfault; CPython guards only against the collection making that frame object itself,
gh-97002). So `current_frames` takes the stacks' innermost frames inside one such section,
`back` makes each step outwards inside one (every walk along another thread's stack goes
through it), and `frame_locals` reads a frame's locals inside one (``f_locals`` makes a dict
the same way, then copies the locals from the frame).
"""

from __future__ import annotations

import inspect
import linecache
import sys
import threading
import types
from typing import Any

from lensbook.skills._frames import back, short_path
from lensbook.skills._heap import collections_off
from lensbook.skills.redact import clip
from lensbook.skills.untrusted import ProcessText, from_process

__all__ = [
    "current_frames",
    "describe_frame",
    "format_stack",
    "frame_locals",
    "frames_of",
    "qualname",
    "source_line",
]


def current_frames() -> dict[int, types.FrameType]:
    """``sys._current_frames()``, made inside a section (see the module's docstring); walk
    outwards from these frames with `back`. The calling thread's entry is its caller's frame
    (not this function's, whose locals hold the answer: a cycle that would keep every
    thread's frames alive until a collection)."""
    with collections_off():
        frames = sys._current_frames()
        frames[threading.get_ident()] = sys._getframe(1)
    return frames


def frame_locals(frame: types.FrameType) -> dict[str, Any]:
    """A copy of a frame's local variables, read safely while the frame runs in another thread
    (see the module's docstring); empty for a frame whose code is no function's (a module's
    locals are its globals; a class body's may be its metaclass's mapping, whose own
    ``__setitem__`` reading ``f_locals`` would run)."""
    if not frame.f_code.co_flags & inspect.CO_OPTIMIZED:
        return {}
    with collections_off():
        found = frame.f_locals
        return dict(found) if type(found) is dict else {}


def qualname(code: types.CodeType) -> str:
    """The function's qualified name (``Class.method``; the bare name before Python 3.11)."""
    return getattr(code, "co_qualname", code.co_name)


def describe_frame(frame: types.FrameType) -> str:
    """``file:line in function`` for a frame."""
    code = frame.f_code
    return f"{short_path(code.co_filename)}:{frame.f_lineno} in {qualname(code)}"


def source_line(filename: str, lineno: int, limit: int = 120) -> ProcessText:
    """The stripped source line (empty when the source is not available), redacted and then
    capped: the program's own text (a literal in it may be a credential), marked as such."""
    return from_process(clip(linecache.getline(filename, lineno).strip(), limit))


def frames_of(frame: types.FrameType | None, limit: int = 64) -> list[types.FrameType]:
    """A thread's frames, innermost first, at most `limit`."""
    found: list[types.FrameType] = []
    while frame is not None and len(found) < limit:
        found.append(frame)
        frame = back(frame)
    return found


def format_stack(frame: types.FrameType | None, depth: int = 8) -> list[str]:
    """A bounded stack, outermost first like a traceback, the innermost frame with its source.

    When the stack is deeper than `depth`, the outermost frames are replaced by one line saying
    how many were left out.
    """
    frames = frames_of(frame, 1000)
    shown = frames[:depth]
    lines = [describe_frame(f) for f in reversed(shown)]
    if frames:
        code = source_line(frames[0].f_code.co_filename, frames[0].f_lineno)
        if code:
            lines[-1] += f": {code}"
    if len(frames) > depth:
        lines.insert(0, f"... {len(frames) - depth} outer frame(s) left out")
    return lines
