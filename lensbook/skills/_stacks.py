"""Stacks as text: one frame as ``file:line in function``, a bounded stack like a traceback.

Every skill that shows where a thread, a task or a callback is (threads, asyncio, memory) writes
frames the same way, so one module does it. Paths are shortened by `lensbook.skills._frames`
(as an import would name them); source lines come from `linecache` (no file is opened twice)
and are capped, since a minified or generated line can be megabytes.
"""

from __future__ import annotations

import linecache
import types

from lensbook.skills._frames import short_path

__all__ = ["describe_frame", "format_stack", "frames_of", "qualname", "source_line"]


def qualname(code: types.CodeType) -> str:
    """The function's qualified name (``Class.method``; the bare name before Python 3.11)."""
    return getattr(code, "co_qualname", code.co_name)


def describe_frame(frame: types.FrameType) -> str:
    """``file:line in function`` for a frame."""
    code = frame.f_code
    return f"{short_path(code.co_filename)}:{frame.f_lineno} in {qualname(code)}"


def source_line(filename: str, lineno: int, limit: int = 120) -> str:
    """The stripped source line (empty when the source is not available), capped."""
    text = linecache.getline(filename, lineno).strip()
    return text if len(text) <= limit else text[: limit - 3] + "..."


def frames_of(frame: types.FrameType | None, limit: int = 64) -> list[types.FrameType]:
    """A thread's frames, innermost first, at most `limit`."""
    found: list[types.FrameType] = []
    while frame is not None and len(found) < limit:
        found.append(frame)
        frame = frame.f_back
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
