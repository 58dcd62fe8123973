"""The `kernel` skill: the notebook's own state, seen from inside the IPython shell.

User variables ranked by deep size, what IPython's output cache (``Out``, ``_N``, ``_``, ``__``,
``___``) keeps alive, the execution count, and the cell running now and for how long. Outside
IPython every probe says "no kernel" (the variables probe falls back to ``__main__``).

Only names, types, sizes and shapes of user data are sent, never values, unless `share_values`
is set. IPython is imported lazily: if it was never imported, there is no shell to look at.
"""

from __future__ import annotations

import contextlib
import os
import re
import sys
import threading
import time
import types
from collections import deque
from collections.abc import Iterable, Iterator, Sequence
from dataclasses import dataclass, field
from typing import Any, ClassVar

import psutil

from lensbook.skills._frames import short_path as _short_path
from lensbook.skills._frames import type_module, type_names
from lensbook.skills._ipython import shell as _shell
from lensbook.skills._stacks import current_frames, frames_of
from lensbook.skills._static import (
    slot_values,
    stored_attr,
    stored_len,
    stored_members,
    stored_size,
    stored_values,
)
from lensbook.skills._units import MB, mb
from lensbook.skills.base import Skill, probe
from lensbook.skills.history_rules import CellErrorsSinceLoad
from lensbook.skills.redact import REDACTED, clip, is_secret_key
from lensbook.skills.rules import Evidence, Finding, ProbeCall, Rule
from lensbook.skills.untrusted import from_process
from lensbook.types import Severity

__all__ = ["KernelSkill", "deep_size", "human_bytes"]

NO_KERNEL = "no kernel"

#: IPython's own names in the user namespace: the output cache, input history, directories
_CACHE_NAME = re.compile(r"^(_+|_\d+)$")
_IPYTHON_NAME = re.compile(r"^(_+|_\d+|_i+|_i\d+|_ih|_oh|_dh|_exit_code|In|Out|__\w+__)$")
_CODE_TYPES = (
    types.ModuleType,
    types.FunctionType,
    types.BuiltinFunctionType,
    types.MethodType,
    type,
)
_ATOMS = (str, bytes, bytearray, int, float, complex, bool, type(None), range, memoryview)
#: libraries whose objects have a cheap, honest `.shape`
_ARRAY_MODULES = frozenset(
    (
        "numpy",
        "pandas",
        "torch",
        "polars",
        "pyarrow",
        "xarray",
        "scipy",
        "jax",
        "jaxlib",
        "cupy",
        "dask",
        "tensorflow",
    )
)
_PACKAGE_DIR = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def human_bytes(n: float) -> str:
    """Bytes as a short human figure (binary units, written kB/MB/GB as `ls -h` readers expect)."""
    for unit in ("B", "kB", "MB", "GB", "TB"):
        if abs(n) < 1024 or unit == "TB":
            return f"{n:.0f} {unit}" if unit == "B" else f"{n:.1f} {unit}"
        n /= 1024
    return f"{n:.1f} TB"


# -- sizes ------------------------------------------------------------------------------------


def _special_size(obj: Any, sizer: _Sizer) -> int | None:
    """Sizes that libraries know better than a walk: pandas, numpy and other array types."""
    module = type_module(type(obj)) or ""
    top = module.split(".", 1)[0]
    if top == "pandas":
        return _pandas_size(obj, sizer)
    if top == "numpy":
        nbytes = getattr(obj, "nbytes", None)
        if isinstance(nbytes, int):
            if getattr(obj, "dtype", None) is not None and obj.dtype.kind == "O":
                return nbytes + sizer.items_size(obj.flat, obj.size, 1)
            return nbytes
        return None
    if top == "torch" and hasattr(obj, "element_size") and hasattr(obj, "nelement"):
        return int(obj.element_size()) * int(obj.nelement())
    if top == "polars" and hasattr(obj, "estimated_size"):
        return int(obj.estimated_size())
    if top in ("pyarrow", "xarray", "cupy", "jax", "jaxlib", "scipy"):
        nbytes = getattr(obj, "nbytes", None)
        return nbytes if isinstance(nbytes, int) else None
    return None


#: above this many object cells, a DataFrame's strings are sampled instead of all measured
_PANDAS_DEEP_CELLS = 2_000_000
_PANDAS_SAMPLE_ROWS = 100_000


def _pandas_size(obj: Any, sizer: _Sizer) -> int | None:
    import pandas as pd

    if isinstance(obj, pd.DataFrame):
        object_cols = sum(1 for dtype in obj.dtypes if dtype.kind == "O")
        if object_cols * len(obj) <= _PANDAS_DEEP_CELLS:
            return int(obj.memory_usage(deep=True, index=True).sum())
        # deep=True measures every string (~80 ms per million): measure a sample and scale
        sizer.approx = True
        shallow = obj.memory_usage(deep=False, index=True)
        sample = obj.iloc[:_PANDAS_SAMPLE_ROWS]
        deep_sample = sample.memory_usage(deep=True, index=False)
        flat_sample = sample.memory_usage(deep=False, index=False)
        extra = (deep_sample - flat_sample).sum() * (len(obj) / max(len(sample), 1))
        return int(shallow.sum() + extra)
    if isinstance(obj, (pd.Series, pd.Index)):
        column: Any = obj
        if column.dtype.kind == "O" and len(column) > _PANDAS_DEEP_CELLS:
            sizer.approx = True
            part: Any = column[:_PANDAS_SAMPLE_ROWS]
            per = float(part.memory_usage(deep=True)) / max(len(part), 1)
            return int(per * len(column))
        return int(column.memory_usage(deep=True))
    return None


_UNSET = object()


class _Sizer:
    """Deep size with bounded recursion: depth, items per container, items per value, time."""

    MAX_DEPTH = 4
    MAX_ITEMS = 2_000  # per container; more are sampled and scaled
    MAX_VISITS = 100_000  # per top-level value

    def __init__(self, deadline: float) -> None:
        self.deadline = deadline
        self.approx = False
        self._seen: set[int] = set()
        self._visits = 0

    def size(self, obj: Any) -> tuple[int, bool]:
        """(bytes, approximate?) of one value and what it holds."""
        self._seen = set()
        self._visits = 0
        self.approx = False
        try:
            total = self._size(obj, 0)
        except Exception:  # a value changed under us, or a library raised: fall back
            self.approx = True
            total = stored_size(obj)
        return total, self.approx

    def out_of_budget(self) -> bool:
        return self._visits >= self.MAX_VISITS or time.perf_counter() > self.deadline

    def _size(self, obj: Any, depth: int) -> int:
        oid = id(obj)
        if oid in self._seen:
            return 0
        self._seen.add(oid)
        self._visits += 1
        special = _special_size(obj, self)
        if special is not None:
            return special
        # judged by the type and read through the built-in base's own methods: a subclass's
        # ``__sizeof__``, ``__len__``, ``__iter__`` or ``items`` (or a computed ``__class__``)
        # is the program's code, never run here
        base = stored_size(obj)
        kind = type(obj)
        if issubclass(kind, (_ATOMS, _CODE_TYPES)):
            return base
        children: Iterable[Any]
        count: int
        length = stored_len(obj)
        if issubclass(kind, dict):
            children, count = _dict_items(obj), (length or 0) * 2
        elif length is not None:
            children, count = iter(stored_members(obj)), length
        elif (held := stored_values(obj)) is not None:
            # attributes kept inline: read as the gc sees them (asking for the __dict__ would
            # make the object keep one for life, slower: see lensbook.skills._static)
            children, count = iter(held), len(held)
        else:
            # object.__getattribute__: no user __getattr__ (a proxy could do I/O) is run
            attrs = _raw_attr(obj, "__dict__")
            if isinstance(attrs, dict):
                children, count = iter((attrs,)), 1
            else:
                slots = slot_values(obj)
                children, count = (value for _, value in slots), len(slots)
        if count == 0:
            return base
        if depth >= self.MAX_DEPTH or self.out_of_budget():
            self.approx = True
            return base
        return base + self.items_size(children, count, depth + 1)

    def items_size(self, items: Iterable[Any], count: int, depth: int) -> int:
        """Total deep size of `count` items, sampling the first MAX_ITEMS and scaling."""
        total = 0
        done = 0
        for item in items:
            if done >= self.MAX_ITEMS or self.out_of_budget():
                break
            total += self._size(item, depth)
            done += 1
        if done < count:
            self.approx = True
            total = int(total * count / done) if done else total
        return total


def _raw_attr(obj: Any, name: str) -> Any:
    try:
        return object.__getattribute__(obj, name)
    except Exception:
        return None


def _dict_items(d: dict[Any, Any]) -> Iterator[Any]:
    for key, value in dict.items(d):
        yield key
        yield value


def deep_size(obj: Any, budget: float = 1.0) -> tuple[int, bool]:
    """(bytes, approximate?) of `obj` and what it holds, within `budget` seconds."""
    return _Sizer(time.perf_counter() + budget).size(obj)


def _type_name(obj: Any) -> str:
    """The type's name as the user knows it (array libraries by their top package), read by
    `type`'s own descriptors (no metaclass's code runs)."""
    full, qualname, _ = type_names(type(obj))
    top = (type_module(type(obj)) or "").split(".", 1)[0]
    if top in ("pandas", "numpy", "polars", "torch", "pyarrow", "xarray"):
        return f"{top}.{qualname}"
    return full


def _shape_info(obj: Any) -> dict[str, Any]:
    """Shape, dtype and length: facts about a value that reveal none of its contents."""
    info: dict[str, Any] = {}
    module = (type_module(type(obj)) or "").split(".", 1)[0]
    if module in _ARRAY_MODULES:
        shape = getattr(obj, "shape", None)
        if isinstance(shape, tuple) and all(isinstance(n, int) for n in shape):
            info["shape"] = list(shape)
    if module in ("numpy", "pandas", "torch"):
        dtype = getattr(obj, "dtype", None)
        if dtype is not None:
            info["dtype"] = str(dtype)
        if getattr(obj, "base", None) is not None and module == "numpy":
            info["view"] = True  # shares memory with another array
    length = stored_len(obj)  # (by the type: a subclass's __len__ never runs)
    if length is None:
        text = next((b for b in (str, bytes, bytearray) if issubclass(type(obj), b)), None)
        length = None if text is None else text.__len__(obj)
    if length is not None:
        info["len"] = length
    return info


def _ref_count(value: Any) -> int:
    return sys.getrefcount(value)


def _ref_overhead() -> int:
    """References a caller holding one local name sees from `_ref_count` (interpreter-specific)."""
    local = object()
    return _ref_count(local)


# -- the shell --------------------------------------------------------------------------------


@dataclass
class _Cell:
    count: int | None
    started: float
    thread: int
    first_line: str
    observed_only: bool = False  # seen running from its frames: started at or before `started`


@dataclass
class _CellClock:
    """Times cells through IPython's pre/post_run_cell events."""

    shell: Any
    running: list[_Cell] = field(default_factory=list)
    finished: deque[dict[str, Any]] = field(default_factory=lambda: deque(maxlen=20))

    def pre(self, info: Any) -> None:
        raw = str(getattr(info, "raw_cell", "") or "")
        first = next((line.strip() for line in raw.splitlines() if line.strip()), "")
        count = self.shell.execution_count - 1 if getattr(info, "store_history", False) else None
        line = clip(first, 160, marker="")
        self.running.append(_Cell(count, time.time(), threading.get_ident(), line))

    def post(self, result: Any) -> None:
        cell = self.running.pop() if self.running else None
        error = getattr(result, "error_in_exec", None) or getattr(result, "error_before_exec", None)
        if cell is None:
            return
        self.finished.append(
            {
                "cell": getattr(result, "execution_count", None) or cell.count,
                "seconds": round(time.time() - cell.started, 3),
                "ok": error is None,
                **({"error": type(error).__name__} if error is not None else {}),
            }
        )


class KernelSkill(Skill):
    id = "kernel"
    title = "Notebook kernel"
    description = (
        "The IPython kernel's state: variables by deep size, the Out cache, the running cell"
    )
    system_prompt = (
        "You are the kernel operator of a Jupyter/IPython session. You see the user namespace "
        "(variables ranked by deep size: names, types, shapes and sizes, never values), "
        "IPython's output cache (Out[N], _N, _, __, ___), which keeps every displayed result "
        "alive even after its variable was deleted, the execution count, and the cell running "
        "now. Look for memory held by the output cache (a big DataFrame reachable only through "
        "Out[N]), oversized variables, aliases of the same object, and cells that have run for "
        "a long time (and where they are). Name the variable or Out[N], its type, shape and "
        "size, and how to free it (del Out[N]; %reset -f out). Values are never shown unless "
        "the user opted in."
    )
    # what the coordinator and the watcher know of it (see `Skill`)
    keywords = ("notebook", "cell", "kernel", "variable", "dataframe", "output")
    families: ClassVar[dict[str, tuple[str, ...]]] = {
        "memory growth": ("output_cache_retention", "large_variable"),
        "CPU saturation": ("long_running_cell",),
    }

    def __init__(self) -> None:
        self._clock: _CellClock | None = None
        self._lock = threading.Lock()
        # (execution count, first time seen running) of a cell that started before the clock
        self._first_seen: tuple[int, float] = (-1, 0.0)
        self._process = psutil.Process()

    # -- hooks --------------------------------------------------------------------------

    def _ensure_clock(self, shell: Any) -> _CellClock | None:
        """Register the cell clock on the shell (idempotent, lazy); None outside IPython."""
        if shell is None:
            return None
        with self._lock:
            if self._clock is not None and self._clock.shell is shell:
                return self._clock
            if self._clock is not None:
                self._unregister(self._clock)
            clock = _CellClock(shell)
            shell.events.register("pre_run_cell", clock.pre)
            shell.events.register("post_run_cell", clock.post)
            self._clock = clock
            return clock

    @staticmethod
    def _unregister(clock: _CellClock) -> None:
        for name, callback in (("pre_run_cell", clock.pre), ("post_run_cell", clock.post)):
            with contextlib.suppress(ValueError):
                clock.shell.events.unregister(name, callback)

    def close(self) -> None:
        """Remove the cell clock from the shell."""
        with self._lock:
            if self._clock is not None:
                self._unregister(self._clock)
                self._clock = None

    # -- the running cell ---------------------------------------------------------------

    def _running_cell(self, shell: Any, clock: _CellClock | None) -> dict[str, Any] | None:
        """The cell executing now: from the clock, or from the kernel thread's frames."""
        thread_id = clock.running[-1].thread if clock and clock.running else None
        thread_id = thread_id or threading.main_thread().ident
        frame = current_frames().get(thread_id) if thread_id is not None else None
        stack = frames_of(frame, limit=300)
        # frames inside IPython's run_code are the cell's own (innermost first)
        cut = next(
            (
                i
                for i, f in enumerate(stack)
                if f.f_code.co_name == "run_code" and "IPython" in f.f_code.co_filename
            ),
            None,
        )
        cell = clock.running[-1] if clock and clock.running else None
        stale = cell is not None and cut is None and time.time() - cell.started > 5.0
        if clock is not None and stale:
            # its thread runs no cell code any more: a cell whose post_run_cell never came
            clock.running.clear()
            cell = None
        if cell is None and cut is None:
            return None
        if cell is None:
            count = shell.execution_count - 1
            if self._first_seen[0] != count:
                self._first_seen = (count, time.time())
            started = self._first_seen[1]
            cell = _Cell(count, started, thread_id or 0, "", observed_only=True)
        inner = stack[:cut] if cut is not None else []
        where = [
            f"{_short_path(f.f_code.co_filename)}:{f.f_lineno} in {f.f_code.co_name}"
            for f in inner[:6]
        ]
        in_lensbook = any(f.f_code.co_filename.startswith(_PACKAGE_DIR) for f in inner)
        return {
            "cell": cell.count,
            "seconds": round(time.time() - cell.started, 2),
            "seconds_is_lower_bound": cell.observed_only,
            "first_line": cell.first_line,
            "where": where,
            "is_lensbook": in_lensbook,
        }

    # -- snapshot -------------------------------------------------------------------------

    def snapshot(self) -> dict[str, Any]:
        """Cost: ~14 µs (counts of namespace and cache, one stack walk, one psutil read)."""
        rss_mb = mb(self._process.memory_info().rss, 1)
        shell = _shell()
        if shell is None:
            return {"in_ipython": False, "rss_mb": rss_mb}
        clock = self._ensure_clock(shell)
        running = self._running_cell(shell, clock)
        out = shell.user_ns.get("Out")
        return {
            "in_ipython": True,
            "execution_count": int(shell.execution_count),
            "user_names": max(len(shell.user_ns) - len(shell.user_ns_hidden), 0),
            "out_cache_entries": len(out) if isinstance(out, dict) else 0,
            "out_cache_limit": int(getattr(shell.displayhook, "cache_size", 0) or 0),
            "cell_running": running is not None,
            "cell_seconds": running["seconds"] if running else 0.0,
            "cell_is_lensbook": bool(running and running["is_lensbook"]),
            "last_error_frames": _traceback_depth(_last_error(shell)),
            "rss_mb": rss_mb,
        }

    # -- probes ---------------------------------------------------------------------------

    @probe
    def state(self) -> dict[str, Any]:
        """The kernel at a glance: shell, execution count, the cell running now, recent cells.

        The running cell comes with how long it has run and where it is now (innermost frames
        of the kernel thread); recent cells with their duration and error type.

        Cost: one stack walk of the kernel thread, microseconds.
        """
        shell = _shell()
        if shell is None:
            return {"kernel": NO_KERNEL, "note": "not running inside IPython or Jupyter"}
        clock = self._ensure_clock(shell)
        import IPython

        out = shell.user_ns.get("Out")
        return {
            "kernel": type(shell).__name__,
            "ipython": IPython.__version__,
            "execution_count": shell.execution_count,
            "running_cell": self._running_cell(shell, clock),
            "recent_cells": list(clock.finished)[-10:] if clock else [],
            "cell_timing_since": "cells started after lensbook first looked" if clock else None,
            "user_names": max(len(shell.user_ns) - len(shell.user_ns_hidden), 0),
            "out_cache_entries": len(out) if isinstance(out, dict) else 0,
            "out_cache_limit": getattr(shell.displayhook, "cache_size", None),
        }

    @probe
    def variables(self, limit: int = 15, min_bytes: int = 0) -> dict[str, Any]:
        """User-namespace variables ranked by deep size (names, types, shapes, sizes; no values).

        Deep size: pandas memory_usage(deep=True) (strings sampled past 2M cells), numpy nbytes,
        containers and objects walked 4 levels deep (2,000 items each, sampled beyond) and
        marked approximate when cut short. Aliases of one object are listed together. Outside
        IPython, the variables of ``__main__``. Modules, functions and classes are not listed.

        Cost: O(size of the user's data structures), bounded to ~2 s; pandas object columns
        ~80 ms per million strings.

        Args:
            limit: how many variables to list, largest first (at most 50).
            min_bytes: leave out variables smaller than this.
        """
        shell = _shell()
        names = _user_variables(shell)
        deadline = time.perf_counter() + 2.0
        sizer = _Sizer(deadline)
        by_id: dict[int, list[str]] = {}
        for name, value in names:
            by_id.setdefault(id(value), []).append(name)
        rows: list[dict[str, Any]] = []
        sizes: dict[int, tuple[int, bool]] = {}
        skipped = 0
        for name, value in names:
            if id(value) in sizes:
                size, approx = sizes[id(value)]
            elif time.perf_counter() > deadline:
                size, approx = stored_size(value), True
                skipped += 1
            else:
                size, approx = sizes[id(value)] = sizer.size(value)
            row: dict[str, Any] = {
                "name": from_process(name),
                "type": _type_name(value),
                "bytes": size,
            }
            row["size"] = human_bytes(size)
            row.update(_shape_info(value))
            if approx:
                row["approximate"] = True
            aliases = [n for n in by_id[id(value)] if n != name]
            if aliases:
                row["same_object_as"] = [from_process(n) for n in aliases[:5]]
            if self.share_values:
                row["value"] = _value_preview(name, value)
            rows.append(row)
        rows.sort(key=lambda r: -int(r["bytes"]))
        unique_total = sum(size for size, _ in sizes.values())
        shown = [r for r in rows if r["bytes"] >= min_bytes][: min(max(limit, 0), 50)]
        return {
            "kernel": type(shell).__name__ if shell is not None else NO_KERNEL,
            "namespace": "user_ns" if shell is not None else "__main__",
            "variables": len(rows),
            "total_bytes": unique_total,
            "total": human_bytes(unique_total),
            "top": shown,
            **({"sized_shallow_after_budget": skipped} if skipped else {}),
        }

    @probe
    def last_error(self, limit: int = 5) -> dict[str, Any]:
        """What the last uncaught error of a cell keeps alive: the frames of its traceback and
        their largest locals (names, types, shapes, sizes; no values), innermost first.

        IPython keeps that exception for ``%debug`` and ``%tb`` (``sys.last_value``,
        ``sys.last_traceback``, the shell's last execution result); its traceback holds every
        frame of the failed call, and each frame holds all its local variables.

        Args:
            limit: how many locals to list, largest first (at most 20).

        Cost: O(size of those locals), bounded to ~2 s as `kernel_variables`.
        """
        shell = _shell()
        exc = _last_error(shell)
        if exc is None:
            return {"last_error": None}
        sizer = _Sizer(time.perf_counter() + 2.0)
        seen: set[int] = set()
        frames: list[dict[str, Any]] = []
        held: list[dict[str, Any]] = []
        from lensbook.skills._frames import origin as code_origin

        named = {id(v) for _, v in _user_variables(shell)}
        tb = exc.__traceback__
        reached_user = False
        while tb is not None and len(frames) < 30:
            frame = tb.tb_frame
            code = frame.f_code
            reached_user = reached_user or code_origin(code.co_filename) == "user"
            tb_next = tb.tb_next
            if not reached_user:  # IPython's own frames that ran the cell
                tb = tb_next
                continue
            where = f"{_short_path(code.co_filename)}:{tb.tb_lineno}"
            function = getattr(code, "co_qualname", code.co_name)
            frames.append({"function": function, "where": where})
            if code.co_name != "<module>":  # a cell's own frame is the user namespace
                for name, value in list(frame.f_locals.items()):
                    if id(value) in seen or id(value) in named or isinstance(value, _NOT_DATA):
                        continue  # a user variable still names it: not kept by the error
                    seen.add(id(value))
                    size, approx = sizer.size(value)
                    row: dict[str, Any] = {
                        "name": name,
                        "function": function,
                        "where": where,
                        "type": _type_name(value),
                        "bytes": size,
                        "size": human_bytes(size),
                        **_shape_info(value),
                    }
                    if approx:
                        row["approximate"] = True
                    held.append(row)
            tb = tb_next
        held.sort(key=lambda r: -int(r["bytes"]))
        total = sum(int(r["bytes"]) for r in held)
        return {
            "last_error": from_process(f"{type(exc).__name__}: {clip(str(exc), 120)}"),
            "kept_by": _last_error_roots(shell, exc),
            "frames": frames,
            "held_bytes": total,
            "held": human_bytes(total),
            "top": held[: min(max(limit, 1), 20)],
        }

    @probe
    def output_cache(self, limit: int = 10) -> dict[str, Any]:
        """IPython's output cache: what Out[N] (and _N, _, __, ___) keeps alive, largest first.

        Every displayed result stays referenced by Out[N] and _N after its variable is deleted.
        For each entry: its names in the cache, type, shape, deep size, the user variables
        that also name it, and whether the cache is the only thing keeping it alive (counted
        from the object's reference count, so references inside other objects count too).

        Cost: O(cache entries, at most the cache size of 1,000) plus a deep size of each
        entry, bounded to ~2 s.

        Args:
            limit: how many entries to list, largest first (at most 50).
        """
        shell = _shell()
        if shell is None:
            return {"kernel": NO_KERNEL, "entries": 0}
        out = shell.user_ns.get("Out")
        if not isinstance(out, dict):
            return {"kernel": type(shell).__name__, "entries": 0, "note": "no Out cache"}
        overhead = _ref_overhead()
        cache_refs, cache_names, user_names = _namespace_refs(shell)
        rows: list[dict[str, Any]] = []
        keys = list(out.keys())
        # first pass: reference counts, while this frame holds exactly one reference of its own
        for key in keys:
            value = out.get(key)
            if value is None:
                continue
            refs = _ref_count(value)
            oid = id(value)
            del value
            others = refs - overhead - cache_refs.get(oid, 0) - len(user_names.get(oid, ()))
            rows.append(
                {
                    "name": f"Out[{key}]",
                    "key": key,
                    "cache_names": [from_process(n) for n in cache_names.get(oid, [])[:5]],
                    "user_names": [from_process(n) for n in user_names.get(oid, [])[:5]],
                    "other_references": max(others, 0),
                    "only_cache": not user_names.get(oid) and others <= 0,
                }
            )
        # second pass: deep sizes (this holds references, so it comes after the counting)
        sizer = _Sizer(time.perf_counter() + 2.0)
        seen: dict[int, int] = {}
        for row in rows:
            value = out.get(row.pop("key"))
            if id(value) in seen:
                row.update(type=_type_name(value), bytes=seen[id(value)], duplicate=True)
                row["size"] = human_bytes(seen[id(value)])
                continue
            if sizer.out_of_budget():
                size, approx = stored_size(value), True
            else:
                size, approx = sizer.size(value)
            seen[id(value)] = size
            row.update(type=_type_name(value), bytes=size, size=human_bytes(size))
            row.update(_shape_info(value))
            if approx:
                row["approximate"] = True
            if self.share_values:
                row["value"] = _value_preview(row["name"], value)
        rows.sort(key=lambda r: -int(r["bytes"]))
        total = sum(seen.values())
        only = sum(r["bytes"] for r in rows if r["only_cache"] and not r.get("duplicate"))
        return {
            "kernel": type(shell).__name__,
            "entries": len(rows),
            "cache_limit": getattr(shell.displayhook, "cache_size", None),
            "total_bytes": total,
            "total": human_bytes(total),
            "held_only_by_cache_bytes": only,
            "held_only_by_cache": human_bytes(only),
            "top": rows[: min(max(limit, 0), 50)],
            "free_with": "del Out[N] and _N (and _, __, ___ if they name it); %reset -f out",
        }

    @probe
    def variable(self, name: str) -> dict[str, Any]:
        """Details of one variable or cache entry ("df", "Out[7]", "_7"): size, shape, layout.

        For a DataFrame, the largest columns with their dtype and memory; for a container,
        its length and the types of its items; the other names of the same object and whether
        anything besides the names refers to it. No values unless the user opted in.

        Cost: one deep size of that value (bounded to ~2 s).

        Args:
            name: a variable name, or Out[N] / _N for an output-cache entry.
        """
        shell = _shell()
        namespace = shell.user_ns if shell is not None else vars(sys.modules["__main__"])
        match = re.fullmatch(r"\s*Out\[(\d+)\]\s*", name)
        out = namespace.get("Out") if shell is not None else None
        if match and isinstance(out, dict):
            found = int(match.group(1)) in out
            value = out.get(int(match.group(1)))
        else:
            found = name in namespace
            value = namespace.get(name)
        if not found:
            raise ValueError(
                f"no variable {name!r} in the {'user' if shell else '__main__'} namespace"
            )
        size, approx = deep_size(value, budget=2.0)
        info: dict[str, Any] = {
            "name": from_process(name),
            "type": _type_name(value),
            "bytes": size,
            "size": human_bytes(size),
            **_shape_info(value),
        }
        if approx:
            info["approximate"] = True
        info.update(_layout(value))
        if shell is not None:
            _, cache_names, user_names = _namespace_refs(shell)
            info["names"] = [
                from_process(n)
                for n in sorted(
                    set(cache_names.get(id(value), [])) | set(user_names.get(id(value), []))
                )[:10]
            ]
        if self.share_values:
            info["value"] = _value_preview(name, value)
        return info

    def rules(self) -> Sequence[Rule]:
        return (
            OutputCacheRetention(),
            LargeVariable(),
            LongRunningCell(),
            LastErrorRetention(),
            CellErrorsSinceLoad(),
        )


_NOT_DATA = (types.ModuleType, types.FunctionType, type, types.BuiltinFunctionType)


def _last_error(shell: Any) -> BaseException | None:
    """The last uncaught exception IPython kept (None outside IPython or after none)."""
    if shell is None:
        return None
    exc = getattr(sys, "last_exc", None) or getattr(sys, "last_value", None)
    if exc is None:
        result = getattr(shell, "last_execution_result", None)
        exc = getattr(result, "error_in_exec", None)
    return exc if isinstance(exc, BaseException) else None


def _traceback_depth(exc: BaseException | None) -> int:
    depth, tb = 0, exc.__traceback__ if exc is not None else None
    while tb is not None and depth < 100:
        depth, tb = depth + 1, tb.tb_next
    return depth


def _last_error_roots(shell: Any, exc: BaseException) -> list[str]:
    """Where the kept exception is referenced from, as a user would clear it."""
    roots = [
        f"sys.{name}" for name in ("last_exc", "last_value") if getattr(sys, name, None) is exc
    ]
    if getattr(sys, "last_traceback", None) is exc.__traceback__:
        roots.append("sys.last_traceback")
    result = getattr(shell, "last_execution_result", None)
    if getattr(result, "error_in_exec", None) is exc:
        roots.append("the shell's last_execution_result")
    return roots


def _user_variables(shell: Any) -> list[tuple[str, Any]]:
    """(name, value) of the user's data: no IPython names, modules, functions or classes."""
    if shell is not None:
        namespace = dict(shell.user_ns)
        hidden = dict(shell.user_ns_hidden)
    else:
        namespace = dict(vars(sys.modules["__main__"]))
        hidden = {}
    found = []
    for name, value in namespace.items():
        if not isinstance(name, str) or _IPYTHON_NAME.match(name):
            continue
        if name in hidden and hidden[name] is value:
            continue
        kind = type(value)
        if issubclass(kind, _CODE_TYPES) or (type_module(kind) or "").startswith("IPython"):
            continue
        found.append((name, value))
    return found


def _namespace_refs(
    shell: Any,
) -> tuple[dict[int, int], dict[int, list[str]], dict[int, list[str]]]:
    """By object id: references held by IPython's caches, cache names, user variable names.

    The caches: Out, _N / _ / __ / ___ in the user namespace and its hidden copy, the
    displayhook's own _ / __ / ___, and the last execution result. Ids only: no value is held.
    """
    counts: dict[int, int] = {}
    cache_names: dict[int, list[str]] = {}
    user_names: dict[int, list[str]] = {}

    def count(value: Any, label: str | None = None) -> None:
        counts[id(value)] = counts.get(id(value), 0) + 1
        if label is not None:
            cache_names.setdefault(id(value), []).append(label)

    out = shell.user_ns.get("Out")
    if isinstance(out, dict):
        for value in list(out.values()):
            count(value)
    for name, value in list(shell.user_ns.items()):
        if not isinstance(name, str):
            continue
        if _CACHE_NAME.match(name):
            count(value, name)
        elif not _IPYTHON_NAME.match(name):
            user_names.setdefault(id(value), []).append(name)
    for name, value in list(shell.user_ns_hidden.items()):
        if isinstance(name, str):
            count(value)
    hook = shell.displayhook
    for attr in ("_", "__", "___"):
        held = stored_attr(hook, attr, _UNSET)
        if held is not _UNSET:
            count(held)
    results = {
        id(r): r
        for r in (shell.last_execution_result, getattr(hook, "exec_result", None))
        if r is not None
    }
    for result in results.values():
        if getattr(result, "result", None) is not None:
            count(result.result)
    return counts, cache_names, user_names


def _layout(value: Any) -> dict[str, Any]:
    """Where a value's memory is: DataFrame columns, or the item types of a container."""
    module = (type_module(type(value)) or "").split(".", 1)[0]
    if module == "pandas" and hasattr(value, "columns") and hasattr(value, "memory_usage"):
        try:
            usage = value.memory_usage(deep=len(value) * value.shape[1] <= _PANDAS_DEEP_CELLS)
        except Exception:
            return {}
        columns = []
        for col, nbytes in sorted(usage.items(), key=lambda kv: -int(kv[1]))[:10]:
            dtype = str(value.dtypes[col]) if col in value.columns else "index"
            columns.append(
                {
                    "column": from_process(clip(str(col), 60)),
                    "dtype": dtype,
                    "size": human_bytes(nbytes),
                }
            )
        return {"columns": int(value.shape[1]), "largest_columns": columns}
    if isinstance(value, (list, tuple, set, frozenset, deque)):
        kinds: dict[str, int] = {}
        for item in list(value)[:2000] if not isinstance(value, (set, frozenset)) else value:
            kinds[_type_name(item)] = kinds.get(_type_name(item), 0) + 1
            if sum(kinds.values()) >= 2000:
                break
        return {"item_types": dict(sorted(kinds.items(), key=lambda kv: -kv[1])[:5])}
    if isinstance(value, dict):
        kinds = {}
        for item in list(value.values())[:2000]:
            kinds[_type_name(item)] = kinds.get(_type_name(item), 0) + 1
        return {"value_types": dict(sorted(kinds.items(), key=lambda kv: -kv[1])[:5])}
    return {}


def _value_preview(name: str, value: Any) -> str:
    """A short repr, only when values are shared; never for names that say they are secret."""
    if is_secret_key(name):
        return REDACTED
    try:
        text = repr(value)
    except Exception as exc:
        return f"<repr failed: {type(exc).__name__}>"
    return from_process(clip(text, 120))


# -- rules ------------------------------------------------------------------------------------

#: results held only by the output cache are judged against the process: a finding when they
#: are this share of its RSS, or this share of the host's available memory; the floor is only
#: there against noise (small results are not worth a notification)
CACHE_SHARE_OF_RSS = 0.10
CACHE_SHARE_OF_AVAILABLE = 0.05
CACHE_FLOOR_BYTES = 16 * MB
LARGE_VARIABLE_BYTES = 1024 * MB
LONG_CELL_SECONDS = 600.0


class OutputCacheRetention(Rule):
    """Big results kept alive only by IPython's output cache after their variable went away."""

    name = "output_cache_retention"

    def wants(self, ev: Evidence) -> Sequence[ProbeCall]:
        if ev.latest("in_ipython") and ev.latest("out_cache_entries", 0):
            return [ProbeCall("kernel_output_cache", {"limit": 5})]
        return []

    def judge(self, ev: Evidence) -> Sequence[Finding]:
        cache = ev.result("kernel_output_cache")
        if not isinstance(cache, dict):
            return []
        held = [r for r in cache.get("top", []) if r.get("only_cache") and not r.get("duplicate")]
        only = int(cache.get("held_only_by_cache_bytes") or 0)
        rss_mb = _rss_mb(ev)
        if not held or not _significant(only, rss_mb):
            return []
        lead = held[0]
        share = f", {lead['bytes'] / MB / rss_mb:.0%} of the process's RSS" if rss_mb else ""
        shape = _shape(lead) or None
        names = ", ".join([lead["name"], *(lead.get("cache_names") or [])])
        others = "; ".join(f"{r['name']} {r['type']} {r['size']}" for r in held[1:3])
        severity: Severity = "warning"
        return [
            Finding(
                anomaly_type="output_cache_retention",
                severity=severity,
                context=(
                    f"IPython's output cache holds {cache.get('entries')} result(s) totalling "
                    f"{cache.get('total')}; {human_bytes(only)} of it is referenced by nothing but "
                    f"the cache (RSS {rss_mb:.0f} MB, execution count "
                    f"{ev.latest('execution_count')})"
                ),
                observation=(
                    f"{lead['name']} keeps a {lead['type']}"
                    + (f" of shape {shape}" if shape else "")
                    + f" alive: {lead['size']} ({lead['bytes']} bytes{share}), named only by "
                    f"{names}; no user variable refers to it"
                    + (f". Also only in the cache: {others}" if others else "")
                ),
                hypothesis=(
                    f"the variable was deleted but the result was displayed (it was a cell's last "
                    f"expression), so {lead['name']} still holds it; free it with "
                    f"`del {lead['name']}` plus its _N alias, or `%reset -f out`"
                ),
            )
        ]


def _rss_mb(ev: Evidence) -> float:
    """The newest snapshot's RSS in MB (0 when unknown): the bar a kernel finding measures by."""
    return float(ev.latest("rss_mb", 0) or 0)


def _shape(row: dict[str, Any]) -> str:
    """An array's shape as ``3x4`` ('' for a value without one)."""
    return "x".join(str(n) for n in row.get("shape", []))


def _significant(nbytes: int, rss_mb: float) -> bool:
    """Whether memory held for nothing matters to this process (see CACHE_SHARE_OF_RSS)."""
    if nbytes < CACHE_FLOOR_BYTES:
        return False
    if rss_mb > 0 and nbytes >= CACHE_SHARE_OF_RSS * rss_mb * MB:
        return True
    try:
        available = psutil.virtual_memory().available
    except (OSError, RuntimeError):
        return False
    return nbytes >= CACHE_SHARE_OF_AVAILABLE * available


#: memory kept alive by the last error's frames that makes a finding: a share of the RSS, with a
#: floor so that small kernels stay quiet
LAST_ERROR_SHARE = 0.10
LAST_ERROR_FLOOR_BYTES = 16 * MB


class LastErrorRetention(Rule):
    """The last uncaught error of a cell keeping large locals of its frames alive."""

    name = "last_error_retention"

    def wants(self, ev: Evidence) -> Sequence[ProbeCall]:
        if ev.latest("in_ipython") and ev.latest("last_error_frames", 0) > 1:
            return [ProbeCall("kernel_last_error", {"limit": 5})]
        return []

    def judge(self, ev: Evidence) -> Sequence[Finding]:
        result = ev.result("kernel_last_error")
        if not isinstance(result, dict) or not result.get("top"):
            return []
        held = int(result.get("held_bytes") or 0)
        rss = _rss_mb(ev) * MB
        if held < LAST_ERROR_FLOOR_BYTES or (rss and held < LAST_ERROR_SHARE * rss):
            return []
        lead = result["top"][0]
        shape = _shape(lead)
        roots = " and ".join(result.get("kept_by") or []) or "IPython"
        share = f", {held / rss:.0%} of the process's RSS" if rss else ""
        path = " -> ".join(f"{f['function']} ({f['where']})" for f in result.get("frames", []))
        clear = "; ".join(
            ["sys.last_traceback = sys.last_value = sys.last_type = None"]
            + (["sys.last_exc = None"] if "sys.last_exc" in roots else [])
        )
        return [
            Finding(
                anomaly_type="last_error_retention",
                severity="warning",
                context=(
                    f"the last uncaught error ({result.get('last_error')}) is kept by {roots}; "
                    f"its traceback holds {result.get('held')}{share} in the locals of its "
                    f"frames: {path}"
                ),
                observation=(
                    f"the frame of {lead['function']} at {lead['where']} keeps its local "
                    f"{lead['name']!r} alive: {lead['type']}{' ' + shape if shape else ''}, "
                    f"{lead['size']}; no user variable names it"
                ),
                hypothesis=(
                    "IPython keeps the last exception for %debug and %tb, and its traceback "
                    "keeps every frame of the failed call with all its locals. Free them with "
                    f"`{clear}` and run a cell that succeeds (or %reset); in the function, "
                    "del large intermediates before code that may raise."
                ),
            )
        ]


class LargeVariable(Rule):
    """One user variable holding a large share of memory (a note, not an alarm)."""

    name = "large_variable"

    def wants(self, ev: Evidence) -> Sequence[ProbeCall]:
        if ev.latest("in_ipython") and _rss_mb(ev) * MB >= (LARGE_VARIABLE_BYTES):
            return [ProbeCall("kernel_variables", {"limit": 5})]
        return []

    def judge(self, ev: Evidence) -> Sequence[Finding]:
        result = ev.result("kernel_variables")
        if not isinstance(result, dict) or not result.get("top"):
            return []
        lead = result["top"][0]
        if int(lead.get("bytes", 0)) < LARGE_VARIABLE_BYTES:
            return []
        rss_mb = _rss_mb(ev)
        shape = _shape(lead)
        return [
            Finding(
                anomaly_type="large_variable",
                severity="info",
                context=f"{result.get('variables')} user variables hold {result.get('total')}; "
                f"RSS {rss_mb:.0f} MB",
                observation=(
                    f"variable {lead['name']!r} ({lead['type']}{' ' + shape if shape else ''}) "
                    f"holds {lead['size']}"
                    + (f", {lead['bytes'] / MB / rss_mb:.0%} of RSS" if rss_mb else "")
                ),
                hypothesis="expected if it is the working data set; otherwise del it when done",
            )
        ]


class LongRunningCell(Rule):
    """A cell (other than lensbook's own) running for many minutes."""

    name = "long_running_cell"

    def wants(self, ev: Evidence) -> Sequence[ProbeCall]:
        if self._long(ev):
            return [ProbeCall("kernel_state")]
        return []

    @staticmethod
    def _long(ev: Evidence) -> bool:
        return bool(
            ev.latest("cell_running")
            and not ev.latest("cell_is_lensbook")
            and float(ev.latest("cell_seconds", 0) or 0) >= LONG_CELL_SECONDS
        )

    def judge(self, ev: Evidence) -> Sequence[Finding]:
        state = ev.result("kernel_state")
        if not self._long(ev) or not isinstance(state, dict):
            return []
        cell = state.get("running_cell") or {}
        where = "; ".join(cell.get("where", [])[:3]) or "unknown"
        return [
            Finding(
                anomaly_type="long_running_cell",
                severity="info",
                context=f"execution count {state.get('execution_count')}",
                observation=(
                    f"cell [{cell.get('cell')}] has run for {cell.get('seconds', 0):.0f} s"
                    f"{' (at least)' if cell.get('seconds_is_lower_bound') else ''}; "
                    f"it is now at {where}"
                ),
                hypothesis="long work, or a cell waiting on I/O or a lock; the frames say which",
            )
        ]
