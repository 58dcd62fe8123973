from __future__ import annotations

import gc
from typing import Any

from lensbook.skills._static import is_own_dict, stored_attr, stored_attrs, stored_values


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
