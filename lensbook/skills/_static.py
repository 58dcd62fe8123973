"""Reading the program's objects as they are stored: no code of theirs runs, nothing of theirs
changes.

``vars(obj)``, ``obj.__dict__`` and `inspect.getattr_static` (which reads ``__dict__``) are not
read-only on CPython 3.11 and later. An instance keeps its attributes in a compact inline array
until something asks for its ``__dict__``; from then on it keeps a real dict, and every
attribute access the program makes on that object takes a slower path for the rest of its
life. Measured with instruction counts (``benchmarks/bench_recorder_instructions.py``), one
``vars()`` of the main thread made each log record of the process cost 0.9% more, long after
lensbook had stopped: every record reads ``current_thread().name``.

So an instance's attribute is read with `stored_attr`. The class chain's own dicts (mapping
proxies: nothing is materialised) say whether the name is computed there (a property, a
method, any descriptor but a ``__slots__`` member: that would run code, so it is not read);
the value is then read with ``object.__getattribute__``, which neither runs a class's
``__getattribute__``/``__getattr__`` nor asks for the instance's dict. What an instance holds
is `stored_values` (the garbage collector's view: no names); its attributes by name are
`stored_attrs` (for an inline instance, the names its classes' methods use).
"""

from __future__ import annotations

import gc
import sys
import types
from collections import Counter, deque
from collections.abc import Iterable, Iterator
from typing import Any

__all__ = [
    "TypeCount",
    "class_attr",
    "container_base",
    "is_own_dict",
    "slot_values",
    "stored_attr",
    "stored_attrs",
    "stored_len",
    "stored_members",
    "stored_size",
    "stored_values",
]

_MISSING = object()
_MEMBER = types.MemberDescriptorType
_GETATTRIBUTE = object.__getattribute__
# a class's MRO, dict and flags read past any metaclass's __getattribute__
_MRO = type.__dict__["__mro__"].__get__
_CLASS_DICT = type.__dict__["__dict__"].__get__
_FLAGS = type.__dict__["__flags__"].__get__
_DICT_OFFSET = type.__dict__["__dictoffset__"].__get__
#: Py_TPFLAGS_MANAGED_DICT (3.11+): the instances keep their attributes inline until their
#: __dict__ is asked for
_MANAGED_DICT = 1 << 4
#: Py_TPFLAGS_HAVE_GC: ``sys.getsizeof`` adds the collector's header to ``__sizeof__``
_HAVE_GC = 1 << 14
_GC_HEADER = sys.getsizeof([]) - [].__sizeof__()

#: the built-in containers whose length and members are read through their own C methods,
#: for subclasses too (a subclass's ``__len__``, ``__iter__`` or ``values`` is the program's
#: code); a dict's members are its values
_CONTAINERS: tuple[tuple[type, Any, Any], ...] = (
    (dict, dict.__len__, dict.values),
    (list, list.__len__, list.__iter__),
    (set, set.__len__, set.__iter__),
    (frozenset, frozenset.__len__, frozenset.__iter__),
    (deque, deque.__len__, deque.__iter__),
    (tuple, tuple.__len__, tuple.__iter__),
)
_BASES = tuple(base for base, _, _ in _CONTAINERS)
_READERS = {base: (length, members) for base, length, members in _CONTAINERS}


def _computes(value: Any) -> bool:
    """Whether `value`, found in a class, is a descriptor (reading it through an instance
    would call its ``__get__``)."""
    return any("__get__" in _CLASS_DICT(klass) for klass in _MRO(type(value)))


def _inline(klass: type) -> bool:
    return bool(_FLAGS(klass) & _MANAGED_DICT)


def stored_values(obj: Any) -> list[Any] | None:
    """What `obj` holds in its attributes (inline values or its dict, and ``__slots__``), as
    the garbage collector sees them: nothing is materialised. None for an object whose class
    does not keep attributes inline (its ``__dict__``, if any, is a plain dict: read that)."""
    klass = type(obj)
    if not _inline(klass):
        return None
    return [r for r in gc.get_referents(obj) if r is not klass]


def _names_stored_by(klass: type) -> set[str]:
    """The attribute names the methods of `klass` and its bases use (``self.x = ...`` among
    them): the candidates for an inline instance's attribute names, read from code objects."""
    names: set[str] = set()
    for owner in _MRO(klass):
        for value in list(_CLASS_DICT(owner).values()):
            if type(value) in (staticmethod, classmethod):
                value = value.__func__
            if type(value) is not types.FunctionType:
                continue
            code = value.__code__
            names.update(code.co_names)
            for const in code.co_consts:
                if type(const) is types.CodeType:
                    names.update(const.co_names)
    return names


def stored_attrs(obj: Any) -> dict[str, Any] | None:
    """`obj`'s own attributes by name, read without running its code or materialising its
    dict. For an instance that keeps them inline, the names are those its classes' methods
    use (one set from elsewhere is not found); None for an object without attributes."""
    klass = type(obj)
    if not _inline(klass):
        try:
            found = _GETATTRIBUTE(obj, "__dict__")  # (a plain dict already: nothing changes)
        except Exception:
            return None
        return dict(found) if type(found) is dict else None
    try:
        in_classes = {name for owner in _MRO(klass) for name in _CLASS_DICT(owner)}
        slots = {
            name
            for owner in _MRO(klass)
            for name, value in _CLASS_DICT(owner).items()
            if type(value) is _MEMBER
        }
        attrs: dict[str, Any] = {}
        for name in (_names_stored_by(klass) - in_classes) | slots:
            value = stored_attr(obj, name, _MISSING)
            if value is not _MISSING:
                attrs[name] = value
        return attrs
    except Exception:
        return None


def slot_values(obj: Any) -> list[tuple[str, Any]]:
    """`obj`'s ``__slots__`` attributes that are set, as (name, value), for its class and each
    of its bases (a slot a subclass declares again has storage of its own: both are read).
    Read through the slots' member descriptors themselves, in C: a property a subclass puts
    over a slot's name never runs, and a private slot is found by its mangled name."""
    klass = type(obj)
    found: list[tuple[str, Any]] = []
    for owner in _MRO(klass):
        for name, member in list(_CLASS_DICT(owner).items()):
            if type(member) is _MEMBER:
                try:
                    found.append((name, member.__get__(obj, klass)))
                except AttributeError:  # declared, never set
                    continue
    return found


def class_attr(klass: type, name: str) -> Any:
    """`name` as the first class of `klass`'s chain stores it (a function, a descriptor, a
    value), or None: read by `type`'s own descriptors, no metaclass's code runs."""
    for owner in _MRO(klass):
        found = _CLASS_DICT(owner).get(name, _MISSING)
        if found is not _MISSING:
            return found
    return None


def stored_attr(obj: Any, name: str, default: Any = None) -> Any:
    """`obj`'s attribute `name` as stored on it (or, failing that, a plain value of its
    class), or `default` where it has none or it would be computed by code."""
    klass = type(obj)
    try:
        for owner in _MRO(klass):
            found = _CLASS_DICT(owner).get(name, _MISSING)
            if found is _MISSING:
                continue
            if type(found) is _MEMBER:  # a __slots__ attribute: read in C
                return found.__get__(obj, klass)
            if _computes(found):
                return default
            break
        return _GETATTRIBUTE(obj, name)
    except Exception:  # (AttributeError: not set; anything else: an object of a strange make)
        return default


def is_own_dict(owner: Any, namespace: dict[Any, Any]) -> bool:
    """Whether `namespace` is `owner`'s own ``__dict__`` (one it already has: asking would make
    one): held by it, as the gc sees it, and not as one of its attributes' values."""
    klass = type(owner)
    if not _DICT_OFFSET(klass) or issubclass(klass, (types.FrameType, type)):
        return False  # (its instances have no __dict__; a frame's or class's is not one)
    if not _inline(klass):
        try:  # (a plain dict already: reading it makes nothing)
            return _GETATTRIBUTE(owner, "__dict__") is namespace
        except Exception:
            return False
    # inline attributes: a dict it holds is its __dict__ (materialised) or an attribute's value
    if not any(r is namespace for r in gc.get_referents(owner)):
        return False
    return not any(v is namespace for v in (stored_attrs(owner) or {}).values())


def container_base(kind: type) -> type | None:
    """The built-in container (dict, list, set, frozenset, deque, tuple) `kind` is or derives
    from, or None. (``issubclass`` against the built-in types reads `kind`'s MRO in C: no
    metaclass ``__hash__``, ``__eq__`` or ``__subclasscheck__`` of the program's runs.)"""
    return next((b for b in _BASES if issubclass(kind, b)), None)


def stored_len(obj: Any) -> int | None:
    """``len(obj)`` as its built-in container base counts it (a subclass's ``__len__`` never
    runs), or None for an object that is no built-in container."""
    base = container_base(type(obj))
    return None if base is None else int(_READERS[base][0](obj))


def stored_members(obj: Any) -> Iterable[Any]:
    """A built-in container's members (a dict's values) by its base type's own iteration, or
    nothing."""
    base = container_base(type(obj))
    return () if base is None else _READERS[base][1](obj)


def stored_size(obj: Any) -> int:
    """``sys.getsizeof(obj)`` by the nearest ``__sizeof__`` of its class chain that is one of
    the interpreter's own methods (a class's own ``__sizeof__``, in Python, wrapped in a
    cache, compiled by Cython, is the program's code: never run here)."""
    klass = type(obj)
    for owner in _MRO(klass):
        method = _CLASS_DICT(owner).get("__sizeof__")
        if method is not None and not _is_python(method):
            try:
                own = int(method(obj))
            except Exception:  # (a C method refusing an object of a strange make)
                own = object.__sizeof__(obj)
            return own + (_GC_HEADER if _FLAGS(klass) & _HAVE_GC else 0)
    return object.__sizeof__(obj)


def _is_python(method: Any) -> bool:
    return type(method) not in _C_METHODS


#: what the built-in types' methods are (a slot wrapper such as ``list.__len__``, a method
#: descriptor such as ``object.__sizeof__``)
_C_METHODS = (types.WrapperDescriptorType, types.MethodDescriptorType)


class TypeCount:
    """How many objects of each type, keyed by the type's id: a class is never hashed or
    compared (a metaclass's ``__hash__``/``__eq__`` is the program's code, and one with
    ``__eq__`` alone makes its classes unhashable). The types counted are kept alive."""

    def __init__(self) -> None:
        self._counts: Counter[int] = Counter()
        self._types: dict[int, type] = {}

    def update(self, kinds: Iterable[type]) -> None:
        """Count one object of each type in `kinds` (C-level passes)."""
        kinds = list(kinds)
        ids = list(map(id, kinds))
        self._counts.update(ids)
        self._types.update(zip(ids, kinds, strict=True))

    def add(self, kind: type, n: int) -> None:
        self._counts[id(kind)] += n
        self._types[id(kind)] = kind

    def items(self) -> Iterator[tuple[type, int]]:
        return ((self._types[key], n) for key, n in self._counts.items())
