"""What keeps objects alive, named in the user's terms with the fix for well-known retainers."""

from __future__ import annotations

import contextlib
import functools
import gc
import importlib.util
import io
import json
import linecache
import logging
import sys
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any, ClassVar

import pytest

from lensbook.recorder.event import HistoryEvent
from lensbook.recorder.ring import HistoryRing
from lensbook.skills._roots import fix_for
from lensbook.skills.base import render_output
from lensbook.skills.memory import MemorySkill, _key_of
from lensbook.skills.untrusted import undelimit


class AuditHandler(logging.Handler):
    def emit(self, record: logging.LogRecord) -> None:
        pass


class Ledger:
    def __init__(self, n: int) -> None:
        self.entries = list(range(n))

    @functools.lru_cache(maxsize=None)  # noqa: B019, UP033 - the retainer under test
    def total(self, scale: int) -> int:
        return sum(self.entries) * scale


class Chart:
    def __repr__(self) -> str:
        return "<chart>"


class Session:
    pass


class SessionRegistry:
    open_sessions: ClassVar[list[Session]] = []  # the leak: a list on the class, never emptied


class Row:
    pass


class Table:
    rows: ClassVar[list[Row]] = []


class Order:
    pass


class OrderBook:
    orders: ClassVar[list[Order]] = []


#: a lensbook ring (the flight recorder's storage) kept by this module
HISTORY = HistoryRing(caps={"order": 1000})

PLUGIN = """
class Widget:
    pass


WIDGETS = []


def register(n):
    WIDGETS.extend(Widget() for _ in range(n))
"""


def _chains(type_name: str, samples: int = 2) -> list[dict[str, Any]]:
    # the process's names in the chains are marked as untrusted text: read them unmarked
    # (a generous budget: on a loaded machine a cut chain would fail what is tested here)
    probe = MemorySkill(budget_scale=5.0).referrers(type_name, max_depth=8, samples=samples)
    found = undelimit(json.loads(render_output(probe, 100_000)))
    chains: list[dict[str, Any]] = found["chains"]
    return chains


@pytest.fixture
def audit_logger() -> Iterator[logging.Logger]:
    log = logging.getLogger("lensbook-test.audit")
    yield log
    for handler in list(log.handlers):
        log.removeHandler(handler)


def test_handlers_added_per_call_are_held_by_the_loggers_handler_list(
    audit_logger: logging.Logger,
) -> None:
    for _ in range(30):
        audit_logger.addHandler(AuditHandler())  # the bug: a handler per request
    (chain,) = _chains("AuditHandler")
    assert chain["chain"].endswith("held by the handler list of logger 'lensbook-test.audit'")
    assert "removeHandler" in chain["fix"]


def test_instances_in_an_lru_cache_on_a_method_name_the_cache() -> None:
    ledgers = [Ledger(10) for _ in range(20)]
    for ledger in ledgers:
        ledger.total(2)
    del ledgers
    try:
        chains = _chains("Ledger")
    finally:
        Ledger.total.cache_clear()
    assert chains and all("@functools.lru_cache" in c["chain"] for c in chains)
    assert chains[0]["chain"].endswith(f"{__name__}.Ledger.total")
    assert f"{__name__}.Ledger.total.cache_clear()" in chains[0]["fix"]


def test_a_result_held_only_by_ipythons_output_cache_names_out_n() -> None:
    from IPython.core.interactiveshell import InteractiveShell

    shell: Any = InteractiveShell.instance()
    shell.user_ns["Chart"] = Chart
    with contextlib.redirect_stdout(io.StringIO()):
        for cell in ("c = Chart()", "c", "del c", "1", "2", "3"):
            shell.run_cell(cell, store_history=True).raise_error()
    try:
        chains = _chains(f"{__name__}.Chart")
    finally:
        with contextlib.redirect_stdout(io.StringIO()):
            shell.run_line_magic("reset", "-f out")
    text = " ".join(c["chain"] for c in chains)
    assert "held by IPython's output cache" in text, chains
    assert "%reset -f out" in (fix_for(text) or "")


def test_a_list_on_a_class_is_named_as_the_class_attribute_with_its_fix() -> None:
    SessionRegistry.open_sessions.extend(Session() for _ in range(30))
    try:
        chains = _chains(f"{__name__}.Session", samples=4)
    finally:
        SessionRegistry.open_sessions.clear()
    root = f"{__name__}.SessionRegistry.open_sessions"
    (chain,) = chains
    assert chain["chain"] == (
        f"{__name__}.Session object <- list (len 30) (item) <- held by class attribute {root}"
    )
    assert chain["fix"].startswith(f"{root} belongs to the class, not to an instance")
    assert "set it in __init__" in chain["fix"]


@pytest.fixture
def plugin(tmp_path: Path) -> Iterator[str]:
    """A module loaded from a file by path (as a plugin loader does): only sys.modules keeps
    it, no other module imports it."""
    name = "lensbook_roots_plugin"
    path = tmp_path / f"{name}.py"
    path.write_text(PLUGIN)
    spec = importlib.util.spec_from_file_location(name, path)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules[name] = module
    spec.loader.exec_module(module)
    module.register(30)
    del module
    yield name
    del sys.modules[name]


def test_objects_of_a_module_reachable_only_through_sys_modules_name_its_global(
    plugin: str,
) -> None:
    chains = _chains(f"{plugin}.Widget", samples=4)
    assert [c["chain"] for c in chains] == [
        f"{plugin}.Widget object <- list (len 30) (item) <- held by module global {plugin}.WIDGETS"
    ]


def test_linecache_entries_are_never_the_root() -> None:
    # each row is also kept in linecache.cache (a leak-like dict of 30 entries, a module
    # global of linecache), reached first: the root is the user's class attribute all the same
    rows = [Row() for _ in range(30)]
    Table.rows.extend(rows)
    gc.collect()  # (the class's list ages: the younger linecache entries are met first)
    keys = [f"<lensbook-roots-{i}>" for i in range(len(rows))]
    for i in range(len(rows)):
        linecache.cache[keys[i]] = (1, None, [rows[i]], keys[i])  # type: ignore[list-item]
    del rows
    try:
        chains = _chains(f"{__name__}.Row", samples=4)
    finally:
        for key in keys:
            linecache.cache.pop(key, None)
        Table.rows.clear()
    assert [c["chain"] for c in chains] == [
        f"{__name__}.Row object <- list (len 30) (item) <- held by class attribute "
        f"{__name__}.Table.rows"
    ]


def test_a_lensbook_ring_is_never_the_root() -> None:
    # each order is also in events of a lensbook ring held by a module global: still the
    # user's class attribute is named, not the ring nor the global that holds it
    orders = [Order() for _ in range(30)]
    OrderBook.orders.extend(orders)
    gc.collect()
    for i in range(len(orders)):
        HISTORY.add(HistoryEvent("e", time.time(), "order", "test", {"order": orders[i]}))
    del orders
    try:
        chains = _chains(f"{__name__}.Order", samples=4)
    finally:
        HISTORY.clear()
        OrderBook.orders.clear()
    assert [c["chain"] for c in chains] == [
        f"{__name__}.Order object <- list (len 30) (item) <- held by class attribute "
        f"{__name__}.OrderBook.orders"
    ]


def test_the_largest_growing_containers_are_never_the_toolings_own() -> None:
    # linecache.cache and a lensbook ring both grow past the program's own cache: neither is
    # offered as the growing container (nor its holder as the root); the program's is
    skill = MemorySkill()
    skill.largest_containers(baseline=True)
    for i in range(30_000):
        key = f"<lensbook-cell-{i}>"
        linecache.cache[key] = (1, None, ["pass\n"], key)
    ring = HistoryRing(caps={"order": 30_000})
    for i in range(30_000):
        ring.add(HistoryEvent("e", float(i), "order", "test", {}))
    SessionRegistry.open_sessions.extend(Session() for _ in range(20_000))
    try:
        found = undelimit(json.loads(render_output(skill.largest_containers(top=5), 100_000)))
    finally:
        for i in range(30_000):
            linecache.cache.pop(f"<lensbook-cell-{i}>", None)
        ring.clear()
        SessionRegistry.open_sessions.clear()
    first = found["containers"][0]
    assert first["type"] == "list" and first["len"] == 20_000, found["containers"]
    assert first["held_by"].endswith(
        f"held by class attribute {__name__}.SessionRegistry.open_sessions"
    )
    assert not any(c["len"] >= 30_000 for c in found["containers"]), found["containers"]
    assert "linecache" not in json.dumps(found)


class _Registry(dict[int, list[int]]):
    """A dict subclass whose own methods are the program's code: probes never call them."""

    called: ClassVar[list[str]] = []

    def values(self) -> Any:
        _Registry.called.append("values")
        return super().values()

    def items(self) -> Any:
        _Registry.called.append("items")
        return super().items()

    def __len__(self) -> int:
        _Registry.called.append("__len__")
        return 1  # a lie a probe would pass on

    def __sizeof__(self) -> int:
        _Registry.called.append("__sizeof__")
        return 1

    def __iter__(self) -> Any:
        _Registry.called.append("__iter__")
        return super().__iter__()


def test_probes_read_a_dict_subclass_without_its_own_methods() -> None:
    registry = _Registry((i, [i]) for i in range(60_000))  # the largest container
    _Registry.called.clear()
    try:
        skill = MemorySkill(budget_scale=5.0)
        skill.census(top=3)  # the census keeps the longest containers too
        found = skill.largest_containers(top=3)
    finally:
        registry.clear()
    rows = undelimit(json.loads(render_output(found, 100_000)))["containers"]
    (row,) = [r for r in rows if r["type"].endswith("_Registry")]
    assert row.get("value_types") and row["len"] == 60_000, rows
    assert row["kb"] > 1000  # dict's own size, not the subclass's answer
    assert _Registry.called == []


class ShiftyEntry:
    pass


class Shifty:
    """An object that holds the growing list and runs code when asked who it is (a lazy proxy's
    ``__class__``, an ORM's ``__getattribute__``): a chain through it runs none of that."""

    called: ClassVar[list[str]] = []

    def __init__(self) -> None:
        self.entries = [ShiftyEntry() for _ in range(40)]

    @property  # type: ignore[misc]
    def __class__(self) -> type:
        Shifty.called.append("__class__")
        return dict

    def __getattribute__(self, name: str) -> Any:
        if not name.startswith("__"):
            Shifty.called.append(name)
        return object.__getattribute__(self, name)


SHIFTY: list[Shifty] = []


def test_a_chain_through_an_object_that_lies_about_its_class_runs_none_of_its_code() -> None:
    SHIFTY.append(Shifty())
    Shifty.called.clear()
    try:
        (chain,) = _chains("ShiftyEntry", samples=1)
    finally:
        SHIFTY.clear()
    assert Shifty.called == []
    assert "Shifty object .entries" in chain["chain"], chain
    assert chain["chain"].endswith("SHIFTY"), chain


class _UnhashableMeta(type):
    def __eq__(cls, other: object) -> bool:
        return cls is other

    __hash__ = None  # type: ignore[assignment]


class _Batch(list[int], metaclass=_UnhashableMeta):
    pass


def test_a_container_whose_class_cannot_be_hashed_is_walked_like_any_other() -> None:
    batch = _Batch(range(70_000))  # the largest container; hashing its class raises
    try:
        found = MemorySkill(budget_scale=5.0).largest_containers(top=3)
    finally:
        batch.clear()
    rows = undelimit(json.loads(render_output(found, 100_000)))["containers"]
    assert [r["len"] for r in rows if r["type"].endswith("_Batch")] == [70_000], rows


class _Recording(type):
    """A metaclass that records every question its classes would answer with its code."""

    called: ClassVar[list[str]] = []

    def __hash__(cls) -> int:
        _Recording.called.append("__hash__")
        return id(cls)

    def __eq__(cls, other: object) -> bool:
        _Recording.called.append("__eq__")
        return cls is other

    def __getattribute__(cls, name: str) -> Any:
        if name in ("__module__", "__qualname__", "__name__", "__mro__", "__dict__"):
            _Recording.called.append(name)
        return type.__getattribute__(cls, name)


class _Watched(metaclass=_Recording):
    def __del__(self) -> None:
        pass


class _WatchedLeaf:
    pass


class _WatchedHolder(metaclass=_Recording):
    """An instance of a recording class in the chain: its class is asked nothing either."""

    def __init__(self) -> None:
        self.leaves = [_WatchedLeaf() for _ in range(50)]


WATCHED: list[_Watched] = []
HOLDERS: list[_WatchedHolder] = []


class _ClassProxy:
    """A lazy proxy to a class (wrapt's ObjectProxy, werkzeug's LocalProxy): it says it is
    one when asked for its ``__class__``."""

    @property  # type: ignore[misc]
    def __class__(self) -> type:
        return type


PROXIED = _ClassProxy()  # a module global: type growth looks the grown names up among them


def test_type_growth_is_not_fooled_by_a_module_global_that_poses_as_a_class() -> None:
    skill = MemorySkill(budget_scale=5.0)
    skill.census(top=5)
    WATCHED.extend(_Watched() for _ in range(3_000))
    try:
        growth = undelimit(json.loads(render_output(skill.type_growth(top=50), 100_000)))
    finally:
        WATCHED.clear()
    assert "_Watched" in json.dumps(growth), growth


def test_heap_walks_over_classes_of_a_recording_metaclass_run_none_of_its_code() -> None:
    from lensbook.skills.gc_ import GCSkill
    from lensbook.skills.process import _open_handles

    WATCHED.extend(_Watched() for _ in range(3_000))
    HOLDERS.append(_WatchedHolder())
    _Recording.called.clear()
    try:
        skill = MemorySkill(budget_scale=5.0)
        census = undelimit(json.loads(render_output(skill.census(top=200), 100_000)))
        WATCHED.extend(_Watched() for _ in range(3_000))
        growth = undelimit(json.loads(render_output(skill.type_growth(top=50), 100_000)))
        chains = _chains("_Watched", samples=1)
        (through_holder,) = _chains("_WatchedLeaf", samples=1)
        finalizers = GCSkill().finalizer_types(top=30)
        _open_handles("file")
        called = list(_Recording.called)
    finally:
        WATCHED.clear()
        HOLDERS.clear()
    assert called == []
    assert "_WatchedHolder" in through_holder["chain"], through_holder
    assert "_Watched" in json.dumps(growth), growth
    assert any(r["type"].endswith("_Watched") and r["count"] >= 3_000 for r in census["top"])
    assert chains and chains[0]["chain"].endswith("WATCHED"), chains
    rows = undelimit(json.loads(render_output(finalizers, 100_000)))["types"]
    assert any(r["type"].endswith("_Watched") for r in rows), rows


def test_the_key_of_a_dict_that_keeps_changing_is_never_another_key() -> None:
    # a FIFO cache another thread evicts from and adds to: keys and values copied apart
    # paired a value with the wrong key in most calls
    held = object()
    cache: dict[str, object] = {f"k{i}": object() for i in range(200_000)}
    cache["THE_KEY"] = held
    stop = threading.Event()

    def churn() -> None:
        n = 200_000
        while not stop.is_set():
            oldest = next(iter(cache))
            if oldest != "THE_KEY":
                del cache[oldest]
            cache[f"k{n}"] = object()
            n += 1

    worker = threading.Thread(target=churn, daemon=True)
    interval = sys.getswitchinterval()
    sys.setswitchinterval(1e-5)  # the churn runs between any two of the probe's C calls
    worker.start()
    try:
        found = [_key_of(cache, held) for _ in range(40)]
    finally:
        stop.set()
        worker.join(10)
        sys.setswitchinterval(interval)
    assert found and all(f == ("THE_KEY", True) for f in found), set(map(str, found))
