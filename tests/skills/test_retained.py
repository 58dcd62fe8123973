"""Attribution by retention root: what a root gains during short tracing bursts of its own,
grouped by the user's line that allocated it, for roots of any kind (a module global, an
lru_cache) and without running the user's code."""

from __future__ import annotations

import collections
import functools
import gc
import json
import threading
import time
import tracemalloc
import weakref
from collections.abc import Callable, Iterator
from typing import Any

import pytest

from lensbook.skills import intrusion
from lensbook.skills._retained import Reached, Watch
from lensbook.skills.base import render_output
from lensbook.skills.memory import MemorySkill
from lensbook.skills.untrusted import undelimit
from tests.skills.test_memory import _line_of

_STORE: dict[int, Any] = {}
#: calls into the user's code that the walk must never make
_CALLED: list[str] = []


class Reading:
    """A user object whose special methods say when something calls them."""

    def __init__(self, key: int) -> None:
        self.key = key
        self.samples = bytearray(32 * 1024)  # the reading's samples

    def __sizeof__(self) -> int:
        _CALLED.append("__sizeof__")
        return 0

    def __eq__(self, other: object) -> bool:
        _CALLED.append("__eq__")
        return self is other

    def __hash__(self) -> int:
        _CALLED.append("__hash__")
        return id(self)

    def __repr__(self) -> str:
        _CALLED.append("__repr__")
        return "Reading"

    def __getattr__(self, name: str) -> Any:
        _CALLED.append(f"__getattr__ {name}")
        raise AttributeError(name)


def _store(key: int) -> None:
    _STORE[key] = Reading(key)


@functools.cache
def _load(key: int) -> Reading:
    return Reading(key)


def _probe(skill: MemorySkill, name: str, **arguments: Any) -> Any:
    tool = {t.name: t for t in skill.probes()}[f"memory_{name}"]
    return undelimit(json.loads(render_output(tool.fn(**tool.validate(arguments)), tool.max_chars)))


@pytest.fixture
def leaking() -> Iterator[Callable[[Callable[[int], object]], None]]:
    """Start a thread that calls a leaking function every 20 ms until the test ends."""
    stop = threading.Event()
    threads: list[threading.Thread] = []

    def start(leak: Callable[[int], object]) -> None:
        def serve() -> None:
            key = 0
            while not stop.wait(0.02):
                leak(key)
                key += 1

        thread = threading.Thread(target=serve, name="retained-leak", daemon=True)
        threads.append(thread)
        thread.start()

    yield start
    stop.set()
    for thread in threads:
        thread.join(10)
    _STORE.clear()
    _load.cache_clear()
    _CALLED.clear()


def _retained(skill: MemorySkill) -> dict[str, Any]:
    """As the rule does: a default window and its diff while the leak runs, then Reading
    followed to its root, then what the root gains attributed."""
    assert not tracemalloc.is_tracing()
    _probe(skill, "trace_start", frames=6)
    try:
        _probe(skill, "allocation_diff")  # closes the window
        found = _probe(skill, "referrers", type_name="Reading")
        assert found.get("retention_watch"), found
        result = dict(_probe(skill, "retained_sites"))
        assert not tracemalloc.is_tracing()  # its own burst is over
        # and the next window rests first, so tracing keeps its duty
        assert _probe(skill, "trace_start", frames=6)["tracing"]
        assert not tracemalloc.is_tracing()
        return result
    finally:
        skill.close()
        assert not tracemalloc.is_tracing()


@pytest.mark.parametrize(
    ("leak", "root"),
    [
        (_store, f"module global {__name__}._STORE"),
        (_load, f"the cache of @functools.lru_cache {__name__}._load"),
    ],
)
def test_what_a_root_gains_is_blamed_on_the_users_allocating_line(
    leaking: Callable[[Callable[[int], object]], None],
    leak: Callable[[int], object],
    root: str,
) -> None:
    leaking(leak)
    # the first readings exist before the window (a loaded machine may start the leaking
    # thread late: then referrers found no Reading at all)
    deadline = time.monotonic() + 30
    while len(_STORE) + _load.cache_info().currsize < 2:
        assert time.monotonic() < deadline, "the leaking thread never ran"
        time.sleep(0.01)
    skill = MemorySkill(budget_scale=10.0)  # the default duty: tracing in bursts
    assert skill.trace_duty < 1.0
    result = _retained(skill)
    assert result["root"] == root
    assert result["new_members"] >= 2
    site = result["sites"][0]
    assert site["site"] == f"tests/skills/test_retained.py:{_line_of('# the reading', Reading)}"
    assert site["function"] == "Reading.__init__"
    assert site["origin"] == "user"
    assert float(site["kb"]) >= 2 * 32  # at least the two new members' samples
    assert _CALLED == []  # no special method of the user's objects ran


def test_the_walk_counts_only_what_was_allocated_while_tracing_and_runs_no_user_code() -> None:
    before = Reading(-1)  # allocated before tracing: walked through, never counted
    tracemalloc.start(4)
    try:
        after = Reading(1)
        reached = Reached.walk([[before, after]], 1e12)
    finally:
        tracemalloc.stop()
    traces, walked, partial = reached.traces(), reached.walked, reached.partial
    sizes = sorted(size for _, size, _, _ in traces)
    assert not partial and walked >= 5
    assert sizes[-1] >= 32 * 1024  # after's samples, with their own size
    assert not any(size >= 32 * 1024 for size in sizes[:-1])  # before's are not counted
    assert _CALLED == []


@pytest.mark.parametrize("kind", [dict, collections.OrderedDict, list, collections.deque, set])
def test_a_watch_finds_what_a_large_root_gained_and_only_that(kind: type) -> None:
    """A root of many members (a cache of 50,000 entries): the watch notes it before tracing
    and finds its new members at its end (dicts, lists, deques) or by id (sets)."""
    members = range(50_000)
    root: Any = kind((i, i) for i in members) if issubclass(kind, dict) else kind(members)
    watch = Watch("root", root)
    watch.begin()
    tracemalloc.start(4)
    try:
        new = [Reading(-1), Reading(-2)]
        for i, reading in enumerate(new):
            if isinstance(root, dict):
                root[f"new {i}"] = reading
            elif isinstance(root, set):
                root.add(reading)
            else:
                root.append(reading)
        _CALLED.clear()  # the set hashed the readings as the test added them: not the watch
        assert watch.finished()
        watch.collect(time.perf_counter() + 60)
    finally:
        tracemalloc.stop()
    watch.settle()  # the traces are read while tracing is on, made after it stopped
    assert watch.new_members == 2
    sizes = sorted(size for _, size, _, _ in watch.traces)
    # the two new readings' samples, none of the old members (allocated before tracing)
    assert [size >= 32 * 1024 for size in sizes].count(True) == 2, sizes[-5:]
    assert watch.walked < 100, watch.walked
    assert _CALLED == []


class Sample:
    """An object kept only by a root the test lets go of."""


class Kept:
    """An object kept only by a plain dict (which takes no weak reference)."""


#: a root whose type takes weak references
_SAMPLES: collections.OrderedDict[int, Sample] = collections.OrderedDict()
#: a root whose type does not
_KEPT: dict[int, Kept] = {}


def _held_by_lensbook(obj: object) -> bool:
    """Whether an object of lensbook's refers to `obj` (a hold, strong by nature)."""
    return any(type(r).__module__.startswith("lensbook.") for r in gc.get_referrers(obj))


def test_a_pending_watch_does_not_keep_a_root_the_program_let_go_of() -> None:
    global _SAMPLES
    _SAMPLES.update((i, Sample()) for i in range(20))
    skill = MemorySkill(budget_scale=10.0)
    try:
        found = _probe(skill, "referrers", type_name=f"{__name__}.Sample")
        assert found["retention_watch"] == f"module global {__name__}._SAMPLES"
        root = weakref.ref(_SAMPLES)
        _SAMPLES = collections.OrderedDict()  # the program drops its root
        gc.collect()
        assert root() is None  # the watch still pending did not keep it alive
        result = _probe(skill, "retained_sites")
        assert result["root"] == f"module global {__name__}._SAMPLES"
        assert "freed" in result["note"]
        assert not tracemalloc.is_tracing()  # nothing to trace for a root that is gone
    finally:
        skill.close()


def test_a_root_held_strongly_is_let_go_when_its_burst_ends_and_at_close() -> None:
    _KEPT.update((i, Kept()) for i in range(20))
    skill = MemorySkill(budget_scale=10.0)
    try:
        found = _probe(skill, "referrers", type_name=f"{__name__}.Kept")
        assert found["retention_watch"] == f"module global {__name__}._KEPT"
        assert _held_by_lensbook(_KEPT)  # a dict takes no weak reference: held till the burst
        # the root never grows: the burst lasts its cap, then ends
        result = _probe(skill, "retained_sites")
        assert result["new_members"] == 0 and result["sites"] == []
        assert not _held_by_lensbook(_KEPT)
        # a watch never used is let go by close()
        _probe(skill, "referrers", type_name=f"{__name__}.Kept")
        assert _held_by_lensbook(_KEPT)
        skill.close()
        assert not _held_by_lensbook(_KEPT)
    finally:
        skill.close()
        _KEPT.clear()


def test_a_strong_hold_never_used_is_let_go_when_the_run_that_made_it_ends() -> None:
    # a model that calls memory_referrers and then done (or is stopped, or times out) must not
    # leave the program's dict held: the run's end drains the ledger entry of the hold
    _KEPT.update((i, Kept()) for i in range(20))
    skill = MemorySkill(budget_scale=10.0)
    try:
        with intrusion.run_scope("run-retention-test"):
            found = _probe(skill, "referrers", type_name=f"{__name__}.Kept")
        assert found["retention_watch"] == f"module global {__name__}._KEPT"
        assert _held_by_lensbook(_KEPT)
        assert [c.name for c in intrusion.active()] == ["retention watch"]
        assert intrusion.undo_owned_by("run-retention-test") == 1
        assert not _held_by_lensbook(_KEPT)
        assert "no root to watch" in _probe(skill, "retained_sites")["note"]
    finally:
        skill.close()
        _KEPT.clear()


def test_under_the_programs_own_tracing_one_burst_and_no_earlier_member_are_walked() -> None:
    """The process traces already: its traces outlive a burst, so a second burst, or the
    member before the burst's, would count old allocations (again)."""
    skill = MemorySkill()
    try:
        for key in range(3):
            _store(key)
        # (the referrer walk before the process traces: traced, it is slower in a big heap)
        found = _probe(skill, "referrers", type_name="Reading")
        assert found.get("retention_watch") == f"module global {__name__}._STORE", found
        tracemalloc.start(4)
        _store(3)  # the root's last member, allocated under the process's tracing
        result = _probe(skill, "retained_sites")
        assert tracemalloc.is_tracing()  # the process's tracing is left on
    finally:
        tracemalloc.stop()
        skill.close()
        _STORE.clear()
        _CALLED.clear()
    assert result["bursts"] == 1, result
    assert result["new_members"] == 0 and result["traced_objects"] == 0, result


def test_no_window_opens_while_a_retention_call_still_bursts() -> None:
    """A call that ran past its budget goes on bursting: a window opened meanwhile would
    overlap its bursts, and a diff would report its 16-frame burst as the program's."""
    skill = MemorySkill()
    skill._retaining = True  # as while a call bursts
    try:
        opened = _probe(skill, "trace_start", frames=6)
        assert "tracing" not in opened and opened["retry_after_s"] > 0, opened
        assert not tracemalloc.is_tracing()
        diff = _probe(skill, "allocation_diff")
        assert "retry_after_s" in diff and "sites" not in diff, diff
    finally:
        skill._retaining = False
        skill.close()
    assert _probe(skill, "trace_start", frames=6)["tracing"]
    skill.close()
    assert not tracemalloc.is_tracing()
