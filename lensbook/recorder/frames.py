"""Frames and exceptions turned into the small JSON-safe facts the history keeps.

No frame, traceback or exception object is ever stored: only "file:line" strings, function
names and bounded texts (redacted when the event is made). Where code comes from (user, library,
stdlib, lensbook) and how a path is shortened is `lensbook.skills._frames`, the one place that
decides it (both answers cached per file name there).
"""

from __future__ import annotations

import linecache
import threading
import traceback
import types
from typing import Any

from lensbook.skills._frames import back, short_path
from lensbook.skills._frames import exception_type_name as _type_name
from lensbook.skills._frames import origin as code_origin
from lensbook.skills._stacks import qualname as _qualname
from lensbook.skills.redact import clip

__all__ = [
    "MAX_FRAMES",
    "MESSAGE_CHARS",
    "callable_name",
    "code_origin",
    "exception_detail",
    "short_path",
    "stack_of",
    "thread_name",
    "where",
]

MAX_FRAMES = 8
MESSAGE_CHARS = 300


def where(code: types.CodeType, lineno: int | None) -> str:
    return f"{short_path(code.co_filename)}:{lineno or 0}"


def stack_of(frame: types.FrameType | None, limit: int = MAX_FRAMES) -> list[str]:
    """The innermost `limit` frames from `frame` outwards, as "file:line in function", outermost
    first (the order of a traceback)."""
    found: list[str] = []
    f = frame
    while f is not None and len(found) < limit:
        found.append(f"{where(f.f_code, f.f_lineno)} in {_qualname(f.f_code)}")
        f = back(f)
    found.reverse()
    return found


def callable_name(fn: Any) -> str:
    """module.qualname of a function, bound method or callable object."""
    target = getattr(fn, "__func__", fn)
    module = getattr(target, "__module__", None) or ""
    name = getattr(target, "__qualname__", None) or type(target).__qualname__
    return f"{module}.{name}" if module and module != "builtins" else str(name)


def thread_name() -> str:
    """The running thread's name, without `threading.current_thread()`'s side effect: in a
    thread started by ``_thread.start_new_thread`` that would register a dummy Thread object,
    which the user would then see in ``threading.enumerate()``."""
    ident = threading.get_ident()
    known = getattr(threading, "_active", {}).get(ident)
    return str(known.name) if known is not None else f"_thread {ident}"


def exception_detail(exc: BaseException) -> dict[str, Any]:
    """type, message, where (innermost frame), function, line, thread, stack of an exception."""
    try:
        message = str(exc)
    except Exception:
        message = "<str() failed>"
    frames: list[tuple[types.CodeType, int | None]] = [
        (f.f_code, lineno) for f, lineno in traceback.walk_tb(exc.__traceback__)
    ]
    inner = frames[-MAX_FRAMES:]
    detail: dict[str, Any] = {
        "type": _type_name(type(exc)),
        "message": clip(message, MESSAGE_CHARS),
        "thread": thread_name(),
    }
    if inner:
        code, lineno = inner[-1]
        detail["where"] = where(code, lineno)
        detail["function"] = _qualname(code)
        detail["origin"] = code_origin(code.co_filename)
        line = linecache.getline(code.co_filename, lineno or 0).strip()
        if line:
            detail["line"] = clip(line, 160)
        detail["stack"] = [f"{where(c, n)} in {_qualname(c)}" for c, n in inner]
        if len(frames) > len(inner):
            detail["frames_omitted"] = len(frames) - len(inner)
    else:
        detail["where"] = "?"
        detail["function"] = "?"
    cause = exc.__cause__ or exc.__context__
    chain: list[str] = []
    while cause is not None and len(chain) < 3:
        chain.append(_type_name(type(cause)))
        cause = cause.__cause__ or cause.__context__
    if chain:
        detail["caused_by"] = chain
    return detail
