from __future__ import annotations

import functools
import gc
import sys
from collections import OrderedDict, deque
from typing import Any

from lensbook.skills._static import (
    container_base,
    is_own_dict,
    slot_values,
    stored_attr,
    stored_attrs,
    stored_len,
    stored_members,
    stored_size,
    stored_values,
)


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


class _Meta(type):
    seen: list[str] = []  # noqa: RUF012

    def __getattribute__(cls, name: str) -> Any:
        _Meta.seen.append(name)
        return super().__getattribute__(name)


class _WithMeta(metaclass=_Meta):
    def __init__(self) -> None:
        self.value = 1


class _Inline:
    def __init__(self) -> None:
        self.pool = ["held"]
        self.set_later: object = None

    def rename(self) -> None:
        self.renamed = "x"


def test_a_metaclass_s_attribute_hook_does_not_run() -> None:
    obj = _WithMeta()
    _Meta.seen.clear()
    assert stored_attr(obj, "value") == 1
    assert _Meta.seen == []


def test_values_and_names_are_read_without_a_dict() -> None:
    obj = _Inline()
    obj.rename()
    values = stored_values(obj)
    assert values is not None and any(v is obj.pool for v in values)
    attrs = stored_attrs(obj)
    assert attrs == {"pool": ["held"], "set_later": None, "renamed": "x"}
    assert not _has_a_dict(obj, "pool")
    assert stored_values(_Slotted()) is None  # (no inline attributes: its slots are read)


def test_an_object_whose_dict_is_a_plain_one_is_read_as_it_is() -> None:
    def handler() -> None:
        pass

    handler.retries = 3  # type: ignore[attr-defined]  # (a function's __dict__ is a real dict)
    assert stored_attrs(handler) == {"retries": 3}


def test_a_dict_is_an_objects_own_only_when_it_is_its_dict() -> None:
    holder = _Inline()
    held = {"k": 1}
    holder.pool = held  # type: ignore[assignment]  # a dict as an attribute's value
    assert not is_own_dict(holder, held)
    materialised = _Inline()
    own = vars(materialised)
    assert is_own_dict(materialised, own)

    def closure() -> dict[str, int]:
        return held

    cell = closure.__closure__[0]  # type: ignore[index]  # holds it, has no __dict__
    assert not is_own_dict(cell, held)

    def handler() -> None:
        pass

    assert is_own_dict(handler, handler.__dict__) and not is_own_dict(handler, held)


class _EqMeta(type):
    """A metaclass with ``__eq__`` and so no ``__hash__``: its classes cannot be hashed."""

    def __eq__(cls, other: object) -> bool:
        raise AssertionError("a class was compared")

    __hash__ = None  # type: ignore[assignment]


class _Rows(list[int], metaclass=_EqMeta):
    ran: list[str] = []  # noqa: RUF012 (a test's record)

    def __len__(self) -> int:
        self.ran.append("__len__")
        return 0

    def __iter__(self) -> Any:
        self.ran.append("__iter__")
        return iter(())

    @functools.lru_cache  # noqa: B019 (a cached __sizeof__ is the program's code all the same)
    def __sizeof__(self) -> int:
        self.ran.append("__sizeof__")
        return 10**9


def test_containers_are_read_through_their_built_in_base_only() -> None:
    rows = _Rows([1, 2, 3])
    _Rows.ran.clear()
    assert container_base(_Rows) is list and container_base(int) is None
    assert stored_len(rows) == 3 and list(stored_members(rows)) == [1, 2, 3]
    assert stored_size(rows) < 10**6 and _Rows.ran == []
    # what sys.getsizeof says for the built-in types, and a dict's members are its values
    for plain in ([1, 2], {"a": 1}, {1, 2}, frozenset(), deque([1]), (1,), "abc", 7):
        assert stored_size(plain) == sys.getsizeof(plain)
    assert stored_size(OrderedDict(a=1)) == sys.getsizeof(OrderedDict(a=1))
    assert list(stored_members({"k": "v"})) == ["v"] and stored_len(3) is None


class _SlottedChild(_Slotted):
    __slots__ = "__private"  # a single name given as a string (mangled: _SlottedChild__private)

    def __init__(self) -> None:
        super().__init__()
        self.__private = "private"


class _SlottedDeeper(_SlottedChild):
    __slots__ = {"__weakref__": None, "doc": "a dict's keys are the names"}


class _SetSlots:
    __slots__ = frozenset({"only"})

    def __init__(self) -> None:
        self.only = "set"


class _Shadowed(_Slotted):
    """A property over a base class's slot: reading the slot must not run it."""

    __slots__ = ()
    calls: list[str] = []  # noqa: RUF012

    def __init__(self) -> None:
        _Slotted.__dict__["value"].__set__(self, 1)  # the base's slot, under the property

    @property  # type: ignore[misc]
    def value(self) -> int:
        _Shadowed.calls.append("property")
        return 0


def test_slot_values_cover_every_class_of_the_chain_and_run_no_code() -> None:
    deeper = _SlottedDeeper()
    deeper.doc = "doc"
    assert slot_values(deeper) == [
        ("doc", "doc"),
        ("_SlottedChild__private", "private"),
        ("value", 1),
    ]
    assert slot_values(_SetSlots()) == [("only", "set")]
    assert slot_values(_Plain()) == []
    shadowed = _Shadowed()
    assert slot_values(shadowed) == [("value", 1)]
    assert _Shadowed.calls == []
