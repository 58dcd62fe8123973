"""What an intrusive probe could leave changed in this process, to compare before and after."""

from __future__ import annotations

import gc
import logging
import sys
import threading
import tracemalloc
import types
from typing import Any


def process_state(module: types.ModuleType | None = None) -> dict[str, Any]:
    """Tracing, gc flags and hooks, trace/profile functions, handlers, excepthooks, and the
    function `module.work` (the tracer's target in these tests)."""
    return {
        "tracemalloc": tracemalloc.is_tracing(),
        "gc_debug": gc.get_debug(),
        "settrace": sys.gettrace(),
        "setprofile": sys.getprofile(),
        "threading_trace": threading.gettrace(),
        "threading_profile": threading.getprofile(),
        "traced_function": vars(module).get("work") if module is not None else None,
        "gc_callbacks": list(gc.callbacks),
        "root_handlers": list(logging.root.handlers),
        "asyncio_handlers": list(logging.getLogger("asyncio").handlers),
        "excepthook": sys.excepthook,
        "switch_interval": sys.getswitchinterval(),
        "threading_excepthook": threading.excepthook,
    }


def run_scoped(state: dict[str, Any]) -> dict[str, Any]:
    """The part of the state a run must give back when it ends (observers stay until stop)."""
    keep = ("tracemalloc", "gc_debug", "settrace", "setprofile", "traced_function")
    return {k: state[k] for k in keep}
