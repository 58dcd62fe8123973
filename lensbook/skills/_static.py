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
``__getattribute__``/``__getattr__`` nor asks for the instance's dict.
"""

from __future__ import annotations

import types
from typing import Any

__all__ = ["stored_attr"]

_MISSING = object()
_MEMBER = types.MemberDescriptorType
_GETATTRIBUTE = object.__getattribute__


def _computes(value: Any) -> bool:
    """Whether `value`, found in a class, is a descriptor (reading it through an instance
    would call its ``__get__``)."""
    return any("__get__" in vars(klass) for klass in type(value).__mro__)


def stored_attr(obj: Any, name: str, default: Any = None) -> Any:
    """`obj`'s attribute `name` as stored on it (or, failing that, a plain value of its
    class), or `default` where it has none or it would be computed by code."""
    klass = type(obj)
    try:
        for owner in klass.__mro__:
            found = vars(owner).get(name, _MISSING)
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
