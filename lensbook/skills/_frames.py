"""Where code comes from: the user's, a library's, the standard library's, or lensbook's own.

Every skill that names a place in the program (an allocation site, a thread's creator, a hot
function, an exception site) blames the first frame in the *user's* code and keeps library
frames as detail, so one module decides what "user code" means:

- ``lensbook``: lensbook's own machinery, and tracemalloc (its frames are the tooling's);
- ``import``: the import system (module bodies being imported are attributed to import);
- ``stdlib``: files under the interpreter's standard library, and frozen modules;
- ``library``: files under a ``site-packages``/``dist-packages`` directory, or files of an
  installed distribution wherever its directory is on ``sys.path`` (the distribution's
  ``*.dist-info`` / ``*.egg-info`` metadata says which top-level names it installed);
- ``user``: everything else: notebook cells and ``<stdin>``, scripts, the user's own package
  (an editable install's source lives outside site-packages, so it counts as the user's), and
  lensbook's shipped scenarios, which play the user's program.

Paths are shortened the way an import would name them (relative to the ``sys.path`` entry,
the working directory or lensbook's root that holds them). Both answers are cached per file
name; `forget()` drops the caches (when ``sys.path`` or the installed set changes).
"""

from __future__ import annotations

import ast
import functools
import importlib.metadata
import linecache
import os
import sys
import sysconfig
import tracemalloc
import types
from collections.abc import Sequence

from lensbook.skills._heap import collections_off
from lensbook.skills._static import stored_attr

__all__ = [
    "Origin",
    "attribute",
    "back",
    "code_site",
    "exception_type_name",
    "first_user_frame",
    "forget",
    "function_at",
    "origin",
    "short_path",
    "type_module",
    "type_name",
    "type_names",
    "type_origin",
    "type_site",
    "where",
]

Origin = str  # "user" | "library" | "stdlib" | "import" | "lensbook"

_PACKAGE_DIR = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
_LENSBOOK_ROOT = os.path.dirname(_PACKAGE_DIR)
# induced faults live inside the package but stand for the user's code
_SCENARIOS_DIR = os.path.join(_PACKAGE_DIR, "scenarios") + os.sep
_STDLIB_DIRS = tuple(
    sorted(
        {
            os.path.realpath(p) + os.sep
            for p in (
                sysconfig.get_paths().get("stdlib"),
                sysconfig.get_paths(vars={"base": sys.base_prefix}).get("stdlib"),
                os.path.dirname(os.__file__),
            )
            if p
        }
    )
)
_TRACEMALLOC_FILE = os.path.realpath(tracemalloc.__file__ or "tracemalloc.py")
_SITE_MARKERS = (f"{os.sep}site-packages{os.sep}", f"{os.sep}dist-packages{os.sep}")


@functools.lru_cache(maxsize=256)
def _installed_top_levels(entry: str) -> frozenset[str]:
    """Top-level module names installed by the distributions found in one sys.path entry."""
    names: set[str] = set()
    try:
        dists = list(importlib.metadata.distributions(path=[entry]))
    except (OSError, ValueError):
        return frozenset()
    for dist in dists:
        top = dist.read_text("top_level.txt")
        if top:
            names.update(line.strip() for line in top.splitlines() if line.strip())
            continue
        for file in dist.files or ():
            first = file.parts[0] if file.parts else ""
            if not first or first.endswith((".dist-info", ".egg-info", ".pth")) or first == "..":
                continue
            names.add(first[:-3] if first.endswith(".py") else first)
    return frozenset(names)


def _sys_path_roots() -> list[str]:
    roots = []
    for entry in sys.path:
        real = os.path.realpath(entry or os.getcwd())
        if os.path.isdir(real):
            roots.append(real + os.sep)
    return roots


@functools.lru_cache(maxsize=8192)
def origin(filename: str) -> Origin:
    """Where a code file belongs: "user", "library", "stdlib", "import" or "lensbook"."""
    if filename.startswith(("<frozen importlib", "<frozen zipimport")):
        return "import"
    if filename.startswith(("<frozen ", "<built-in")):
        return "stdlib"
    if filename.startswith("<"):
        return "user"  # <stdin>, <string>, notebook cells
    real = os.path.realpath(filename)
    if real == _TRACEMALLOC_FILE:
        return "lensbook"
    if real.startswith(_PACKAGE_DIR + os.sep):
        return "user" if real.startswith(_SCENARIOS_DIR) else "lensbook"
    if any(m in real for m in _SITE_MARKERS) or any(m in filename for m in _SITE_MARKERS):
        return "library"
    if real.startswith(_STDLIB_DIRS):
        return "stdlib"
    for root in _sys_path_roots():
        if real.startswith(root):
            top = real[len(root) :].split(os.sep, 1)[0]
            top = top[:-3] if top.endswith(".py") else top
            if top in _installed_top_levels(root):
                return "library"
    return "user"


@functools.lru_cache(maxsize=8192)
def short_path(filename: str) -> str:
    """The path as an import would name it: from site-packages or the stdlib on, else relative
    to the sys.path entry, working directory or lensbook root that holds it most closely."""
    if filename.startswith("<"):
        return filename
    real = os.path.realpath(filename)
    for marker in _SITE_MARKERS:
        if marker in real:
            return real.split(marker, 1)[1].replace(os.sep, "/")
    for base in _STDLIB_DIRS:
        if real.startswith(base):
            return real[len(base) :].replace(os.sep, "/")
    best = real
    for root in [*_sys_path_roots(), os.getcwd() + os.sep, _LENSBOOK_ROOT + os.sep]:
        if real.startswith(root) and len(real) - len(root) < len(best):
            best = real[len(root) :]
    if best == real:
        best = os.sep.join(real.split(os.sep)[-3:])
    return best.replace(os.sep, "/")


def where(filename: str, lineno: int) -> str:
    """``short/path.py:line``."""
    return f"{short_path(filename)}:{lineno}"


def code_site(code: types.CodeType) -> str:
    """``short/path.py:line`` where a function is defined."""
    return where(code.co_filename, code.co_firstlineno)


_QUALNAME = type.__dict__["__qualname__"].__get__
_MODULE = type.__dict__["__module__"].__get__
_NAME = type.__dict__["__name__"].__get__


def type_module(t: type) -> str | None:
    """The name of the module a class says it comes from (None if it names none), read by
    `type`'s own descriptor: no metaclass's code runs."""
    try:
        module = _MODULE(t)
    except AttributeError:
        return None
    return module if type(module) is str else None


def type_name(t: type) -> str:
    """``module.Qualname`` of a class (builtins bare), read by `type`'s own descriptors: no
    metaclass's code runs."""
    qualname: str = _QUALNAME(t)
    module = type_module(t)
    return qualname if module in (None, "builtins") else f"{module}.{qualname}"


def type_names(t: type) -> tuple[str, str, str]:
    """The names a class goes by: `type_name`, ``Qualname`` and ``Name``."""
    return type_name(t), _QUALNAME(t), _NAME(t)


def exception_type_name(tp: type[BaseException]) -> str:
    """An exception's type as a user reads it in a traceback: builtins and ``__main__`` bare,
    others ``module.Qualname``."""
    module, qualname = type_module(tp), _QUALNAME(tp)
    return qualname if module in (None, "builtins", "__main__") else f"{module}.{qualname}"


def type_origin(t: type) -> str:
    """Where a class comes from: `origin` of its module's file, or "builtin" for classes of
    the interpreter and of built-in modules (a module without a file that is not built in is
    the user's: a notebook's ``__main__``)."""
    name = type_module(t)
    module = sys.modules.get(name or "")
    if module is None or name == "builtins":
        return "builtin"
    filename = stored_attr(module, "__file__")
    if not filename:
        return "builtin" if name in sys.builtin_module_names else "user"
    return origin(str(filename))


def type_site(t: type) -> str | None:
    """file:line of a class statement (only for classes written in Python), found in its
    module's source by its qualified name: no metaclass's code runs."""
    module = sys.modules.get(type_module(t) or "")
    filename = stored_attr(module, "__file__") if module is not None else None
    if type(filename) is not str or filename.endswith((".pyc", ".so", ".pyd")):
        return None
    lines = linecache.getlines(filename)
    if not lines:
        return None
    qualname = _QUALNAME(t)
    line = next(
        (first for first, _, name in _scopes(filename, len(lines)) if name == qualname), None
    )
    return where(filename, line) if line else None


def forget() -> None:
    """Drop the cached answers (after sys.path or the installed distributions changed)."""
    origin.cache_clear()
    short_path.cache_clear()
    _scopes.cache_clear()
    _installed_top_levels.cache_clear()


def back(frame: types.FrameType) -> types.FrameType | None:
    """``frame.f_back``, made inside a section: the one way lensbook walks outwards along
    another thread's stack. A frame object made earlier does not make its callers' safe to
    read later: a generator's or a coroutine's keeps its object across suspensions, and
    resumed from a new caller (every step of an asyncio task) its ``f_back`` makes that
    caller's object then."""
    with collections_off():
        return frame.f_back


def first_user_frame(frame: types.FrameType | None, limit: int = 30) -> types.FrameType | None:
    """The innermost frame of the user's code on a stack (walking outwards), or None."""
    depth = 0
    while frame is not None and depth < limit:
        if origin(frame.f_code.co_filename) == "user":
            return frame
        frame = back(frame)
        depth += 1
    return None


def attribute(
    frames: Sequence[tuple[str, int]],
) -> tuple[tuple[str, int] | None, list[tuple[str, int]]]:
    """Blame for a stack given innermost first as (file, line): the first user frame, and the
    library/stdlib frames between it and the innermost frame (the detail: what the user's code
    called that did the work). Without a user frame, the innermost library frame (else the
    innermost frame) is blamed and there is no detail. Returns (None, []) when the stack is
    lensbook's own or an import's.
    """
    if not frames:
        return None, []
    first = origin(frames[0][0])
    if first in ("lensbook", "import"):
        return None, []
    detail: list[tuple[str, int]] = []
    for i, frame in enumerate(frames):
        if frame[0] == "<string>" and i + 1 < len(frames):
            continue  # code made by exec (dataclass, namedtuple methods): its caller's place
        kind = origin(frame[0])
        if kind == "lensbook":
            # lensbook called into the library (a probe): not the user's allocation
            return None, []
        if kind == "user":
            return frame, detail
        detail.append(frame)
    library = next((f for f in frames if origin(f[0]) == "library"), None)
    return library or frames[0], []


@functools.lru_cache(maxsize=256)
def _scopes(filename: str, size: int) -> tuple[tuple[int, int, str], ...]:
    """(first line, last line, qualified name) of every function and class in a file."""
    del size  # part of the cache key: a file edited in place is parsed again
    try:
        tree = ast.parse("".join(linecache.getlines(filename)))
    except (SyntaxError, ValueError, RecursionError, MemoryError):
        return ()
    found: list[tuple[int, int, str]] = []

    def visit(node: ast.AST, prefix: str) -> None:
        for child in ast.iter_child_nodes(node):
            if isinstance(child, (ast.FunctionDef, ast.AsyncFunctionDef, ast.ClassDef)):
                name = f"{prefix}{child.name}"
                found.append((child.lineno, child.end_lineno or child.lineno, name))
                inner = "<locals>." if not isinstance(child, ast.ClassDef) else ""
                visit(child, f"{name}.{inner}")
            else:
                visit(child, prefix)

    visit(tree, "")
    return tuple(found)


def function_at(filename: str, lineno: int) -> str | None:
    """The qualified name of the innermost function (or class body) holding a line of a file,
    from its source (parsed once per file); None at module level or without source."""
    lines = linecache.getlines(filename)
    if not lines:
        return None
    best: tuple[int, int, str] | None = None
    for scope in _scopes(filename, len(lines)):
        if scope[0] <= lineno <= scope[1] and (best is None or scope[0] >= best[0]):
            best = scope
    return best[2] if best is not None else None
