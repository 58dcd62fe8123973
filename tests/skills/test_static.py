from __future__ import annotations

import gc
from typing import Any

from lensbook.skills._static import stored_attr


def _has_a_dict(obj: object, key: str) -> bool:
    """Whether `obj` keeps its attributes in a dict (materialised by a ``__dict__`` read) rather
    than inline: the gc then sees the dict among its referents."""
    return any(type(r) is dict and key in r for r in gc.get_referents(obj))


class _Plain:
    kind = "class value"

    def __init__(self) -> None:
        self.value = 1


class _Computed:
    calls: list[str] = []  # noqa: RUF012 (a test's record)

    def __init__(self) -> None:
        self.value = 1

    @property
    def prop(self) -> int:
        self.calls.append("property")
        return 2

    def __getattr__(self, name: str) -> Any:
        self.calls.append(f"__getattr__ {name}")
        return 3

    def __getattribute__(self, name: str) -> Any:
        type(self).calls.append(f"__getattribute__ {name}")
        return object.__getattribute__(self, name)


class _Slotted:
    __slots__ = ("value",)

    def __init__(self) -> None:
        self.value = 1


def test_what_is_stored_is_read_and_no_code_of_the_object_runs() -> None:
    plain, computed, slotted = _Plain(), _Computed(), _Slotted()
    _Computed.calls.clear()
    assert stored_attr(plain, "value") == 1
    assert stored_attr(plain, "kind") == "class value"
    assert stored_attr(plain, "missing", "dflt") == "dflt"
    assert stored_attr(computed, "value") == 1
    assert stored_attr(computed, "prop", "dflt") == "dflt"  # a property would run code
    assert stored_attr(computed, "missing", "dflt") == "dflt"  # no __getattr__
    assert stored_attr(computed, "__init__", "dflt") == "dflt"  # a method: a descriptor
    assert _Computed.calls == []
    assert stored_attr(slotted, "value") == 1
    del slotted.value
    assert stored_attr(slotted, "value", "dflt") == "dflt"


def test_reading_leaves_the_object_as_compact_as_it_was() -> None:
    # on CPython 3.11+ a __dict__ read makes the instance keep a dict from then on, and the
    # program's every attribute access on it slower: `stored_attr` must not do that
    read, control = _Plain(), _Plain()
    assert not _has_a_dict(read, "value") and not _has_a_dict(control, "value")
    stored_attr(read, "value")
    stored_attr(read, "missing")
    assert not _has_a_dict(read, "value")
    vars(control)  # (what the check sees when a read does materialise it)
    assert _has_a_dict(control, "value")
