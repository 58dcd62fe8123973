"""Where live objects were created: a short tracemalloc window, then their allocation sites.

A leak of handles (sockets, child processes, logging handlers) shows in the OS or in a registry,
but not which of the user's functions keeps making them. While a leak goes on, new objects keep
being created: `created_where` traces allocations for a short window (or reuses a window the
memory skill already opened), then asks tracemalloc where each selected object still alive was
allocated, and names the innermost frame in the user's code (function, file:line) with the
library frames below it as detail. Objects created before the window have no traceback and
are only counted.

Cost: tracing slows allocation-heavy code (about x8 with a few frames) for `seconds`; the
selection is one pass over the collector's objects when the caller scans for them.
"""

from __future__ import annotations

import ast
import contextlib
import functools
import linecache
import time
import tracemalloc
from collections import Counter
from collections.abc import Callable, Iterable
from typing import Any

from lensbook.skills import intrusion
from lensbook.skills._static import stored_values

__all__ = ["created_where"]

#: frames kept per allocation when this module opens the window
FRAMES = 16


def created_where(
    select: Callable[[], Iterable[Any]], seconds: float = 1.0, top: int = 3
) -> dict[str, Any]:
    """Trace allocations for `seconds`, then group the objects `select()` returns by the user
    code that created them (those created before the window are counted apart)."""
    from lensbook.skills._frames import origin as code_origin
    from lensbook.skills._frames import short_path

    seconds = min(max(seconds, 0.2), 5.0)
    owned = not tracemalloc.is_tracing()
    window: contextlib.AbstractContextManager[Any] = contextlib.nullcontext()
    if owned:
        tracemalloc.start(FRAMES)
        # entered in the intrusion ledger: the run's end, stop() and exit stop it early; it
        # lasts the window and the walk after it (`select`: a paced walk of at most 2 s)
        window = intrusion.window(
            "tracemalloc", _stop_if_tracing, max_seconds=seconds + 3.0, detail="created_where"
        )
    with window as change:
        if change is not None:
            if change.wait(seconds):
                # ended early (the run ended, lensbook stopped, the process exits): the
                # traces went with it, and walking the heap now would only cost the program
                return {
                    "window_s": seconds,
                    "ended_early": change.undone_by,
                    "note": "the window was ended before its time: nothing was looked at",
                }
        else:
            time.sleep(seconds)  # the process's own tracing: nothing of ours to undo
        sites: Counter[str] = Counter()
        via: dict[str, str] = {}
        older = 0
        for obj in select():
            tb = _traceback_of(obj)
            if tb is None:
                older += 1
                continue
            frames = list(tb)  # oldest first
            user = next(
                (
                    i
                    for i in range(len(frames) - 1, -1, -1)
                    if code_origin(frames[i].filename) == "user"
                ),
                None,
            )
            if user is None:
                site = f"{short_path(frames[-1].filename)}:{frames[-1].lineno}"
            else:
                f = frames[user]
                name = _function_at(f.filename, f.lineno)
                site = f"{short_path(f.filename)}:{f.lineno}" + (f" in {name}" if name else "")
                below = [f"{short_path(x.filename)}:{x.lineno}" for x in frames[user + 1 :][-2:]]
                if below and site not in via:
                    via[site] = " <- ".join(reversed(below))
            sites[site] += 1
    return {
        "window_s": seconds,
        "created_in_window": sum(sites.values()),
        "created_before": older,
        "sites": [
            {"site": site, "count": n, **({"via": via[site]} if site in via else {})}
            for site, n in sites.most_common(max(top, 1))
        ],
    }


def _stop_if_tracing() -> None:
    if tracemalloc.is_tracing():
        tracemalloc.stop()


def _traceback_of(obj: Any) -> tracemalloc.Traceback | None:
    """Where `obj` was allocated; for an instance whose attributes live inline (no traceback
    is found for the object itself on some versions), where the first of its attribute values
    that has one was allocated (made by its ``__init__``, so on the same call path)."""
    tb = tracemalloc.get_object_traceback(obj)
    if tb is not None:
        return tb
    values = stored_values(obj)  # (its __dict__ is not asked for: see lensbook.skills._static)
    if values is None:
        try:
            attrs = object.__getattribute__(obj, "__dict__")
        except (AttributeError, TypeError):
            return None
        if not isinstance(attrs, dict):
            return None
        values = list(attrs.values())
    for value in values:
        if value is None or (type(value) in (bool, int) and -5 <= value <= 256):
            continue  # shared singletons and small ints were not made by this object
        tb = tracemalloc.get_object_traceback(value)
        if tb is not None:
            return tb
    return None


def _function_at(filename: str, lineno: int) -> str | None:
    """The qualified name of the innermost function whose body holds `lineno` (from source)."""
    spans = _function_spans(filename)
    best: tuple[int, str] | None = None
    for start, end, name in spans:
        if start <= lineno <= end and (best is None or start >= best[0]):
            best = (start, name)
    return best[1] if best else None


@functools.lru_cache(maxsize=256)
def _function_spans(filename: str) -> tuple[tuple[int, int, str], ...]:
    source = "".join(linecache.getlines(filename))
    if not source:
        return ()
    try:
        tree = ast.parse(source)
    except (SyntaxError, ValueError):
        return ()
    spans: list[tuple[int, int, str]] = []

    def walk(node: ast.AST, prefix: str) -> None:
        for child in ast.iter_child_nodes(node):
            if isinstance(child, (ast.FunctionDef, ast.AsyncFunctionDef)):
                name = prefix + child.name
                spans.append((child.lineno, child.end_lineno or child.lineno, name))
                walk(child, name + ".<locals>.")
            elif isinstance(child, ast.ClassDef):
                walk(child, prefix + child.name + ".")
            else:
                walk(child, prefix)

    walk(tree, "")
    return tuple(spans)
