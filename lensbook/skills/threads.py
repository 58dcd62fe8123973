"""The `threads` skill: every thread, what it is doing, who is blocked on which lock, who spins.

The skill reads `sys._current_frames()` (a few microseconds) and psutil's per-thread CPU times
(matched to Python threads by `native_id`). Naming the lock a thread waits for, and the thread
holding it, needs the source: the instruction a blocked frame is on (`f_lasti`, with its source
position where Python has them) points at the ``with lock_b:`` statement or the
``lock_b.acquire()`` call, and the name in that expression (``lock_b``, ``self._lock``) is
resolved in the frame's own namespace. A frame holds a lock when its current line is inside the
body of a ``with`` on that lock, or after a bare ``acquire()`` with no ``release()`` yet. An
RLock (the C one or the pure-Python one) also records its owner, which names the holder even
when the function that took it has returned; a plain Lock records none, so a lock taken in a
returned function has no holder we can name, and a wait on it is judged by its length (the
same acquisition seen again with no progress). A deadlock is a cycle in "thread waits for a
lock held by thread".
Expressions are only looked up (names, attributes without properties), never evaluated.
"""

from __future__ import annotations

import ast
import dis
import gc
import inspect
import linecache
import os
import re
import threading
import time
import types
import weakref
from collections import Counter, OrderedDict, deque
from collections.abc import Callable, Iterable, Iterator, Sequence
from dataclasses import dataclass, field
from typing import Any, ClassVar

import psutil

from lensbook.skills import _heap
from lensbook.skills._frames import (
    back,
    first_user_frame,
    origin,
    short_path,
    type_names,
    type_site,
)
from lensbook.skills._stacks import (
    current_frames,
    describe_frame,
    format_stack,
    frame_locals,
    source_line,
)
from lensbook.skills._stacks import frames_of as _frames_of
from lensbook.skills._stacks import qualname as _qualname
from lensbook.skills._static import is_own_dict, stored_attr, stored_attrs
from lensbook.skills.base import Skill, probe
from lensbook.skills.history_rules import PastThreadDeaths, ThreadGrowthByKind
from lensbook.skills.redact import clip, redact_text
from lensbook.skills.rules import Chain, CountGrowth, Evidence, Finding, ProbeCall, Rule
from lensbook.skills.untrusted import ProcessText, from_process
from lensbook.types import Severity

__all__ = [
    "ThreadsSkill",
    "code_origin",
    "current_node",
    "resolve_expr",
]


_MAX_DEPTH = 64  # frames walked per thread when looking for held locks
_LOCK_TYPE = type(threading.Lock())
_RLOCK_TYPE = type(threading.RLock())  # _thread.RLock, written in C
#: the pure-Python RLock (threading._RLock: where there is no C one, or chosen on purpose)
_PY_RLOCK_TYPE: type = threading._RLock
_RLOCK_TYPES: tuple[type, ...] = (_RLOCK_TYPE, _PY_RLOCK_TYPE)
_LOCK_TYPES: tuple[type, ...] = (_LOCK_TYPE, *_RLOCK_TYPES)
_UNSET = object()
# The C RLock's owner and count are only shown by its repr. The C slot is called directly, so a
# subclass's own __repr__ never runs; the pattern is anchored at the end, which the C code
# formats, so a class name that mimics "owner=" cannot stand in for the real fields.
_C_RLOCK_REPR: Callable[[Any], str] = _RLOCK_TYPE.__repr__
_RLOCK_REPR = re.compile(r"<(locked|unlocked) .* owner=(\d+) count=(\d+) at 0x[0-9a-fA-F]+>\Z")
_CACHE = dis.opmap.get("CACHE", -1)  # (3.11+: an instruction's inline cache entries)
_WITH_OPS = frozenset({"BEFORE_WITH", "SETUP_WITH", "BEFORE_ASYNC_WITH", "SETUP_ASYNC_WITH"})
# 3.11's specialised PRECALL runs some C calls itself, so a frame waits on either
_CALL_OPS = ("CALL", "PRECALL")
#: names of calls that block by design (sleeping, waiting on I/O, a queue, a condition)
_WAIT_CALLS = frozenset(
    {
        "sleep",
        "select",
        "poll",
        "epoll",
        "kqueue",
        "wait",
        "wait_for",
        "get",
        "join",
        "recv",
        "recvfrom",
        "recv_into",
        "write",  # blocks on a full pipe or socket, a stalled disk or network file system
        "flush",
        "accept",
        "read",
        "readline",
        "readinto",
        "connect",
        "result",
        "communicate",
        "waitpid",
        "sigwait",
        "input",
        "_wait_for_tstate_lock",
        "acquire",
        "put",
        "send",
        "sendall",
        "getaddrinfo",
        "urlopen",
        "request",
    }
)
_ACQUIRE_NAMES = frozenset({"acquire", "__enter__"})
_REASON_LOCKS = re.compile(r"hang|hung|deadlock|stuck|freez|frozen|lock|block|wait|respond", re.I)
_REASON_CPU = re.compile(r"cpu|spin|hot|busy|load|slow|fan|core|100 ?%|burn", re.I)

# -- where code comes from: lensbook.skills._frames decides ---------------------------

code_origin = origin


_first_user_frame = first_user_frame


# -- reading the source behind a frame ------------------------------------------------------


@dataclass(frozen=True)
class _Guard:
    """A stretch of a function's lines during which it holds the lock named by `expr`."""

    expr: ast.expr
    text: str
    kind: str  # "with" or "acquire"
    at: int  # the line that took the lock
    start: int
    end: int


@dataclass
class _SourceIndex:
    lines: list[str]
    by_pos: dict[tuple[int, int, int, int], ast.AST] = field(default_factory=dict)
    by_line: dict[int, list[ast.AST]] = field(default_factory=dict)
    guards: dict[tuple[str, int], list[_Guard]] = field(default_factory=dict)


_source_cache: OrderedDict[str, _SourceIndex | None] = OrderedDict()
_source_lock = threading.Lock()
_positions: weakref.WeakKeyDictionary[types.CodeType, list[Any]] = weakref.WeakKeyDictionary()
_SCOPES = (ast.FunctionDef, ast.AsyncFunctionDef, ast.ClassDef, ast.Lambda)


def _is_ref(expr: ast.expr) -> bool:
    """A name, with attributes and subscripts on it (``self.locks[(i + 1) % n]``): what may be
    looked up without running code (`resolve_expr` decides at lookup time)."""
    while isinstance(expr, (ast.Attribute, ast.Subscript)):
        expr = expr.value
    return isinstance(expr, ast.Name)


def _scope_keys(node: ast.AST) -> list[tuple[str, int]]:
    if isinstance(node, ast.Module):
        return [("<module>", 0)]
    if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef, ast.ClassDef)):
        keys = [(node.name, node.lineno)]
        if node.decorator_list:
            keys.append((node.name, node.decorator_list[0].lineno))
        return keys
    return []


def _scope_body(scope: ast.AST) -> Iterator[ast.AST]:
    """Nodes of a scope, not descending into nested functions or classes."""
    todo = list(ast.iter_child_nodes(scope))
    while todo:
        node = todo.pop()
        yield node
        if not isinstance(node, _SCOPES):
            todo.extend(ast.iter_child_nodes(node))


def _guards_of(scope: ast.AST) -> list[_Guard]:
    guards: list[_Guard] = []
    releases: dict[str, list[int]] = {}
    acquires: list[tuple[ast.expr, str, int]] = []
    end_of_scope = getattr(scope, "end_lineno", None) or 10**9
    for node in _scope_body(scope):
        if isinstance(node, (ast.With, ast.AsyncWith)) and node.body:
            start, end = node.body[0].lineno, node.body[-1].end_lineno or node.body[-1].lineno
            for item in node.items:
                # calls too (``with pool.lock_for(key):``): resolved by reference at lookup
                if _is_ref(item.context_expr) or isinstance(item.context_expr, ast.Call):
                    text = ast.unparse(item.context_expr)
                    guards.append(_Guard(item.context_expr, text, "with", node.lineno, start, end))
        elif (
            isinstance(node, ast.Call)
            and isinstance(node.func, ast.Attribute)
            and _is_ref(node.func.value)
        ):
            text = ast.unparse(node.func.value)
            if node.func.attr == "acquire":
                acquires.append((node.func.value, text, node.end_lineno or node.lineno))
            elif node.func.attr == "release":
                releases.setdefault(text, []).append(node.lineno)
    for expr, text, line in acquires:
        after = [r for r in releases.get(text, ()) if r > line]
        end = min(after) - 1 if after else end_of_scope
        if end > line:
            guards.append(_Guard(expr, text, "acquire", line, line + 1, end))
    return guards


def _build_index(lines: list[str]) -> _SourceIndex | None:
    try:
        tree = ast.parse("".join(lines))
    except (SyntaxError, ValueError, RecursionError):
        return None
    index = _SourceIndex(lines=lines)
    for node in ast.walk(tree):
        if isinstance(node, (ast.With, ast.AsyncWith, ast.Call, ast.Await)):
            key = (node.lineno, node.end_lineno or 0, node.col_offset, node.end_col_offset or 0)
            index.by_pos.setdefault(key, node)
            index.by_line.setdefault(node.lineno, []).append(node)
        if isinstance(node, (ast.Module, ast.FunctionDef, ast.AsyncFunctionDef, ast.ClassDef)):
            guards = _guards_of(node)
            for scope_key in _scope_keys(node):
                index.guards[scope_key] = guards
    return index


def _source_index(filename: str, module_globals: dict[str, Any] | None) -> _SourceIndex | None:
    """The parsed source of a file, cached while linecache keeps the same lines."""
    lines = linecache.getlines(filename, module_globals)
    if not lines:
        return None
    with _source_lock:
        cached = _source_cache.get(filename)
        if cached is not None and cached.lines is lines:
            _source_cache.move_to_end(filename)
            return cached
    index = _build_index(lines)
    with _source_lock:
        _source_cache[filename] = index
        _source_cache.move_to_end(filename)
        while len(_source_cache) > 64:
            _source_cache.popitem(last=False)
    return index


def _position(code: types.CodeType, lasti: int) -> tuple[int, int, int, int] | None:
    """The source span (line, end line, column, end column) of the instruction at `lasti`."""
    co_positions = getattr(code, "co_positions", None)
    if co_positions is None or lasti < 0:
        return None
    try:
        table = _positions.get(code)
        if table is None:
            table = list(co_positions())
            _positions[code] = table
        pos = table[lasti // 2]
    except (IndexError, TypeError):
        return None
    if any(p is None for p in pos):
        return None
    return (pos[0], pos[1], pos[2], pos[3])


def _opname(code: types.CodeType, lasti: int) -> str:
    """The instruction at `lasti`. A frame that called Python code (a Python-level
    ``acquire``, such as the pure-Python RLock's) stands on its call's inline cache entries on
    3.11 and later: the instruction is the one those entries follow."""
    raw = code.co_code
    while 2 <= lasti < len(raw) and raw[lasti] == _CACHE:
        lasti -= 2
    return dis.opname[raw[lasti]] if 0 <= lasti < len(raw) else ""


def current_node(frame: types.FrameType) -> ast.AST | None:
    """The ``with``, call or ``await`` a frame is executing, from its source (None if unknown)."""
    code = frame.f_code
    index = _source_index(code.co_filename, frame.f_globals)
    if index is None:
        return None
    pos = _position(code, frame.f_lasti)
    if pos is not None:
        node = index.by_pos.get(pos)
        if node is not None:
            return node
    # no column information (Python 3.10, -X no_debug_ranges): match the line
    op = _opname(code, frame.f_lasti)
    candidates = index.by_line.get(frame.f_lineno, [])
    if op in _WITH_OPS:
        kinds: tuple[type, ...] = (ast.With, ast.AsyncWith)
    elif op.startswith(("YIELD", "SEND", "GET_AWAITABLE")):
        kinds = (ast.Await,)
    else:
        kinds = (ast.Call,)
    matching = [n for n in candidates if isinstance(n, kinds)]
    # nodes are indexed outermost first, and the outermost call on a line is the one still in
    # progress once its arguments' calls have returned
    return matching[0] if matching else None


def resolve_expr(expr: ast.expr, frame: types.FrameType) -> Any:
    """Look up a name or attribute chain in a frame without running any code.

    Raises `LookupError` for anything that would need evaluation (calls, subscripts,
    properties and other computed attributes).
    """
    if isinstance(expr, ast.Name):
        for namespace in (frame_locals(frame), frame.f_globals, frame.f_builtins):
            if expr.id in namespace:
                return namespace[expr.id]
        raise LookupError(expr.id)
    if isinstance(expr, ast.Attribute):
        base = resolve_expr(expr.value, frame)
        if not issubclass(type(base), type):
            # an instance's (or a module's) attribute as stored; a property or method (which
            # would run code) is not read (nor is its __dict__: see `lensbook.skills._static`)
            value = stored_attr(base, expr.attr, _UNSET)
            if value is _UNSET:
                raise LookupError(expr.attr)
            return value
        try:
            value = inspect.getattr_static(base, expr.attr)
        except AttributeError:
            raise LookupError(expr.attr) from None
        if hasattr(type(value), "__get__"):
            raise LookupError(expr.attr)  # a property or method: would run code
        return value
    if isinstance(expr, ast.Subscript):
        base = resolve_expr(expr.value, frame)
        key = _index_value(expr.slice, frame)
        # only the built-in containers: a subclass's __getitem__ (or a key's __hash__/__eq__)
        # would be user code; ints and strs hash and compare in C
        try:
            if type(base) in (list, tuple) and type(key) is int:
                return base[key]
            if type(base) is dict and type(key) in (int, str):
                return base[key]
        except (IndexError, KeyError):
            raise LookupError(ast.unparse(expr)) from None
        raise LookupError(ast.unparse(expr))
    raise LookupError(type(expr).__name__)


def _lock_label(expr: ast.expr, frame: types.FrameType) -> ProcessText:
    """The expression's text, with the concrete element when it has a computed subscript:
    ``locks[(i + 1) % 3] (locks[0])``; the program's text, marked as such."""
    text = ast.unparse(expr)
    try:
        concrete = _concrete(expr, frame)
    except LookupError:
        return from_process(text)
    return from_process(text if concrete == text else f"{text} ({concrete})")


def _concrete(expr: ast.expr, frame: types.FrameType) -> str:
    if isinstance(expr, ast.Subscript):
        # a position in a list or tuple tells which of its locks; a dict's key is the
        # program's data (a user name, a token), a value never sent without the opt-in
        if type(resolve_expr(expr.value, frame)) not in (list, tuple):
            raise LookupError(ast.unparse(expr))
        return f"{_concrete(expr.value, frame)}[{_index_value(expr.slice, frame)!r}]"
    if isinstance(expr, ast.Attribute):
        return f"{_concrete(expr.value, frame)}.{expr.attr}"
    return ast.unparse(expr)


_ARITHMETIC: dict[type, Callable[[int, int], int]] = {
    ast.Add: lambda a, b: a + b,
    ast.Sub: lambda a, b: a - b,
    ast.Mult: lambda a, b: a * b,
    ast.Mod: lambda a, b: a % b,
    ast.FloorDiv: lambda a, b: a // b,
}


def _index_value(expr: ast.expr, frame: types.FrameType) -> Any:
    """The value of a subscript's index: a constant, a looked-up int or str, ``len()`` of a
    built-in container, or integer arithmetic on those (``(i + 1) % len(locks)``). Anything
    else raises `LookupError`."""
    if isinstance(expr, ast.Constant) and type(expr.value) in (int, str):
        return expr.value
    if isinstance(expr, (ast.Name, ast.Attribute, ast.Subscript)):
        value = resolve_expr(expr, frame)
        if type(value) in (int, str):
            return value
        raise LookupError(ast.unparse(expr))
    if (
        isinstance(expr, ast.Call)
        and isinstance(expr.func, ast.Name)
        and len(expr.args) == 1
        and not expr.keywords
        and resolve_expr(expr.func, frame) is len
    ):
        # len() of a built-in container runs no user code (a subclass's __len__ would)
        sized = resolve_expr(expr.args[0], frame) if _is_ref(expr.args[0]) else None
        if type(sized) in (list, tuple, dict, str, set, frozenset):
            return len(sized)
    if isinstance(expr, ast.UnaryOp) and isinstance(expr.op, ast.USub):
        value = _index_value(expr.operand, frame)
        if type(value) is int:
            return -value
    if isinstance(expr, ast.BinOp) and type(expr.op) in _ARITHMETIC:
        left, right = _index_value(expr.left, frame), _index_value(expr.right, frame)
        if type(left) is int and type(right) is int and max(abs(left), abs(right)) < 2**32:
            try:
                return _ARITHMETIC[type(expr.op)](left, right)
            except ZeroDivisionError:
                raise LookupError(ast.unparse(expr)) from None
    raise LookupError(ast.unparse(expr))


def _reachable_locks(frame: types.FrameType, depth: int = 2, limit: int = 2000) -> list[Any]:
    """Locks reachable from a frame's locals and the globals its code names, following
    references (`gc.get_referents`, which runs no Python code) `depth` hops deep.

    The fallback when the expression that takes a lock cannot be looked up (a lock returned
    by a call, ``with pool.lock_for(key):``): the lock being taken is among these.
    """
    found: dict[int, Any] = {}
    seen: set[int] = set()
    layer: list[Any] = list(frame_locals(frame).values())
    namespace = frame.f_globals
    layer += [namespace[n] for n in frame.f_code.co_names if n in namespace]
    for _ in range(depth + 1):
        nxt: list[Any] = []
        for obj in layer:
            if id(obj) in seen or issubclass(
                type(obj), (type, types.ModuleType, types.FrameType)
            ):  # (by the type itself: isinstance may read a computed __class__)
                continue
            seen.add(id(obj))
            lock = _as_lock(obj)
            if lock is not None:
                found[id(lock)] = lock
                continue
            if len(seen) < limit:
                nxt.extend(gc.get_referents(obj))
        layer = nxt
    return list(found.values())


# -- what a thread is doing -----------------------------------------------------------------


@dataclass
class _Activity:
    """What a thread's innermost frame is doing."""

    state: str  # "blocked_on_lock", "waiting", "running"
    frame: types.FrameType
    call: str = ""  # the call or with-expression in progress, as source text
    lock: Any = None
    lock_name: str = ""


def _lock_state(lock: Any) -> tuple[bool | None, int | None]:
    """(locked?, owner thread ident if the lock says) for a Lock or RLock.

    An RLock records its owner whichever function took it, even one that has returned; a
    plain Lock records none. Read without running the program's code: the C RLock through its
    C repr (see `_C_RLOCK_REPR`), the Python one through its stored ``_owner``.
    """
    # (by the type itself: isinstance would read a __class__ the object may compute)
    kind = type(lock)
    if kind is _LOCK_TYPE:  # (_thread.lock cannot be subclassed: locked() is its C method)
        return lock.locked(), None
    if issubclass(kind, _PY_RLOCK_TYPE):
        owner = stored_attr(lock, "_owner")
        if type(owner) is int:
            return True, owner
        block = stored_attr(lock, "_block")  # (locked, owner not yet set: being taken)
        return (block.locked() if type(block) is _LOCK_TYPE else None), None
    if issubclass(kind, _RLOCK_TYPE):
        match = _RLOCK_REPR.match(_C_RLOCK_REPR(lock))
        if match:
            locked = match.group(1) == "locked"
            return locked, int(match.group(2)) if locked else None
    return None, None


def _as_lock(obj: Any) -> Any:
    """The lock behind `obj`: itself, or the lock a Condition wraps (None for anything else)."""
    # (by the type itself: isinstance would read a __class__ the object may compute)
    if issubclass(type(obj), _LOCK_TYPES):
        return obj
    if issubclass(type(obj), threading.Condition):
        inner = stored_attr(obj, "_lock")
        return inner if issubclass(type(inner), _LOCK_TYPES) else None
    return None


def _wraps(outer: Any, lock: Any) -> bool:
    """Whether taking `outer` is taking `lock`: the same lock, or a Python RLock whose inner
    lock it is (the one its ``acquire`` blocks on)."""
    if outer is lock:
        return True
    return issubclass(type(outer), _PY_RLOCK_TYPE) and stored_attr(outer, "_block") is lock


def _lock_type_name(lock: Any) -> str:
    if lock is None:
        return "unknown (the expression that takes it could not be looked up)"
    return "RLock" if issubclass(type(lock), _RLOCK_TYPES) else "Lock"


def _waiting(frame: types.FrameType, call: str) -> _Activity:
    """A thread parked in a blocking call, told where the program (not the stdlib) waits."""
    if code_origin(frame.f_code.co_filename) == "stdlib":
        outer = back(frame)
        while outer is not None and code_origin(outer.f_code.co_filename) == "stdlib":
            outer = back(outer)
        if outer is not None:
            node = current_node(outer)
            if isinstance(node, ast.Call):
                call = _short_text(ast.unparse(node))
            return _Activity("waiting", outer, call=call or _qualname(frame.f_code))
    return _Activity("waiting", frame, call=call)


def _activity(frame: types.FrameType, cheap: bool = False, thread: int | None = None) -> _Activity:
    """What a thread is doing; never raises (a frame it cannot read counts as running).
    `thread` is the frame's thread ident, where known: an RLock it owns is not one it waits for.
    """
    try:
        return _classify(frame, cheap, thread)
    except Exception:  # exotic objects, unreadable source: a probe must still answer
        return _Activity("running", frame)


def _classify(frame: types.FrameType, cheap: bool = False, thread: int | None = None) -> _Activity:
    """Classify a thread by its innermost Python frame.

    With `cheap`, the source is read only when the frame may be taking a lock (a ``with``, or
    a call in code that names ``acquire``); other calls count as waiting when the code names a
    blocking call, and the call's text is left out.
    """
    code = frame.f_code
    op = _opname(code, frame.f_lasti)
    origin = code_origin(code.co_filename)
    if origin == "stdlib" and code.co_name in ("wait", "_wait_for_tstate_lock"):
        # Condition.wait / Thread.join park on a private lock: waiting, not lock contention
        return _Activity("waiting", frame) if cheap else _waiting(frame, _qualname(code))
    if cheap and op not in _WITH_OPS and _ACQUIRE_NAMES.isdisjoint(code.co_names):
        waits = op.startswith(_CALL_OPS) and not _WAIT_CALLS.isdisjoint(code.co_names)
        return _Activity("waiting" if waits else "running", frame)
    node = current_node(frame) if (op in _WITH_OPS or op.startswith(_CALL_OPS)) else None
    target: ast.expr | None = None
    call = call_name = ""
    if isinstance(node, (ast.With, ast.AsyncWith)):
        items = [i.context_expr for i in node.items]
        # with several items the one being entered is the first not yet held; the last
        # locked one is the best guess without the value stack
        target = items[0]
        for item in items:
            try:
                obj = resolve_expr(item, frame)
            except LookupError:
                continue
            lock = _as_lock(obj)
            if lock is not None and _lock_state(lock)[0]:
                target = item
        call = f"with {ast.unparse(target)}"
    elif isinstance(node, ast.Call):
        func = node.func
        name = func.attr if isinstance(func, ast.Attribute) else getattr(func, "id", "")
        call = _short_text(ast.unparse(node))
        call_name = name
        if isinstance(func, ast.Attribute) and name in ("acquire", "__enter__"):
            target = func.value
        elif name in _WAIT_CALLS:
            return _waiting(frame, call)
    if target is not None:
        try:
            obj = resolve_expr(target, frame)
        except LookupError:
            # a lock returned by a call, or an expression we may not evaluate: the lock taken
            # is one the frame can reach; if exactly one of those is locked and not held by
            # this very thread, that is the one it waits for
            obj = None if cheap else _only_locked_candidate(frame, thread)
        lock = _as_lock(obj)
        if lock is not None:
            name = _lock_label(target, frame)
            caller = back(frame)
            if origin == "stdlib" and caller is not None:
                # inside Condition.__enter__ and the like: name the lock as the caller does
                # (a Python RLock blocks on its inner lock: the caller's RLock is the one taken)
                outer = _activity(caller, thread=thread)
                if outer.lock is not None and _wraps(outer.lock, lock):
                    lock = outer.lock
                    name, frame, call = outer.lock_name or name, caller, outer.call or call
            return _Activity("blocked_on_lock", frame, call=call, lock=lock, lock_name=name)
        if obj is not None and call.startswith("with "):
            return _Activity("running", frame, call=call)
        if obj is None and (op in _WITH_OPS or call_name in _ACQUIRE_NAMES):
            # the innermost Python frame is entering a with (or calling acquire) and no deeper
            # Python frame runs: a C-level acquisition of a lock we could not look up
            return _Activity(
                "blocked_on_lock",
                frame,
                call=call,
                lock=None,
                lock_name=from_process(ast.unparse(target)),
            )
        return _waiting(frame, call)
    return _Activity("running", frame, call=call)


def _only_locked_candidate(frame: types.FrameType, thread: int | None = None) -> Any:
    mine = {id(lock) for lock, *_ in _held_locks(_frames_of(frame), thread=thread)}
    locked = [
        lock
        for lock in _reachable_locks(frame)
        if id(lock) not in mine and _locked_by_other(lock, thread)
    ]
    return locked[0] if len(locked) == 1 else None


def _locked_by_other(lock: Any, thread: int | None) -> bool:
    """Whether `lock` is locked and may be held by a thread other than `thread`: not an RLock
    whose recorded owner is `thread` itself (taken in a function that has returned, say)."""
    locked, owner = _lock_state(lock)
    return bool(locked) and (thread is None or owner != thread)


def _held_by_thread(lock: Any, thread: int | None, unknown: bool = False) -> bool:
    """Whether `lock` is locked and, if it records an owner and `thread` is known, owned by
    `thread`; a lock whose state cannot be read counts as `unknown`."""
    locked, owner = _lock_state(lock)
    if locked is None:
        return unknown
    return locked and (thread is None or owner is None or owner == thread)


def _short_text(text: str, limit: int = 100) -> str:
    return clip(" ".join(text.split()), limit)


def _held_locks(
    frames: Sequence[types.FrameType],
    skip: Any = None,
    wanted: dict[int, Any] | None = None,
    thread: int | None = None,
) -> list[tuple[Any, str, str, types.FrameType]]:
    """Locks the frames of one thread hold: (lock, name in the frame, how/where, frame).

    A guard whose expression cannot be looked up (a call) holds the one lock of `wanted` (locks
    other threads wait for) that the frame can reach and that is locked, if there is one. With
    `thread` (the frames' thread ident), an RLock that records another owner is not held,
    whatever the source says (it was released in another function, and taken again elsewhere).
    """
    held: list[tuple[Any, str, str, types.FrameType]] = []
    seen: set[int] = set()
    for frame in frames:
        code = frame.f_code
        index = _source_index(code.co_filename, frame.f_globals)
        if index is None:
            continue
        key = ("<module>", 0) if code.co_name == "<module>" else (code.co_name, code.co_firstlineno)
        for guard in index.guards.get(key, ()):
            if not guard.start <= frame.f_lineno <= guard.end:
                continue
            try:
                obj = _as_lock(resolve_expr(guard.expr, frame))
            except LookupError:
                if not wanted:
                    continue
                reach = [
                    lock
                    for lock in _reachable_locks(frame)
                    if id(lock) in wanted and lock is not skip and _held_by_thread(lock, thread)
                ]
                if len(reach) != 1:
                    continue
                obj = reach[0]
            except Exception:  # an object that resists static lookup
                continue
            if obj is None or obj is skip or id(obj) in seen:
                continue
            if not _held_by_thread(obj, thread, unknown=True):
                continue
            seen.add(id(obj))
            how = f"{guard.kind} at {short_path(code.co_filename)}:{guard.at}"
            held.append((obj, _lock_label(guard.expr, frame), how, frame))
    return held


def _thread_cpu(process: psutil.Process) -> dict[int, float]:
    """CPU seconds (user + system) by native thread id; empty where psutil cannot tell."""
    try:
        return {t.id: t.user_time + t.system_time for t in process.threads()}
    except (psutil.Error, OSError, NotImplementedError):
        return {}


def _thread_demand() -> dict[int, float]:
    """Seconds each thread spent on a CPU or waiting in the run queue for one, by native id
    (Linux schedstat; empty elsewhere). Unlike CPU time, it stays near the wall time for a
    thread that never blocks even when the machine is too busy to give it a whole core."""
    found: dict[int, float] = {}
    try:
        tids = os.listdir("/proc/self/task")
    except OSError:
        return found
    for tid in tids:
        try:
            with open(f"/proc/self/task/{tid}/schedstat", "rb") as f:
                run_ns, wait_ns, _ = f.read().split(maxsplit=2)
            found[int(tid)] = (int(run_ns) + int(wait_ns)) / 1e9
        except (OSError, ValueError):
            continue
    return found


def _target_of(thread: threading.Thread | None) -> str | None:
    """The function a thread was started to run, with where it is defined and whose code it
    is ("user", "library", ...); read from the Thread's own attributes, no code runs."""
    target = stored_attr(thread, "_target") if thread is not None else None
    if type(target) is types.MethodType:
        target = target.__func__
    code = target.__code__ if type(target) is types.FunctionType else None
    if not isinstance(code, types.CodeType):
        return None
    return (
        f"{_qualname(code)} ({short_path(code.co_filename)}:{code.co_firstlineno}, "
        f"{origin(code.co_filename)} code)"
    )


def _started_by(thread: threading.Thread | None) -> dict[str, Any]:
    """Who started a thread, as the flight recorder saw it, as the fields of a probe's entry
    (none when the recorder knows nothing of it).

    ``started_by`` says it in words: the user's function and the file:line of its call, with
    the library frame that did the starting as detail ("handle_request at app.py:41"; a
    ``via concurrent/futures/thread.py:...`` is the stdlib's and left out, a library's is
    kept), or for a thread already alive when the recorder started "started before lensbook
    loaded; runs fn at file:line (was at file:line in fn then)". ``start_seen`` says which of
    the two it is, from the recorder's own ``since`` field, so rules never read it off the
    text (a user function may well be called ``started``)."""
    if thread is None:
        return {}
    from lensbook.recorder.api import recorder  # imported here: the recorder imports this module

    found = recorder.threads.creator(thread) if recorder.recording else None
    if not found:
        return {}
    if found.get("since"):
        # alive when the recorder's hooks went in: what it runs, and where it was then
        runs = f"; runs {found['target']} at {found['defined_at']}" if found["target"] else ""
        seen = f" (was at {found['seen_at']} then)" if found["seen_at"] else ""
        return {"started_by": f"started {found['since']}{runs}{seen}", "start_seen": False}
    via = f" via {found['via']}" if found.get("via") else ""
    # a comprehension runs as a function of its own: name the function it is written in
    function = _COMPREHENSION.sub("", str(found["function"]))
    return {"started_by": f"{function} at {found['started_from']}{via}", "start_seen": True}


_COMPREHENSION = re.compile(r"\.<locals>\.<(listcomp|dictcomp|setcomp|genexpr)>$")


def _thread_names() -> dict[int, threading.Thread]:
    return {t.ident: t for t in threading.enumerate() if t.ident is not None}


def _name_of(ident: int, threads: dict[int, threading.Thread]) -> str | ProcessText:
    thread = threads.get(ident)
    return from_process(thread.name) if thread is not None else f"<non-Python thread {ident}>"


def _is_lensbook_thread(name: str) -> bool:
    return name.startswith("lensbook")


def _pool_of(thread: threading.Thread) -> Any:
    """The executor a `concurrent.futures` worker thread serves (it keeps a weakref to it)."""
    args = stored_attr(thread, "_args")
    if type(args) is not tuple or not args or type(args[0]) is not weakref.ref:
        return None
    return args[0]()


def _held_by(obj: Any) -> str | None:
    """One referrer of `obj`, named as its user would: ``attribute 'pool' of ReportHandler
    (file:line of the class)`` or ``global 'pool' of module m``; None for anything else."""

    for ref in _heap.referrers([obj]):
        if type(ref) is dict:  # (a subclass's methods are the program's code: not read)
            name = next((k for k, v in dict.items(ref) if v is obj), None)
            if name is None:
                continue
            module = dict.get(ref, "__name__")
            if dict.get(ref, "__builtins__") is not None and type(module) is str:
                return f"global {name!r} of module {module}"
            owners = [o for o in _heap.referrers([ref]) if is_own_dict(o, ref)]
        else:
            # an instance whose attributes live inline (no dict object until one is asked for)
            attrs = stored_attrs(ref)  # (None for a container, a frame, a class)
            name = next((k for k, v in attrs.items() if v is obj), None) if attrs else None
            owners = [ref] if name is not None else []
        for owner in owners:
            site = type_site(type(owner))
            where = f" ({site})" if site else ""
            return f"attribute {name!r} of {type_names(type(owner))[1]} instances{where}"
    return None


# -- the skill ------------------------------------------------------------------------------


class ThreadsSkill(Skill):
    id = "threads"
    title = "Threads"
    description = (
        "Threads, their stacks and CPU, blocked lock waits, deadlocks and spinning threads"
    )
    system_prompt = (
        "You are the threads operator of a live Python process. You see every thread: its name, "
        "whether it is a daemon, its CPU time and what its innermost frame is doing (running, "
        "waiting in a blocking call, or blocked acquiring a lock). Look for deadlocks (threads "
        "waiting in a cycle for locks the others hold: name every thread and lock of the "
        "cycle and where each lock was taken), for threads blocked a long time behind a lock "
        "holder, and for threads burning a core (sample them to find the hot function; a busy "
        "loop that polls instead of waiting is a classic). A thread idle in a queue get, an "
        "Event or Condition wait, a select or a sleep is normal, not a fault. lensbook's own "
        "threads are named lensbook-*."
    )
    # what the coordinator and the watcher know of it (see `Skill`)
    keywords = ("thread", "deadlock", "lock", "hang", "stuck", "freez", "cpu", "spin")
    families: ClassVar[dict[str, tuple[str, ...]]] = {
        "CPU saturation": ("cpu_spin", "cpu_hot_thread"),
        "lock contention": ("deadlock", "lock_contention", "lock_wait_stalled"),
    }
    investigates = ("CPU saturation", "lock contention")
    chains = (
        Chain(
            ("CPU saturation", "event-loop lag"),
            "CPU-bound work holds the GIL (or the loop's own thread), so the loop's callbacks "
            "run late",
        ),
        Chain(
            ("lock contention", "event-loop lag"),
            "a coroutine waiting on a blocked thread or lock stops making progress",
        ),
    )
    unwatched = frozenset({"cpu_window_s"})
    watched = True

    def __init__(self) -> None:
        self._process = psutil.Process()
        self._lock = threading.Lock()
        # (monotonic time, process CPU seconds): windows for the CPU rate between snapshots
        self._marks: deque[tuple[float, float]] = deque(maxlen=16)
        # thread ident -> (id of its innermost frame, instruction, monotonic time first seen
        # blocked there): a thread still at the same acquisition has made no progress since
        self._blocked_since: dict[int, tuple[int, int, float]] = {}

    def _note_blocked(self, blocked: dict[int, types.FrameType]) -> dict[int, float]:
        """Remember when each blocked thread was first seen at its current acquisition; the
        seconds each has waited there since (a lower bound)."""
        now = time.monotonic()
        waited: dict[int, float] = {}
        with self._lock:
            known = self._blocked_since
            self._blocked_since = {}
            for ident, frame in blocked.items():
                mark = (id(frame), frame.f_lasti)
                seen = known.get(ident)
                since = seen[2] if seen is not None and seen[:2] == mark else now
                self._blocked_since[ident] = (*mark, since)
                waited[ident] = now - since
        return waited

    # -- snapshot ---------------------------------------------------------------------------

    def snapshot(self) -> dict[str, Any]:
        """Cost: ~0.1 ms + ~2 µs per thread and one /proc read; the source of a frame is read
        only when it may be taking a lock (once per file, then cached).

        Per-thread CPU needs one /proc read per thread, each waiting for the GIL under load, so
        it is left to `threads_hot`; the snapshot has the process's CPU rate since the newest
        snapshot at least 0.5 s old (``cpu_window_s`` is 0 until there is one).
        """
        me = threading.get_ident()
        frames = current_frames()
        threads = _thread_names()
        blocked = waiting = 0
        stuck: dict[int, types.FrameType] = {}
        for ident, frame in frames.items():
            if ident == me:
                continue
            act = _activity(frame, cheap=True)
            blocked += act.state == "blocked_on_lock"
            waiting += act.state == "waiting"
            if act.state == "blocked_on_lock":
                stuck[ident] = act.frame
        del frame
        waited = self._note_blocked(stuck)
        stuck.clear()
        now = time.monotonic()
        try:
            with self._process.oneshot():  # one /proc read: each one waits for the GIL back
                cpu = self._process.cpu_times()
                proc_cpu = cpu.user + cpu.system
                os_threads = self._process.num_threads()
        except (psutil.Error, OSError):
            proc_cpu, os_threads = 0.0, len(frames)
        proc_percent = window = 0.0
        with self._lock:
            base = self._baseline(now)
            self._marks.append((now, proc_cpu))
        if base is not None:
            window = now - base[0]
            proc_percent = max(0.0, 100.0 * (proc_cpu - base[1]) / window)
        return {
            "threads": len(frames),
            # the program's own threads: lensbook's loop and probe workers come and go
            "app_threads": sum(
                1 for i in frames if i != me and not _is_lensbook_thread(_name_of(i, threads))
            ),
            "daemon_threads": sum(1 for t in threads.values() if t.daemon),
            "os_threads": os_threads,
            "blocked_on_lock": blocked,
            "longest_lock_wait_s": round(max(waited.values(), default=0.0), 1),
            "waiting_threads": waiting,
            "cpu_window_s": round(window, 2),
            "process_cpu_percent": round(proc_percent, 1),
        }

    def _baseline(self, now: float) -> tuple[float, float] | None:
        """The newest mark at least 0.5 s old (a shorter window is mostly clock-tick noise)."""
        for mark in reversed(self._marks):
            if now - mark[0] >= 0.5:
                return mark
        return None

    # -- probes -----------------------------------------------------------------------------

    @probe(max_chars=8000, name="list")
    def list_threads(self, limit: int = 30, stack_depth: int = 6) -> dict[str, Any]:
        """Every thread: name, daemon flag, CPU seconds, state, and a bounded stack.

        Threads with the same stack (a pool of idle workers) are grouped with a count. The state
        is "blocked_on_lock" (naming the lock), "waiting" (sleep, select, queue, Event, join...)
        or "running" (Python code or an unknown C call).

        Args:
            limit: at most this many groups of threads (busiest CPU first).
            stack_depth: frames kept per stack, innermost last (1 to 30).

        Cost: ~1 ms with 10 threads, ~2 ms with 100 (one /proc read per thread for CPU time).
        """
        stack_depth = min(max(stack_depth, 1), 30)
        me = threading.get_ident()
        frames = current_frames()
        threads = _thread_names()
        cpu = _thread_cpu(self._process)
        groups: dict[tuple[str, ...], dict[str, Any]] = {}
        for ident, frame in frames.items():
            if ident == me:
                continue
            thread = threads.get(ident)
            act = _activity(frame)
            stack = tuple(format_stack(frame, stack_depth))
            native = getattr(thread, "native_id", None) if thread else None
            seconds = cpu.get(native) if native is not None else None
            entry = groups.get(stack)
            if entry is None:
                entry = groups[stack] = {
                    "threads": [],
                    "count": 0,
                    "state": act.state,
                    "doing": from_process(act.call) if act.call else None,
                    "cpu_s": 0.0,
                    "stack": list(stack),
                }
                if act.state == "blocked_on_lock":
                    entry["lock"] = act.lock_name
                user = first_user_frame(frame)
                if user is not None and user is not frame:
                    # inside a library or the stdlib: the user's frame that called into it
                    entry["user_frame"] = describe_frame(user)
                runs = _target_of(thread)
                if runs:
                    entry["runs"] = runs
                entry.update(_started_by(thread))
            entry["count"] += 1
            entry["cpu_s"] = round(entry["cpu_s"] + (seconds or 0.0), 3)
            if len(entry["threads"]) < 5:
                entry["threads"].append(
                    {
                        "name": _name_of(ident, threads),
                        "daemon": thread.daemon if thread else None,
                        "native_id": native,
                        "cpu_s": None if seconds is None else round(seconds, 3),
                    }
                )
        ordered = sorted(groups.values(), key=lambda g: -g["cpu_s"])
        return {
            "threads": len(frames) - (me in frames),
            "groups": ordered[: max(limit, 1)],
            "groups_left_out": max(0, len(ordered) - max(limit, 1)),
            "note": "the probe's own thread is left out",
        }

    @probe
    def stack(self, thread: str, depth: int = 20) -> dict[str, Any]:
        """The stack of one thread, innermost frame last, with its source lines.

        Args:
            thread: the thread's name, ident or native id.
            depth: frames to show (1 to 60).

        Cost: microseconds.
        """
        threads = _thread_names()
        frames = current_frames()
        for ident, frame in frames.items():
            t = threads.get(ident)
            names = {str(ident), _name_of(ident, threads)}
            if t is not None and t.native_id is not None:
                names.add(str(t.native_id))
            if thread in names:
                act = _activity(frame)
                return {
                    "thread": _name_of(ident, threads),
                    "daemon": t.daemon if t else None,
                    "state": act.state,
                    "doing": from_process(act.call) if act.call else None,
                    "stack": format_stack(frame, min(max(depth, 1), 60)),
                }
        known = ", ".join(sorted(_name_of(i, threads) for i in frames))
        raise ValueError(f"no thread {thread!r}; threads: {known}")

    @probe(budget=15.0)
    def deadlocks(self, limit: int = 10, recheck_after_s: float = 0.0) -> dict[str, Any]:
        """Threads blocked acquiring a lock, who holds each lock, and deadlock cycles.

        A lock is named as the blocked frame names it (``lock_b``, ``self._lock``); its holder
        is the thread whose frame is inside a ``with`` on it or after its ``acquire()``, or the
        owner an RLock records. A cycle (A waits for a lock B holds while B waits for one A
        holds) is a deadlock.

        The lock is found whatever the expression that takes it: names, attribute chains,
        subscripts with integer arithmetic (``locks[(i + 1) % 3]``), and for a lock returned
        by a call, the one locked lock the frame can reach by reference (an RLock the thread
        itself owns left out). An RLock's holder is the owner it records, even when the
        function that took it has returned; a plain Lock records none, so one taken in a
        returned function has ``held_by`` None and a ``holder_note``. ``waited_s`` is how
        long each thread has been seen at that same acquisition (same frame and instruction).

        Args:
            limit: at most this many blocked threads outside cycles.
            recheck_after_s: look, wait this long (at most 10 s), and look again: a thread
                still at the same acquisition has made no progress in between.

        Cost: ~0.2 ms when no thread is blocked (plus `recheck_after_s` of waiting); otherwise
        every thread's stack is searched for held locks (~8 ms with 100 threads) after a
        one-off parse (~10 ms per 1000 lines) of each source file on those stacks; no code is
        run.
        """
        me = threading.get_ident()
        if recheck_after_s > 0:
            first = {}
            for ident, frame in current_frames().items():
                act = _activity(frame, thread=ident)
                if ident != me and act.state == "blocked_on_lock":
                    first[ident] = act.frame
            self._note_blocked(first)
            first.clear()  # no frame is kept across the wait
            del frame, act
            time.sleep(min(recheck_after_s, 10.0))
        frames = {i: f for i, f in current_frames().items() if i != me}
        threads = _thread_names()
        waits: dict[int, _Activity] = {}
        activities: dict[int, _Activity] = {}
        for ident, frame in frames.items():
            act = activities[ident] = _activity(frame, thread=ident)
            if act.state == "blocked_on_lock":
                waits[ident] = act
        waited = self._note_blocked({i: a.frame for i, a in waits.items()})
        holders: dict[int, dict[int, tuple[str, str]]] = {}  # id(lock) -> {ident: (name, how)}
        if waits:
            wanted = {id(a.lock): a.lock for a in waits.values() if a.lock is not None}
            for ident, frame in frames.items():
                skip = waits[ident].lock if ident in waits else None
                for lock, name, how, _ in _held_locks(_frames_of(frame), skip, wanted, ident):
                    holders.setdefault(id(lock), {})[ident] = (name, how)
            for act in waits.values():
                # the owner an RLock records is the holder, even where no live frame shows it
                # taken (acquired in a function that has returned, or in C code)
                owner = _lock_state(act.lock)[1]
                if owner is not None and owner in frames:
                    holders[id(act.lock)] = {
                        owner: holders.get(id(act.lock), {}).get(
                            owner,
                            (act.lock_name, "owner recorded by the RLock; no live frame takes it"),
                        )
                    }
        edges = {
            ident: [h for h in holders.get(id(act.lock), {}) if h != ident]
            for ident, act in waits.items()
        }
        cycles = _cycles(edges)
        in_cycle = {i for c in cycles for i in c}

        def held_by(ident: int) -> list[dict[str, str]]:
            return [
                {"lock": name, "taken": how}
                for per_lock in holders.values()
                for holder, (name, how) in per_lock.items()
                if holder == ident
            ]

        def waiting(ident: int) -> dict[str, Any]:
            act = waits[ident]
            locked, _ = _lock_state(act.lock)
            holder_ids = edges.get(ident, [])
            entry: dict[str, Any] = {
                "thread": _name_of(ident, threads),
                "waits_for": act.lock_name,
                "lock_type": _lock_type_name(act.lock),
                "lock_locked": locked,
                "at": describe_frame(act.frame),
                "code": source_line(act.frame.f_code.co_filename, act.frame.f_lineno),
                "holds": held_by(ident),
                "held_by": [_name_of(h, threads) for h in holder_ids] or None,
                # since first seen at this very acquisition (same frame and instruction)
                "waited_s": round(waited.get(ident, 0.0), 1),
            }
            entry.update(_started_by(threads.get(ident)))
            user = _first_user_frame(act.frame)
            if user is not None and user is not act.frame:
                entry["user_code"] = describe_frame(user)
            if not holder_ids:
                owner = _lock_state(act.lock)[1]
                entry["holder_note"] = (
                    f"the RLock records owner thread {owner}, which runs no Python code (it "
                    "has most likely ended without releasing it)"
                    if owner is not None and owner not in frames and owner != me
                    else "no live frame holds it by with/acquire (a plain Lock records no "
                    "owner: taken in a function that has returned, in C code, by a thread "
                    "that ended, or in a frame whose source is unavailable)"
                )
            elif ident not in in_cycle:
                h = holder_ids[0]
                hold = activities.get(h)
                if hold is not None:
                    doing = hold.call or "python code"
                    entry["holder_doing"] = f"{hold.state}: {doing} at {describe_frame(hold.frame)}"
                    entry["holder_state"] = hold.state
                    inner = frames.get(h)
                    if inner is not None and inner is not hold.frame:
                        code = source_line(inner.f_code.co_filename, inner.f_lineno)
                        entry["holder_innermost"] = describe_frame(inner) + (
                            f": {code}" if code else ""
                        )
                    user = _first_user_frame(hold.frame)
                    if user is not None and user is not hold.frame:
                        entry["holder_user_code"] = describe_frame(user)
            return entry

        report_cycles = []
        for cycle in cycles:
            steps = [waiting(i) for i in cycle]
            report_cycles.append(
                {
                    "threads": [s["thread"] for s in steps],
                    "locks": [s["waits_for"] for s in steps],
                    "cycle": steps,
                }
            )
        others = [waiting(i) for i in waits if i not in in_cycle][: max(limit, 0)]
        return {
            "deadlocks": report_cycles,
            "blocked": others,
            "blocked_threads": len(waits),
            "threads_scanned": len(frames),
        }

    @probe(budget=6.0)
    def hot(self, seconds: float = 0.5, interval_ms: float = 5.0, top: int = 3) -> dict[str, Any]:
        """Which threads burn CPU and in which function: per-thread CPU over a short window and
        stack samples taken every few milliseconds.

        ``runnable_percent`` (Linux) is the share of the window a thread spent on a CPU or
        waiting in the run queue for one: near 100 for a thread that never blocks, even when a
        busy machine gives it less than a core.

        Args:
            seconds: the sampling window (0.1 to 3).
            interval_ms: time between stack samples (1 to 50); at most 1000 samples are taken.
            top: threads to describe (the busiest first).

        Cost: the window's length in wall time; each sample reads every thread's innermost
        frames (idle threads are recognised and cheap): ~1% of a core at 5 ms intervals with
        10 threads, ~5% with 100.
        """
        seconds = min(max(seconds, 0.1), 3.0)
        interval = min(max(interval_ms, 1.0), 50.0) / 1000.0
        me = threading.get_ident()
        leaf: dict[int, Counter[tuple[types.CodeType, int]]] = {}
        funcs: dict[int, Counter[types.CodeType]] = {}
        users: dict[int, Counter[types.CodeType]] = {}
        stacks: dict[tuple[int, types.CodeType], list[str]] = {}
        cpu_start = time.monotonic()
        cpu0 = _thread_cpu(self._process)
        demand0 = _thread_demand()
        proc = self._process.cpu_times()
        start = time.monotonic()
        samples = 0

        # a thread still on the same frame and instruction as in the last sample (an idle
        # one) reuses what that sample found: sampling stays cheap with many idle threads
        last: dict[int, tuple[types.FrameType, int, types.CodeType | None]] = {}

        def sample() -> None:
            for ident, frame in current_frames().items():
                if ident == me:
                    continue
                code = frame.f_code
                leaf.setdefault(ident, Counter())[(code, frame.f_lineno)] += 1
                funcs.setdefault(ident, Counter())[code] += 1
                seen = last.get(ident)
                if seen is not None and seen[0] is frame and seen[1] == frame.f_lasti:
                    user_code = seen[2]
                else:
                    user = _first_user_frame(frame)
                    user_code = user.f_code if user is not None else None
                    last[ident] = (frame, frame.f_lasti, user_code)
                if user_code is not None:
                    users.setdefault(ident, Counter())[user_code] += 1
                if (ident, code) not in stacks and len(stacks) < 500:
                    stacks[(ident, code)] = format_stack(frame, 8)

        while samples < 1000:
            sample()
            samples += 1
            if time.monotonic() - start >= seconds:
                break
            time.sleep(interval)
        window = time.monotonic() - start
        last.clear()  # no frame is kept past the sampling
        cpu1 = _thread_cpu(self._process)
        demand1 = _thread_demand()
        proc1 = self._process.cpu_times()
        # the CPU window runs from before the first read to after the last: under load each
        # /proc read waits for the GIL, and a thread keeps burning CPU meanwhile
        cpu_window = time.monotonic() - cpu_start
        threads = _thread_names()
        rows = []
        for ident in set(leaf) | {i for i, t in threads.items() if i != me}:
            thread = threads.get(ident)
            native = thread.native_id if thread is not None else None
            pct: float | None = None
            runnable: float | None = None
            if native is not None and native in cpu1:
                used = cpu1[native] - cpu0.get(native, 0.0)
                pct = round(min(100.0, 100.0 * used / cpu_window), 1)
            if native is not None and native in demand1 and native in demand0:
                wanted = demand1[native] - demand0[native]
                runnable = round(min(100.0, 100.0 * wanted / cpu_window), 1)
            rows.append((ident, pct, runnable))
        rows.sort(key=lambda r: -max(r[1] or 0.0, r[2] or 0.0))
        described = []
        for ident, pct, runnable in rows[: max(top, 1)]:
            count = sum(funcs.get(ident, Counter()).values())
            entry: dict[str, Any] = {
                "thread": _name_of(ident, threads),
                "daemon": threads[ident].daemon if ident in threads else None,
                "cpu_percent": pct,
                "runnable_percent": runnable,
                "samples": count,
            }
            entry.update(_started_by(threads.get(ident)))
            if count:
                code, hits = funcs[ident].most_common(1)[0]
                entry["hot_function"] = f"{_qualname(code)} ({short_path(code.co_filename)})"
                entry["hot_function_share"] = round(100.0 * hits / count, 1)
                entry["hot_lines"] = [
                    {
                        "at": f"{short_path(c.co_filename)}:{line}",
                        "share": round(100.0 * n / count, 1),
                        "code": source_line(c.co_filename, line),
                    }
                    for (c, line), n in leaf[ident].most_common(3)
                ]
                if ident in users:
                    ucode, uhits = users[ident].most_common(1)[0]
                    entry["user_function"] = f"{_qualname(ucode)} ({short_path(ucode.co_filename)})"
                    entry["user_function_share"] = round(100.0 * uhits / count, 1)
                entry["stack"] = stacks.get((ident, code), [])
            described.append(entry)
        quiet = sum(1 for _, p, _ in rows[max(top, 1) :] if (p or 0.0) < 5.0)
        return {
            "window_s": round(window, 3),
            "samples": samples,
            "process_cpu_percent": round(
                max(
                    0.0, 100.0 * (proc1.user + proc1.system - proc.user - proc.system) / cpu_window
                ),
                1,
            ),
            "threads": described,
            "other_threads": len(rows) - len(described),
            "other_threads_below_5_percent": quiet,
            "cpu_source": "psutil per-thread times" if cpu1 else "unavailable (samples only)",
            "runnable_source": "schedstat: on a CPU or waiting for one"
            if demand1
            else "unavailable",
        }

    @probe
    def groups(self, limit: int = 5) -> dict[str, Any]:
        """Threads grouped by name pattern (numbers masked: ``ThreadPoolExecutor-*_*``), largest
        first: how many, the function each runs, where they are parked now, how many pools
        (executors) they come from, and what holds those pools (one referrer, named as a user
        would: an attribute of an instance of a class, a module global).

        Args:
            limit: how many groups to return (at most 20).

        Cost: ~2 µs per thread, plus one referrer search (O(objects tracked by the collector),
        ~20 ms per million) for the largest group of pool workers only.
        """
        me = threading.get_ident()
        frames = current_frames()
        groups: dict[str, dict[str, Any]] = {}
        pools: dict[str, dict[int, Any]] = {}
        for thread in threading.enumerate():
            if thread.ident == me or _is_lensbook_thread(thread.name):
                continue
            # redacted before its digits are masked: a token masked first is no longer one
            pattern = from_process(re.sub(r"\d+", "*", redact_text(thread.name)))
            entry = groups.setdefault(pattern, {"pattern": pattern, "count": 0, "daemon": 0})
            entry["count"] += 1
            entry["daemon"] += thread.daemon
            target = getattr(thread, "_target", None)
            code = getattr(target, "__code__", None)
            if code is not None and "runs" not in entry:
                entry["runs"] = f"{_qualname(code)} ({short_path(code.co_filename)})"
            # a creator the recorder saw start a thread of the group beats a note on one that
            # was already alive when it started ("started before lensbook loaded; runs ...")
            if not entry.get("start_seen"):
                starter = _started_by(thread)
                if starter and ("started_by" not in entry or starter["start_seen"]):
                    entry.update(starter)
            frame = frames.get(thread.ident) if thread.ident is not None else None
            if frame is not None and "parked_at" not in entry:
                act = _activity(frame)
                entry["parked_at"] = f"{act.state}: {act.call or 'python code'} at " + (
                    describe_frame(act.frame)
                )
            owner = _pool_of(thread)
            if owner is not None:
                pools.setdefault(pattern, {})[id(owner)] = owner
        rows = sorted(groups.values(), key=lambda g: -g["count"])[: min(max(limit, 1), 20)]
        for i, row in enumerate(rows):
            owners = pools.get(row["pattern"])
            if not owners:
                continue
            row["pools"] = len(owners)
            row["pool_type"] = type_names(type(next(iter(owners.values()))))[2]
            if i == 0:
                held = _held_by(next(iter(owners.values())))
                if held:
                    row["pool_held_by"] = held
        del frames
        return {"threads": sum(g["count"] for g in groups.values()), "groups": rows}

    def rules(self) -> Sequence[Rule]:
        return (
            Deadlock(),
            LockContention(),
            SpinningThread(),
            ThreadGrowth(),
            PastThreadDeaths(),
            ThreadGrowthByKind(),
        )

    def close(self) -> None:
        """Nothing to undo: the skill installs no hooks."""


def _cycles(edges: dict[int, list[int]]) -> list[list[int]]:
    """Elementary cycles of a small "waits for" graph, each once, starting at its lowest id."""
    found: list[list[int]] = []
    seen: set[tuple[int, ...]] = set()

    def walk(path: list[int]) -> None:
        for nxt in edges.get(path[-1], ()):
            if nxt == path[0]:
                low = path.index(min(path))
                cycle = tuple(path[low:] + path[:low])
                if cycle not in seen:
                    seen.add(cycle)
                    found.append(list(cycle))
            elif nxt not in path and nxt > path[0] and len(path) < 32:
                walk([*path, nxt])

    for start in sorted(edges):
        walk([start])
    return found


# -- rules for the offline investigator -----------------------------------------------------


def _results(ev: Evidence, name: str) -> Iterable[Any]:
    return (value for _, value in ev.results.get(name, []))


def _started(entry: dict[str, Any]) -> str:
    """ " (started by fn at file:line)" for a thread the flight recorder saw start, else ""."""
    return f" ({_starter(entry)})" if entry.get("started_by") else ""


def _starter(entry: dict[str, Any]) -> str:
    """ "started by fn at file:line", or "started before lensbook loaded; runs ..." for a
    thread that was already alive when the recorder started (`start_seen` false)."""
    text = str(entry["started_by"])
    return f"started by {text}" if entry.get("start_seen", True) else text


class Deadlock(Rule):
    """Threads blocked on locks: look for a cycle and name its threads and locks."""

    name = "deadlock"

    def wants(self, ev: Evidence) -> Sequence[ProbeCall]:
        if not (ev.latest("blocked_on_lock", 0) or _REASON_LOCKS.search(ev.reason)):
            return []
        calls = [ProbeCall("threads_deadlocks")]
        first = ev.result("threads_deadlocks")
        if isinstance(first, dict) and not first.get("deadlocks") and first.get("blocked"):
            # blocked threads and no proven cycle: look again later to tell a stall (no
            # progress at the same acquisition) from a passing wait
            calls.append(ProbeCall("threads_deadlocks", {"recheck_after_s": RECHECK_S}))
        return calls

    def judge(self, ev: Evidence) -> Sequence[Finding]:
        result = ev.result("threads_deadlocks")
        if not isinstance(result, dict):
            return []
        findings = []
        for cycle in result.get("deadlocks") or []:
            steps = cycle.get("cycle") or []
            parts = []
            for step in steps:
                holds = ", ".join(f"{h['lock']} ({h['taken']})" for h in step.get("holds") or [])
                parts.append(
                    f"thread {step['thread']!r}{_started(step)} holds {holds or 'a lock'} and "
                    "waits for "
                    f"{step['waits_for']} at {step['at']} (held by "
                    f"{', '.join(repr(h) for h in step.get('held_by') or ['?'])})"
                )
            threads = ", ".join(repr(t) for t in cycle.get("threads", []))
            locks = ", ".join(cycle.get("locks", []))
            findings.append(
                Finding(
                    anomaly_type="deadlock",
                    severity="critical",
                    context=(
                        f"{result.get('blocked_threads')} of {result.get('threads_scanned')} "
                        f"threads are blocked acquiring locks; {len(steps)} of them wait for "
                        "each other in a cycle"
                    ),
                    observation=f"Deadlock between threads {threads} on locks {locks}: "
                    + "; ".join(parts)
                    + ".",
                    hypothesis=(
                        f"The threads take the locks {locks} in opposite orders, so each holds "
                        "the lock the other needs and none can proceed. Take the locks in one "
                        "global order everywhere (or one lock for both), or acquire with a "
                        "timeout and back off."
                    ),
                )
            )
        return findings


#: seconds a stalled-looking wait is watched again before it is judged
RECHECK_S = 3.0
#: a thread at the same lock acquisition this long, behind no holder doing work, is stalled
STALL_S = 2.5


def _stalled(entry: dict[str, Any]) -> bool:
    """A wait with no progress: long, and its holder unknown or itself blocked on a lock."""
    holder_doing = str(entry.get("holder_doing") or "")
    return float(entry.get("waited_s") or 0.0) >= STALL_S and (
        not entry.get("held_by") or holder_doing.startswith("blocked_on_lock")
    )


class LockContention(Rule):
    """Threads blocked behind a lock outside any proven cycle: a stall (long wait, no progress,
    no working holder) is a warning; a wait behind a working holder is worth naming only."""

    name = "lock_contention"

    def judge(self, ev: Evidence) -> Sequence[Finding]:
        result = ev.result("threads_deadlocks")
        if not isinstance(result, dict) and "threads_deadlocks" not in ev.errors:
            return _stall_from_snapshot(ev)
        if not isinstance(result, dict) or not result.get("blocked"):
            return []
        stuck = [b for b in result["blocked"] if _stalled(b)]
        if stuck:
            return [_stall_finding(result, stuck)]
        blocked = result["blocked"]
        parts = []
        for b in blocked[:5]:
            holder = ", ".join(repr(h) for h in b.get("held_by") or []) or "an unknown holder"
            doing = f" ({b['holder_doing']})" if b.get("holder_doing") else ""
            if b.get("holder_user_code"):
                doing += f", called from {b['holder_user_code']}"
            if b.get("holder_innermost"):
                doing += f", innermost at {b['holder_innermost']}"
            called = f" (called from {b['user_code']})" if b.get("user_code") else ""
            parts.append(
                f"{b['thread']!r}{_started(b)} waits for {b['waits_for']} at {b['at']}{called}, "
                f"held by {holder}{doing}"
            )
        # a holder parked in a blocking call (I/O, a sleep, a queue) with a queue of threads
        # behind it: the lock is held across the wait, every thread that needs it stalls
        convoy = Counter(
            tuple(b.get("held_by") or ())
            for b in blocked
            if b.get("held_by") and b.get("holder_state") == "waiting"
        )
        stalled = max(convoy.values(), default=0)
        # one observation, two readings: a convoy behind a blocked holder, or plain contention
        severity: Severity
        if stalled >= 2:
            kind, severity = "lock_held_across_blocking_call", "warning"
            context = (
                f"{len(blocked)} thread(s) blocked acquiring a lock whose holder is itself "
                "blocked in a call, not in a deadlock cycle"
            )
            hypothesis = (
                "The holder does blocking work (I/O to a stalled pipe, socket or disk, a "
                "sleep, a queue) while it holds the lock, so every thread that needs the "
                "lock stalls behind it. Move the blocking call out of the critical "
                "section (for a logging handler: a QueueHandler with a QueueListener "
                "thread), or give it a timeout."
            )
        else:
            kind, severity = "lock_contention", "info"
            context = (
                f"{len(blocked)} thread(s) blocked acquiring a lock at the time of the probe, "
                "not in a deadlock cycle"
            )
            hypothesis = (
                "A thread holds the lock while it does slow work (I/O, sleep, a long "
                "computation); if the wait persists across snapshots, shorten the critical "
                "section."
            )
        return [
            Finding(
                anomaly_type=kind,
                severity=severity,
                context=context,
                observation="; ".join(parts) + ".",
                hypothesis=hypothesis,
            )
        ]


def _stall_from_snapshot(ev: Evidence) -> Sequence[Finding]:
    """The cheap check (triage): threads seen at the same lock acquisition for a long time."""
    longest = float(ev.latest("longest_lock_wait_s", 0.0) or 0.0)
    if longest < STALL_S:
        return []
    return [
        Finding(
            anomaly_type="lock_wait_stalled",
            severity="warning",
            context=f"{ev.latest('blocked_on_lock')} thread(s) blocked acquiring locks",
            observation=f"a thread has been at the same lock acquisition for {longest:.0f} s",
            hypothesis="a deadlock or a lock never released; threads_deadlocks names the "
            "threads, the locks and where they wait",
        )
    ]


def _stall_finding(result: dict[str, Any], stalled: list[dict[str, Any]]) -> Finding:
    parts = []
    for b in stalled[:5]:
        holder = ", ".join(repr(h) for h in b.get("held_by") or []) or "no thread we can name"
        code = f" `{b['code']}`" if b.get("code") else ""
        parts.append(
            f"{b['thread']!r}{_started(b)} has waited {b['waited_s']} s for {b['waits_for']} at "
            f"{b['at']}{code} (held by {holder})"
        )
    names = ", ".join(repr(b["thread"]) for b in stalled)
    return Finding(
        anomaly_type="lock_wait_stalled",
        severity="warning",
        context=(
            f"{result.get('blocked_threads')} of {result.get('threads_scanned')} threads are "
            f"blocked acquiring locks; {len(stalled)} made no progress at the same acquisition "
            "between two looks, and no cycle could be proven"
        ),
        observation=f"Threads {names} are stuck at lock acquisition: " + "; ".join(parts) + ".",
        hypothesis=(
            "A lock that is never released (acquired in one function and not released on "
            "every path, or held by a thread that ended) or a deadlock through locks taken "
            "where lensbook cannot see the holder. Release in a finally/with block, and take "
            "locks in one global order (or acquire with a timeout)."
        ),
    )


class SpinningThread(Rule):
    """A thread using most of a core: sample it and name its hot function."""

    name = "cpu_spin"
    #: a thread above this share of one core over the sampling window is reported (not higher:
    #: on a loaded machine a spinning thread gets only its share of the cores)
    threshold = 50.0

    def wants(self, ev: Evidence) -> Sequence[ProbeCall]:
        known = ev.latest("cpu_window_s", 0.0) >= 0.5
        if (
            not known
            or ev.latest("process_cpu_percent", 0.0) >= self.threshold
            or _REASON_CPU.search(ev.reason)
        ):
            return [ProbeCall("threads_hot", {"seconds": 0.5})]
        return []

    def judge(self, ev: Evidence) -> Sequence[Finding]:
        findings = []
        for result in list(_results(ev, "threads_hot"))[-1:]:
            if not isinstance(result, dict):
                continue
            for t in result.get("threads") or []:
                pct = t.get("cpu_percent")
                runnable = t.get("runnable_percent") or 0.0
                if pct is None or _is_lensbook_thread(t["thread"]):
                    continue
                # a thread that never blocks spins even if a busy machine gives it half a core
                if pct < self.threshold and not (runnable >= 90.0 and pct >= 10.0):
                    continue
                lines = t.get("hot_lines") or []
                top_line = lines[0] if lines else {}
                line_share = sum(x.get("share", 0.0) for x in lines)
                spin = t.get("hot_function_share", 0.0) >= 80.0 and line_share >= 90.0
                where = t.get("user_function") or t.get("hot_function")
                code = f" `{top_line['code']}`" if top_line.get("code") else ""
                # a busy loop, or a thread that never blocks, is a fault; a worker that does
                # CPU-bound work between waits (a batch job) is worth naming, not an alarm
                severity: Severity = "warning" if spin or runnable >= 90.0 else "info"
                findings.append(
                    Finding(
                        anomaly_type="cpu_spin" if spin else "cpu_hot_thread",
                        severity=severity,
                        context=(
                            f"process CPU {result.get('process_cpu_percent')}% over a "
                            f"{result.get('window_s')} s window, {result.get('samples')} stack "
                            "samples"
                        ),
                        observation=(
                            f"Thread {t['thread']!r} used {pct}% of a core (runnable "
                            f"{t.get('runnable_percent')}% of the time); "
                            f"{t.get('hot_function_share')}% of its samples were in "
                            f"{t.get('hot_function')}, hottest line {top_line.get('at')}{code} "
                            f"({top_line.get('share')}%); user code: {where}"
                            + (f"; the thread was {_starter(t)}" if t.get("started_by") else "")
                            + "."
                        ),
                        hypothesis=(
                            f"{where} is a busy loop: it polls without blocking, so it burns a "
                            "core and holds the GIL from other threads. Wait on a "
                            "threading.Event/Condition or a queue, or sleep between polls."
                            if spin
                            else f"{where} is CPU-bound; if that is unexpected, trace it (tracer "
                            "skill) to see who calls it and how long each call takes."
                        ),
                    )
                )
        return findings


class ThreadGrowth(CountGrowth):
    """The thread count climbing between two snapshots: name the group that grows, what it
    runs, and what creates or holds its pools."""

    name = "thread_growth"
    gap = 2.0
    key = "app_threads"
    #: growth that counts, relative to the threads the process had (with a floor for tiny ones)
    share = 0.25
    floor = 4
    detail = (ProbeCall("threads_groups", {"limit": 3}),)

    def judge(self, ev: Evidence) -> Sequence[Finding]:
        result = ev.result("threads_groups")
        if not self.growing(ev) or not isinstance(result, dict) or not result.get("groups"):
            return []
        lead = result["groups"][0]
        pools = (
            f" from {lead['pools']} separate {lead.get('pool_type')} objects"
            if lead.get("pools")
            else ""
        )
        held = f"; each pool is held by {lead['pool_held_by']}" if lead.get("pool_held_by") else ""
        first, last = int(ev.first("app_threads", 0)), int(ev.latest("app_threads", 0))
        # the user's code that starts them, when the flight recorder saw them start
        seen = str(lead.get("started_by") or "") if lead.get("start_seen") else ""
        where = f" ({seen.split(' via ')[0]})" if seen else ""
        if lead.get("pools", 0) > 1:
            hypothesis = (
                f"a new {lead.get('pool_type')} is created per call (per request, per "
                f"object){where} and never shut down, so its idle workers live on: create one "
                "pool at start-up and share it, or use it as a context manager (`with ...:`) / "
                "call shutdown()"
            )
        elif where:
            hypothesis = (
                f"threads are started faster than they finish{where}: a thread started per "
                "call, or workers blocked on something that never comes"
            )
        else:
            hypothesis = (
                "threads are started faster than they finish: look for a thread started per "
                "call, or workers blocked on something that never comes"
            )
        return [
            Finding(
                anomaly_type="thread_growth",
                severity="warning",
                context=(
                    f"threads grew from {first} to {last} (+{last - first} in {ev.elapsed():.1f} s)"
                ),
                observation=(
                    f"{lead['count']} threads named {lead['pattern']!r}{pools}, running "
                    f"{lead.get('runs', '?')}, parked at {lead.get('parked_at', '?')}{held}"
                    + (f"; they are {_starter(lead)}" if lead.get("started_by") else "")
                ),
                hypothesis=hypothesis,
            )
        ]
