"""The `memory` skill: where memory goes, what grows, and what keeps it alive.

The snapshot is cheap (RSS, pymalloc blocks, tracemalloc totals). Deep probes run on demand: a
tracemalloc window that the investigation opens and closes itself (1 frame by default), a diff
of that window ranked by allocation site, type censuses and their growth, the largest containers
and who holds them, and the referrer chain that keeps a type alive. When that chain ends at a
root (a registry, a cache, a module global), short tracing bursts watch the root and
attribute what it gains (`lensbook.skills._retained`).

Heap walks hold the GIL and grow with the heap (a census is ~90 ms per million tracked objects),
so every walking probe checks a deadline as it goes and answers with what it has when time runs
out (``"partial": true``) instead of overrunning its budget.
"""

from __future__ import annotations

import builtins
import dataclasses
import functools
import gc
import heapq
import itertools
import json
import operator
import random
import re
import sys
import threading
import time
import tracemalloc
import types
from collections import Counter, deque
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field
from itertools import compress, repeat
from operator import attrgetter, gt, is_, itemgetter
from typing import Any, ClassVar, TypeVar

import psutil

from lensbook.sampling import store as metrics_store
from lensbook.skills import _heap, intrusion
from lensbook.skills._frames import attribute, function_at, short_path, where
from lensbook.skills._frames import code_site as _code_site
from lensbook.skills._frames import origin as frames_origin
from lensbook.skills._frames import type_name as _type_name
from lensbook.skills._frames import type_names as _type_names
from lensbook.skills._frames import type_origin as _type_origin
from lensbook.skills._frames import type_site as _type_site
from lensbook.skills._heap import Pacer
from lensbook.skills._retained import RawTrace, Watch, container_of
from lensbook.skills._roots import (
    fix_for,
    global_root,
    is_tooling,
    is_tooling_module,
    known_root,
)
from lensbook.skills._rss import (
    NATIVE_RECHECK_S,
    NATIVE_RECHECK_SHARE,
    Growth,
    PythonShare,
    python_share,
    rss_growth,
)
from lensbook.skills._stacks import source_line
from lensbook.skills._static import (
    TypeCount,
    container_base,
    is_own_dict,
    slot_values,
    stored_attr,
    stored_attrs,
    stored_len,
    stored_members,
    stored_size,
)
from lensbook.skills._trend import slope as _least_squares
from lensbook.skills._trend import steady_rise, summary
from lensbook.skills.base import Skill, outgoing, probe
from lensbook.skills.history_metrics import RssSinceLoad
from lensbook.skills.redact import clip
from lensbook.skills.rules import Chain, Evidence, Finding, ProbeCall, Rule, as_dict
from lensbook.skills.untrusted import mark_fields

__all__ = ["LeakRule", "MemorySkill"]

_MB = 2**20
_KB = 1024


RawFrame = tuple[str, int]
RawTraceback = tuple[RawFrame, ...]
_K = TypeVar("_K")

# -- where a frame comes from: lensbook.skills._frames decides ----------------------------------

_origin = frames_origin
_short_path = short_path
_where = where


def _fit(rows: list[Any], budget: int = 4000) -> tuple[list[Any], int]:
    """The first rows whose JSON fits in `budget` characters, and how many were left out.

    Output is cut at whole rows so it stays valid JSON under the probe's cap (a truncated
    answer would not parse). Rows are measured as they will leave: redacted, process text
    delimited.
    """
    used = 0
    for i, row in enumerate(rows):
        used += len(json.dumps(outgoing(row), default=str, ensure_ascii=False)) + 1
        if used > budget:
            return rows[:i], len(rows) - i
    return rows, 0


# -- tracemalloc --------------------------------------------------------------------------------


@dataclass
class _SiteStat:
    size: int = 0
    count: int = 0
    #: the traceback that contributed most to this site, most recent frame first
    traceback: RawTraceback = ()
    traceback_size: int = 0

    def add(self, size: int, count: int, tb: RawTraceback, tb_size: int) -> None:
        self.size += size
        self.count += count
        if tb_size > self.traceback_size:
            self.traceback, self.traceback_size = tb, tb_size


@dataclass
class _Grouped:
    sites: dict[RawFrame, _SiteStat] = field(default_factory=dict)
    #: bytes left out by origin (lensbook's own machinery, module imports)
    excluded: dict[str, int] = field(default_factory=dict)
    total: int = 0
    #: 1 when every block was counted, n when one in n was (a random sample, sums scaled)
    stride: float = 1.0
    #: the deadline passed before every (sampled) block was counted
    partial: bool = False
    #: library-only tracebacks cut short by the frame limit before reaching the user's code
    #: (see `_resolved`)
    cut: dict[RawTraceback, _SiteStat] = field(default_factory=dict)
    #: library frames seen below a user frame: user site -> [bytes through it, a traceback]
    callers: dict[RawFrame, dict[RawFrame, list[Any]]] = field(default_factory=dict)


def _site_of(tb: RawTraceback) -> tuple[RawFrame | None, str]:
    """The frame to blame for an allocation: the first frame in the user's code (the library
    frames below it are the detail kept in the site's traceback), else the innermost library
    frame. With a 1-frame traceback that is the allocating frame itself. Returns (None, origin)
    when the allocation belongs to lensbook or to module imports, which are left out.
    """
    if not tb:
        return None, "unknown"
    site, _ = attribute(tb)
    if site is None:
        first = _origin(tb[0][0])
        return None, first if first in ("lensbook", "import") else "lensbook"
    return site, _origin(site[0])


def _raw_traces(snap: tracemalloc.Snapshot) -> Sequence[tuple[int, int, RawTraceback, int]]:
    # The list behind the public Sequence: reading it directly avoids building one Trace and
    # one Traceback object per block, which is what makes compare_to slow at a million blocks.
    raw = getattr(snap.traces, "_traces", None)
    if isinstance(raw, list):
        return raw
    return [
        (t.domain, t.size, tuple((f.filename, f.lineno) for f in reversed(list(t.traceback))), 0)
        for t in snap.traces
    ]


def _group(snap: tracemalloc.Snapshot, deadline: float, max_traces: int | None = None) -> _Grouped:
    """Sizes and counts of a snapshot's live traced blocks, by blamed site (`_group_traces`)."""
    return _group_traces(_raw_traces(snap), deadline, max_traces)


def _group_traces(
    raw: Sequence[RawTrace], deadline: float, max_traces: int | None = None
) -> _Grouped:
    """Sizes and counts of traced blocks, by blamed site (see `_site_of`).

    Past `max_traces` blocks, a random sample of about that many is counted and the sums scaled
    up: while tracing is on, this very pass is traced too and runs ~10x slower, so a process
    that traces millions of blocks gets an estimate in time rather than an exact answer too
    late. The sample is random, not every n-th block: blocks come in hash-table order, which
    follows addresses, and a regular stride aliases with the allocator's regular layout. Each
    block is kept with the same chance, drawn from random bytes in C-level passes: choosing
    exact indices in Python cost as much as the count itself, and every int it made was traced.
    """
    stride = 1.0
    picked: Sequence[RawTrace] = raw
    if max_traces and len(raw) > max_traces:
        # keep a block when its random byte is below `below`: a chance of below/256 each
        below = min(max(round(256 * max_traces / len(raw)), 1), 255)
        picked = list(itertools.compress(raw, map(below.__gt__, random.randbytes(len(raw)))))
        stride = len(raw) / max(len(picked), 1)
    by_tb: dict[int, list[Any]] = {}
    scanned = 0
    pace = Pacer()
    for start in range(0, len(picked), 16384):
        pace()
        if time.perf_counter() > deadline:
            break
        chunk = picked[start : start + 16384]
        # tracemalloc hands out one tuple per distinct traceback, so keying by id is exact
        # (every tuple stays alive in `raw`) and cheaper than hashing nested tuples
        for _domain, size, tb, nframe in chunk:
            entry = by_tb.get(id(tb))
            if entry is None:
                by_tb[id(tb)] = [tb, size, 1, nframe]
            else:
                entry[1] += size
                entry[2] += 1
        scanned += len(chunk)
    grouped = _Grouped(total=len(raw), stride=stride, partial=scanned < len(picked))
    for tb, size, count, nframe in by_tb.values():
        size, count = round(size * stride), round(count * stride)
        site, kind = _site_of(tb)
        if site is None:
            grouped.excluded[kind] = grouped.excluded.get(kind, 0) + size
            continue
        if kind != "user" and nframe > len(tb):
            # the stack went on past the frame limit (tracemalloc counts the frames it did not
            # keep): the user's line may be further out, so the blame waits for `_resolved`
            grouped.cut.setdefault(tb, _SiteStat()).add(size, count, tb, size)
            continue
        grouped.sites.setdefault(site, _SiteStat()).add(size, count, tb, size)
        if kind != "user":
            continue
        for frame in tb[: tb.index(site)]:
            seen = grouped.callers.setdefault(frame, {}).setdefault(site, [0, tb])
            seen[0] += size
    return grouped


def _resolved(grouped: _Grouped) -> _Grouped:
    """The sums with every cut traceback blamed: on the user's line seen calling through its
    outermost kept frame (in any traceback of the window that reached the user's code; the
    line that sent the most bytes through it when several did), else on its library site as
    before. A leak allocated deeper in a library than the frame limit (matplotlib's ax.plot
    makes its arrays 10-15 frames down) is so blamed on the user's call, like a shallow one.
    """
    sites = {site: dataclasses.replace(stat) for site, stat in grouped.sites.items()}
    for tb, cut in grouped.cut.items():
        callers = grouped.callers.get(tb[-1])
        if callers:
            site, (_, example) = max(callers.items(), key=lambda kv: int(kv[1][0]))
            sites.setdefault(site, _SiteStat()).add(cut.size, cut.count, example, cut.size)
        else:
            library, _ = _site_of(tb)
            if library is not None:
                sites.setdefault(library, _SiteStat()).add(cut.size, cut.count, tb, cut.size)
    return dataclasses.replace(grouped, sites=sites, cut={}, callers={})


def _wants_depth(burst: _Grouped, callers: dict[RawFrame, Any]) -> bool:
    """Whether a fifth or more of what one burst still held (and at least `DEEP_MIN_BYTES`)
    was cut short inside a library where no traceback seen so far links it to the user's code.
    """
    held = sum(s.size for s in burst.sites.values()) + sum(s.size for s in burst.cut.values())
    unresolved = sum(s.size for tb, s in burst.cut.items() if tb[-1] not in callers)
    return unresolved >= max(DEEP_MIN_BYTES, held / 5)


#: blocks counted one by one while tracing is still on (past that, a sample; see `_group`)
_TRACED_PASS_MAX = 200_000


#: while lensbook owns the window, tracemalloc is on in bursts of this long...
TRACE_BURST_S = 0.025
#: ...for this share of the window by default (see `MemorySkill(trace_duty=...)`)
DEFAULT_TRACE_DUTY = 0.1
#: frames kept by a burst that follows one whose held bytes were mostly cut short by the frame
#: limit inside a library (~1.6x the cost per traced allocation of 6 frames)...
DEEP_FRAMES = 16
#: ...when those bytes were at least this many (and a fifth of the burst's): ~1.3 MB a traced
#: second, whatever the bursts' length
DEEP_MIN_BYTES = round(1.3e6 * TRACE_BURST_S)
#: the longest tracing window a model can open
MAX_TRACE_SECONDS = 60.0
#: the longest one retention burst (see `_retained.Watch`) traces, waiting for the root to
#: gain two members: deep tracing makes every allocation of the program's threads many times
#: dearer meanwhile (a busy main thread makes next to no progress), so a burst is short, and
#: one chunk of the program's work overlaps at most one burst and its walk (the bound
#: `benchmarks/bench_host_cost.py` measures: 3x a chunk's time at worst)...
RETENTION_BURST_MAX_S = 0.1
#: ...and a call takes at most this many bursts. A fast leak gains its two members in the
#: first; a slow one (a figure per plotted request, each ~0.26 s to draw with 16 frames
#: traced) is sampled: each burst walks what the members it added hold (the first, under
#: lensbook's own tracing, the member being filled when it began too), and their traces add up
RETENTION_BURSTS = 8
#: between two bursts of one call, a rest this many times as long as the last traced (chunks
#: of the program's work overlap one burst at most); after the call, the next tracing waits
#: out what is left of the duty's rest (`trace_duty`), so the share traced stays the duty's
RETENTION_BURST_REST = 3.0
#: what memory_trace_start and memory_allocation_diff answer while a memory_retained_sites
#: call is still bursting (one that ran past its budget goes on)
_RETAINING_NOTE: dict[str, Any] = {
    "note": "memory_retained_sites is still tracing its root in bursts: open a window once it "
    "has answered",
    "retry_after_s": round(RETENTION_BURSTS * (1 + RETENTION_BURST_REST) * 0.15, 1),
}
#: how long the walk below a burst's members may take (tracing still on, so it is not
#: paced: a rest would keep the program's allocations traced for longer)
RETENTION_WALK_S = 0.05
#: how long a pending retention watch may hold its root strongly (a dict or list: no weak
#: reference) when no run owns it; a run's end releases it sooner, whatever ended the run
RETENTION_HOLD_MAX_S = 60.0


@dataclass
class _TraceWindow:
    """A tracemalloc window opened by this skill (or joined, when the user was tracing).

    An owned window with a duty below 1 is traced in bursts: a ``lensbook-tracemalloc-window``
    thread starts tracing, waits `TRACE_BURST_S`, takes a snapshot (small: only the burst's
    surviving blocks), stops tracing and adds the snapshot's sites to `sampled`, then rests.
    tracemalloc has no pause and `stop()` drops its traces, so bursts are the only way to
    bound its cost (x8 per allocation with 1 frame) to a share of the window.
    """

    started_at: float
    frames: int
    owned: bool
    #: per-site sizes and counts when the window opened (only when joining the user's tracing)
    baseline: dict[RawFrame, tuple[int, int]] = field(default_factory=dict)
    duty: float = 1.0
    #: what the bursts found so far (sizes of blocks still alive at each burst's end)
    sampled: _Grouped = field(default_factory=_Grouped)
    traced_s: float = 0.0
    bursts: int = 0
    ended_by: str | None = None
    ended_at: float | None = None
    stop: threading.Event = field(default_factory=threading.Event)
    lock: threading.Lock = field(default_factory=threading.Lock)
    cycler: threading.Thread | None = None
    change: intrusion.Change | None = None
    #: the `_heap.burst_begins` token of the burst under way (the cycler's, once it runs)
    burst: int | None = None
    #: a bursting window's watch of the program's full collections (its bursts wait their
    #: turn after one, as after a stall of lensbook's), ended with the window
    unwatch: Callable[[], None] | None = None
    #: RSS (KB) when the burst under way began; what RSS gained during the bursts, and what
    #: the bursts' traced blocks still held at their ends (`_rss.python_share` weighs the two)
    burst_rss_kb: float | None = None
    rss_gained_kb: float = 0.0
    held_kb: float = 0.0

    @property
    def bursting(self) -> bool:
        return self.owned and self.duty < 1.0

    def end(self, reason: str) -> None:
        """Stop tracing (if lensbook started it). Called through the intrusion ledger, from
        any thread; takes no skill lock, so a run's end never waits for a running probe."""
        if self.ended_by is None:
            self.ended_by = reason
        self.stop.set()
        cycler = self.cycler
        try:
            if cycler is not None and cycler.is_alive():
                if cycler is not threading.current_thread():
                    cycler.join(5.0)  # it ends its burst (snapshot, stop) within ~0.1 s
            elif self.owned and tracemalloc.is_tracing():
                tracemalloc.stop()  # a whole-window trace, or a first burst never handed over
        finally:  # (a Ctrl-C in the join: the change is undone once, never again)
            if cycler is None or not cycler.is_alive():
                # a first burst never handed over (a cycler still alive ends its own burst)
                _heap.burst_ends(self.burst)
            if self.unwatch is not None:
                self.unwatch()
            if self.ended_at is None:
                self.ended_at = time.time()

    def _claim_burst(self, force: bool = False) -> bool | None:
        """Before the cycler starts a burst: True to start it (its token in `burst`), None
        while a listing of the heap is alive (not with `force`: rest and try again), False
        when the process traces itself (before or while the claim waited: not ours to stop)."""
        if not tracemalloc.is_tracing():
            self.burst = _heap.burst_begins(force=force)
            if self.burst is None:
                return None
            if not tracemalloc.is_tracing():
                return True
        self.ended_by = self.ended_by or "the process started tracing itself"
        return False

    def cycle(self, began: float, first_rest: float = 0.0) -> None:
        """The bursts of an owned window until `stop` is set; the first began at `began`, or
        begins after `first_rest` (tracing then still off: a retention burst is being rested).

        A burst ends when this thread gets the GIL back, which a long C call in another thread
        (a pandas conversion, a big sort) or a saturated machine can delay well past
        `TRACE_BURST_S`; the rest after each burst is sized on how long it really traced, so
        the traced share of the window stays `duty` whatever the overrun.
        """
        deep = False
        try:
            if first_rest > 0:
                if self.stop.wait(first_rest) or not self._claim_burst(force=True):
                    return
                began = time.perf_counter()
                self.burst_rss_kb = _rss_kb()
                tracemalloc.start(self.frames)
            while True:
                gained = held = 0.0
                try:
                    self.stop.wait(max(began + TRACE_BURST_S - time.perf_counter(), 0.0))
                    # what the burst's blocks hold, and what RSS gained meanwhile (before the
                    # snapshot, which is lensbook's own memory)
                    held = tracemalloc.get_traced_memory()[0] / _KB
                    now_kb = _rss_kb()
                    if self.burst_rss_kb is not None and now_kb is not None:
                        # signed: a busy heap's frees in one burst offset the pages its
                        # arrays fill in another (a page is resident when first written,
                        # often after the burst that allocated it)
                        gained = now_kb - self.burst_rss_kb
                    snap = tracemalloc.take_snapshot()
                except RuntimeError:  # tracing was stopped meanwhile (a run's end, its expiry)
                    snap = None
                finally:
                    tracemalloc.stop()
                    _heap.burst_ends(self.burst)
                if snap is None:
                    self.ended_by = self.ended_by or "tracing was stopped during a burst"
                    return
                traced = time.perf_counter() - began
                grouped = _group(snap, time.perf_counter() + 1.0, _TRACED_PASS_MAX)
                del snap
                with self.lock:
                    _merge(self.sampled, grouped)
                    self.traced_s += traced
                    self.bursts += 1
                    self.rss_gained_kb += gained
                    self.held_kb += held
                    # beyond the frame limit with no user frame kept, and no traceback so far
                    # shows whose call leads there: the next burst keeps more frames to see it
                    # (never two in a row: they cost more per allocation)
                    wants_depth = _wants_depth(grouped, self.sampled.callers)
                frames = self.frames
                if frames > 1 and not deep and wants_depth:
                    frames = max(frames, DEEP_FRAMES)
                deep = frames > self.frames
                # jittered around its mean (which keeps the duty): a fixed period locks onto a
                # periodic job's (a request every 100 ms) and misses it every time
                rest = max(traced, TRACE_BURST_S) * (1.0 / self.duty - 1.0)
                while True:
                    if self.stop.wait(rest * random.uniform(0.5, 1.5)):
                        return
                    claimed = self._claim_burst()
                    if claimed is False:
                        return
                    if claimed:
                        break
                    rest = TRACE_BURST_S  # a heap walk holds its listing: a burst once it ends
                began = time.perf_counter()
                self.burst_rss_kb = _rss_kb()
                tracemalloc.start(frames)
        finally:
            _heap.burst_ends(self.burst)
            self.ended_at = time.time()
            # ended on its own (not by `end`, which holds the change's lock while joining us)
            if self.change is not None and not self.stop.is_set():
                self.change.undo("window ended")


def _rss_kb() -> float | None:
    """This process's RSS in KB (a forked child's own), None if it cannot be read."""
    try:
        return float(psutil.Process().memory_info().rss) / _KB
    except psutil.Error:
        return None


def _add_sums(into: dict[_K, _SiteStat], more: dict[_K, _SiteStat]) -> None:
    for key, stat in more.items():
        mine = into.get(key)
        if mine is None:
            into[key] = stat
        else:
            mine.add(stat.size, stat.count, stat.traceback, stat.traceback_size)


def _merge(into: _Grouped, more: _Grouped) -> None:
    """Add the sites of one burst to those of the bursts before it."""
    into.total += more.total
    into.partial = into.partial or more.partial
    into.stride = max(into.stride, more.stride)
    for kind, size in more.excluded.items():
        into.excluded[kind] = into.excluded.get(kind, 0) + size
    _add_sums(into.sites, more.sites)
    _add_sums(into.cut, more.cut)
    for frame, sites in more.callers.items():
        mine_sites = into.callers.setdefault(frame, {})
        for site, (size, tb) in sites.items():
            mine_sites.setdefault(site, [0, tb])[0] += size


def _scaled(grouped: _Grouped, factor: float) -> _Grouped:
    """Burst sums scaled to the whole window (an estimate, like `_group`'s sampling)."""
    out = _Grouped(
        total=grouped.total,
        stride=grouped.stride * factor,
        partial=grouped.partial,
        excluded={k: round(v * factor) for k, v in grouped.excluded.items()},
    )
    for site, stat in grouped.sites.items():
        out.sites[site] = _SiteStat(
            round(stat.size * factor), round(stat.count * factor), stat.traceback, stat.size
        )
    return out


# -- heap walks ---------------------------------------------------------------------------------

_CONTAINERS = (list, dict, set, frozenset, deque)
#: `operator.call` (Python 3.11 and later)
_call: Callable[..., Any] = getattr(operator, "call", lambda fn, *args: fn(*args))
_CODE_OF = attrgetter("__code__")


@dataclass
class _Census:
    at: float
    types: dict[str, int]
    functions: dict[str, int]
    tracked: int
    partial: bool
    #: id -> (type name, length) of the longest containers, as memory_largest_containers
    #: remembers them: a census right before its baseline call serves as that baseline
    containers: dict[int, tuple[str, int]] = field(default_factory=dict)


#: how many of the longest containers a walk keeps (growth is told against the previous ones)
_REMEMBERED = 50
#: how recent a census must be to serve as memory_largest_containers' baseline (no new walk)
_SHARED_CENSUS_S = 5.0


class _Longest:
    """The `count` longest lists, dicts, sets and deques (subclasses too) met so far, longest
    first, leaving out those whose id is in `own`.

    Fed slice by slice with C-level passes; only containers longer than the shortest one kept
    reach the (stable) sort, so of equal lengths the first met stays. Objects are judged by
    their type, never by isinstance(), which would run an object's own ``__class__``.
    """

    def __init__(self, count: int, own: set[int]) -> None:
        self.count = count
        self.own = own
        self.best: list[tuple[int, Any]] = []  # (length, container)
        self.floor = -1  # the length a container must pass to enter, once `best` is full
        # each container type's length slot (its base type's) by the type's id, for this walk
        # only (every type met is alive in the walk's slices meanwhile: no id is reused)
        self.slots: dict[int, Any] = {}

    def add(self, chunk: list[Any], kinds: Iterable[type]) -> None:
        """Meet the objects of `chunk`, whose types are `kinds` (in the same order)."""
        kinds = list(kinds)
        boxed = list(map(issubclass, kinds, repeat(_CONTAINERS)))
        boxes = list(compress(chunk, boxed))
        # each length by its base type's own slot, in one C-level pass: a subclass's
        # ``__len__`` is the program's code (never run here)
        box_kinds = list(compress(kinds, boxed))
        # types by id (hashing a class runs its metaclass's __hash__; one with __eq__ and no
        # __hash__ cannot be hashed at all)
        kind_ids = list(map(id, box_kinds))
        if not self.slots.keys() >= set(kind_ids):
            for key, kind in dict(zip(kind_ids, box_kinds, strict=True)).items():
                if key not in self.slots:
                    self.slots[key] = container_base(kind).__len__  # type: ignore[union-attr]
        counts = list(map(_call, map(self.slots.__getitem__, kind_ids), boxes))
        longer = list(map(gt, counts, repeat(self.floor)))
        met = list(zip(compress(counts, longer), compress(boxes, longer), strict=True))
        if self.own:
            met = [m for m in met if id(m[1]) not in self.own]
        if met:
            self.best = sorted(self.best + met, key=itemgetter(0), reverse=True)[: self.count]
            if len(self.best) == self.count:
                self.floor = self.best[-1][0]

    @property
    def containers(self) -> list[Any]:
        """The containers kept, longest first."""
        return [box for _, box in self.best]


def _take_census(deadline: float, own: set[int] | None = None) -> _Census:
    """Counts by type and by function code; with `own`, also the longest containers (those
    whose id is in `own` left out), for memory_largest_containers' next baseline."""
    pace = Pacer()  # made first: the heap step counts as work, and is followed by a rest
    heap = _heap.objects()
    longest = _Longest(_REMEMBERED, own) if own is not None else None
    by_type = TypeCount()
    by_type.add(tuple, heap.tuples)
    codes: Counter[types.CodeType] = Counter()
    # C-level passes per slice (a few ms of GIL each), paced; the Python loop below only
    # sees bound methods, which are few
    for chunk in heap.slices(deadline, pace):
        kinds = list(map(type, chunk))
        by_type.update(kinds)
        if longest is not None:
            longest.add(chunk, kinds)
        # closures and bound methods are counted by the code that made them: a leak of
        # callbacks shows as one function site growing, not as "function" in general
        codes.update(map(_CODE_OF, compress(chunk, map(is_, kinds, repeat(types.FunctionType)))))
        codes.update(
            m.__func__.__code__
            for m in compress(chunk, map(is_, kinds, repeat(types.MethodType)))
            if type(m.__func__) is types.FunctionType
        )
        del chunk, kinds
    total, partial = len(heap.objects), heap.partial
    del heap
    best = longest.best if longest is not None else []
    containers = {id(c): (_type_name(type(c)), n) for n, c in best}
    del longest, best
    names: Counter[str] = Counter()
    for t, n in by_type.items():
        names[_type_name(t)] += n
    functions: Counter[str] = Counter()
    for code, n in codes.items():
        functions[f"{code.co_qualname} ({_code_site(code)})"] += n
    return _Census(
        at=time.time(),
        types=dict(names),
        functions=dict(functions),
        tracked=total,
        partial=partial,
        containers=containers,
    )


def _serves_as_baseline(census: _Census) -> bool:
    """Whether `census` is recent and whole, with its longest containers kept."""
    fresh = time.time() - census.at <= _SHARED_CENSUS_S
    return fresh and bool(census.containers) and not census.partial


def _largest_containers(count: int, deadline: float, own: set[int]) -> tuple[list[Any], bool]:
    """The `count` longest containers alive (`_Longest`), and whether the deadline cut the
    walk short."""
    pace = Pacer()  # made first: the heap step counts as work, and is followed by a rest
    heap = _heap.objects()  # tuples are none of the containers
    longest = _Longest(count, own)
    for chunk in heap.slices(deadline, pace):
        longest.add(chunk, map(type, chunk))
        del chunk
    partial = heap.partial
    del heap
    return longest.containers, partial


#: how a type is named: "dict", "Entry", "pkg.mod.Class", "pkg.mod.f.<locals>.Class"
_TYPE_NAME = re.compile(r"[^\W\d][\w.<>\[\], ]{0,199}")


def _check_type_name(type_name: str) -> None:
    """Refuse, before any heap walk, a name no type can have (generic aliases such as
    ``app.Page[Item]`` are names a census gives), or a builtin that is not a class."""
    if not _TYPE_NAME.fullmatch(type_name):
        raise ValueError(
            f"{clip(type_name, 60)!r} is not a type name: give it as memory_type_growth "
            'names it ("pkg.mod.Class") or its short name ("Class", "dict")'
        )
    module_name, _, attr = type_name.rpartition(".")
    if module_name != "builtins":
        return  # (elsewhere a class's name may now hold its decorated or cached wrapper)
    found = vars(builtins).get(attr, type)
    if not issubclass(type(found), type):
        raise ValueError(f"{type_name} is a {_type_name(type(found))}, not a class")


def _instances_of(type_name: str, deadline: float, keep: int = 200) -> tuple[list[Any], int]:
    """The `keep` oldest live instances of the types named `type_name` (oldest first), and how
    many there are. `gc.get_objects` lists the oldest generation last, so the tail is kept.

    Types are matched once each, when first met; instances are picked by C-level passes.
    """
    pace = Pacer()  # made first: the heap step counts as work, and is followed by a rest
    heap = _heap.objects()
    tail: list[Any] = []
    count = 0
    for hits in heap.of_types(lambda t: type_name in _type_names(t), deadline, pace):
        count += len(hits)
        tail = (tail + hits)[-keep:]
        del hits
    del heap
    tail.reverse()
    return tail, count


def _module_globals() -> dict[int, str]:
    """id -> dotted name of every module-level object (how a leak's holder is named)."""
    names: dict[int, str] = {}
    for mod_name, module in list(sys.modules.items()):
        namespace = stored_attr(module, "__dict__")
        if type(namespace) is not dict:
            continue
        names[id(namespace)] = f"module {mod_name}"
        for key, value in _items(namespace):
            if issubclass(type(value), (types.ModuleType, types.FunctionType, type)):
                continue  # modules, functions and classes are not where data piles up
            names.setdefault(id(value), f"{mod_name}.{key}")
    return names


def _describe(obj: Any) -> str:
    """A short, value-free description of an object: its type, size, and where code was made."""
    t = type(obj)
    if t is types.FunctionType:
        return f"function {obj.__qualname__} ({_code_site(obj.__code__)})"
    if t is types.MethodType:
        func = obj.__func__
        if type(func) is types.FunctionType:
            return f"bound method {func.__qualname__} ({_code_site(func.__code__)})"
        return f"bound method of {_type_name(type(func))}"
    if t is types.FrameType:
        return f"frame of {obj.f_code.co_qualname} ({_where(obj.f_code.co_filename, obj.f_lineno)})"
    if t is types.CellType:
        return "closure cell"
    # judged by the type (isinstance would run a computed ``__class__``), measured by the
    # base type (a subclass's ``__len__`` is the program's code)
    if issubclass(t, (*_CONTAINERS, tuple)):
        return f"{_type_name(t)} (len {stored_len(obj)})"
    if issubclass(t, type):
        return f"class {_type_name(obj)}"
    if issubclass(t, types.ModuleType):
        return f"module {stored_attr(obj, '__name__', '?')}"
    return f"{_type_name(t)} object"


def _edge(holder: Any, held: Any, share_values: bool = False) -> str:
    """How `holder` refers to `held`: an attribute name where there is one, never a value.

    Keys of ordinary dicts are data (a cache's keys may be e-mail addresses), so they are only
    shown when the skill shares values.
    """
    if issubclass(type(holder), dict):
        found = _key_of(holder, held)
        if found is None:
            return ""
        key, as_value = found
        if not as_value:
            return "(key)"
        if share_values and issubclass(type(key), (str, int)):
            # the base type's text (a subclass's ``__str__`` is the program's code)
            text = str.__str__(key) if issubclass(type(key), str) else int.__repr__(key)
            return f"[{clip(text, 40)!r}]"
        return "(value)"
    if issubclass(type(holder), (list, tuple, deque, set, frozenset)):
        return "(item)"
    if type(holder) is types.FunctionType:
        if holder.__defaults__ and any(d is held for d in holder.__defaults__):
            return "(default argument)"
        return "(closure)"
    if type(holder) is types.MethodType:
        return ".__self__" if holder.__self__ is held else ".__func__"
    for name, value in slot_values(holder):
        if value is held:
            return f".{name}"
    # an instance keeping its attributes inline (no dict between it and `held`)
    for name, value in (stored_attrs(holder) or {}).items():
        if value is held:
            return f".{name}"
    return ""


def _attribute_name(namespace: dict[Any, Any], held: Any) -> str:
    found = _key_of(namespace, held)
    return str(found[0]) if found is not None and found[1] else "?"


def _key_of(mapping: dict[Any, Any], held: Any) -> tuple[Any, bool] | None:
    """The key under which a live dict holds `held` as a value (``(key, True)``), or `held`
    itself when it is one of the keys (``(held, False)``); None if neither.

    Keys and values are copied as references in one C call each (no object is made per item:
    a cache of millions copies in milliseconds, even with tracemalloc recording every
    allocation) and compared by identity in C (no ``__eq__`` runs, no bytecode per item). The
    program's threads go on changing their dicts between the calls, so the keys are copied
    again after the values, and the copies are used only when they agree item for item (a key
    evicted and another added meanwhile would pair the values with the wrong keys); the copies
    are taken in one C call, so only a finalizer run by a collection can change the dict between
    them."""
    if not issubclass(type(mapping), dict):
        return None
    for _ in range(3):
        try:
            # the three copies in one C call (the unpacking pulls them): no bytecode between
            # (dict's own views: never a subclass's keys() or values())
            views: tuple[Iterable[Any], ...] = (
                dict.keys(mapping),
                dict.values(mapping),
                dict.keys(mapping),
            )
            keys, values, again = map(list[Any], views)
        except RuntimeError:  # (a finalizer changed it mid-copy)
            continue
        if len(keys) != len(values) or len(again) != len(keys) or not all(map(is_, keys, again)):
            continue
        key = next(compress(keys, map(is_, values, repeat(held))), _NONE)
        if key is not _NONE:
            return key, True
        if next(compress(keys, map(is_, keys, repeat(held))), _NONE) is not _NONE:
            return held, False
        return None
    return None


_NONE = object()


def _items(mapping: dict[Any, Any]) -> list[tuple[Any, Any]]:
    """A copy of a live dict's items, taken in one C call: the program's own threads go on
    filling their dicts (a cache, a module's globals) while a probe reads them, and a Python
    loop over the dict itself would then raise "dictionary changed size during iteration"
    (a rare collection can still run a finalizer that changes it mid-copy: copy again)."""
    if not issubclass(type(mapping), dict):
        return []
    for _ in range(3):
        try:
            return list(dict.items(mapping))  # (dict's own: never a subclass's items())
        except RuntimeError:
            continue
    return []


def _namespace_owner(namespace: dict[Any, Any], skip: set[int]) -> Any:
    """The instance or class whose attribute dict `namespace` is, if it is one."""
    owners = _heap.referrers([namespace])
    try:
        for owner in owners:
            if id(owner) in skip or type(owner) is types.FrameType:
                continue
            if issubclass(type(owner), type):
                if any(r is namespace for r in gc.get_referents(owner)):
                    return owner
            elif is_own_dict(owner, namespace):  # (asking for its __dict__ would make one)
                return owner
        return None
    finally:
        del owners


def _referrer_chain(
    target: Any,
    names: dict[int, str],
    max_depth: int,
    deadline: float,
    ignore: set[int],
    share_values: bool = False,
    roots: list[tuple[Any, Any]] | None = None,
) -> list[str]:
    """Who holds `target`, hop by hop up to a module global, a class, a frame or the limit.

    When the chain ends at a root, (the root's holder, the object it holds) is added to
    `roots` (the holder is None for a module global named by `names`).

    The first referrer at each hop is followed (cheap, and right for most chains); when that
    walk gets lost in an object graph's own cycles and ends at no root, a breadth-first search
    over all referrers, level by level, looks for the nearest root instead.
    """
    hops = [_describe(target)]
    me = sys._getframe()
    try:
        found_root = _climb(target, hops, names, max_depth, deadline, ignore, me, share_values)
        if not hops[-1].startswith("held by"):
            found = _search_root(target, names, max_depth, deadline, ignore | {id(hops)})
            if found is not None:
                path, root, found_root = found
                hops = [_describe(target)]
                for holder, held in path:
                    edge = _edge(holder, held, share_values)
                    hops.append(f"{_describe(holder)}{' ' + edge if edge else ''}")
                top, top_held = found_root
                if root.startswith("module global") and not issubclass(type(top), dict):
                    # a global object holding it in an attribute: which one
                    edge = _edge(top, top_held, share_values)
                    if edge.startswith("."):
                        hops.append(f"{_describe(top)} {edge}")
                hops.append(f"held by {root}")
        if roots is not None and found_root is not None and hops[-1].startswith("held by"):
            roots.append(found_root)
    finally:
        del me  # a frame holding itself would keep every caller's locals alive until a GC
    return hops


#: objects kept per level of the breadth-first search (a bound on its memory and time)
_SEARCH_WIDTH = 256


def _search_root(
    target: Any, names: dict[int, str], max_depth: int, deadline: float, ignore: set[int]
) -> tuple[list[tuple[Any, Any]], str, tuple[Any, Any]] | None:
    """The nearest root above `target` (a known retainer, a module global, a class attribute),
    searched level by level: one heap walk per level (`gc.get_referrers` of the whole level at
    once), so it costs what the first-referrer walk costs. Returns the (holder, held) hops from
    `target` upwards, the root's name and its (holder, held), or None."""
    held_by: dict[int, Any] = {}  # id(holder) -> the object of the level below it holds
    seen: dict[int, Any] = {id(target): target}
    level = [target]
    try:
        for _ in range(max_depth):
            if not level or time.perf_counter() > deadline:
                return None
            ids = {id(o) for o in level}
            referrers = _heap.referrers(level, deadline=deadline)
            own = {id(referrers), id(level), id(seen), id(held_by), id(ids), *ignore}
            upper: list[Any] = []
            for ref in referrers:
                if id(ref) in own or id(ref) in seen or type(ref) is types.FrameType:
                    continue
                if is_tooling(ref):
                    continue
                held = next((c for c in gc.get_referents(ref) if id(c) in ids), None)
                if held is None:
                    continue
                seen[id(ref)] = ref
                held_by[id(ref)] = held
                root = _root_name(ref, held, names, held_by)
                if root is not None:
                    path: list[tuple[Any, Any]] = []
                    node = ref
                    while node is not target:
                        path.append((node, held_by[id(node)]))
                        node = held_by[id(node)]
                    path.reverse()
                    # the root's own hop is named by the root, not listed as a holder (for a
                    # class attribute, the class's namespace dict below it as well)
                    own_hops = 2 if root.startswith("class attribute") else 1
                    return path[:-own_hops], root, (ref, held)
                if len(upper) < _SEARCH_WIDTH:
                    upper.append(ref)
            del referrers
            level = upper
        return None
    finally:
        seen.clear()
        held_by.clear()


def _root_name(
    holder: Any, held: Any, names: dict[int, str], held_by: dict[int, Any]
) -> str | None:
    known = known_root(holder, held)
    if known is not None:
        return known
    label = names.get(id(holder))
    if label is not None:
        if label.startswith("module ") and issubclass(type(holder), dict):
            name = f"{label[7:]}.{_attribute_name(holder, held)}"
        else:
            name = label
        return global_root(name) or f"module global {name}"
    if issubclass(type(holder), type) and issubclass(type(held), dict) and id(held) in held_by:
        # a class's namespace holding the object: a class attribute
        return f"class attribute {_type_name(holder)}.{_attribute_name(held, held_by[id(held)])}"
    return None


def _climb(
    current: Any,
    hops: list[str],
    names: dict[int, str],
    max_depth: int,
    deadline: float,
    ignore: set[int],
    me: types.FrameType,
    share_values: bool,
) -> tuple[Any, Any] | None:
    """Climb the first referrers (see `_referrer_chain`); the root's (holder, held) if the
    chain ends at one."""
    seen = {id(current)}
    pace = Pacer()
    for _ in range(max_depth):
        pace()  # each gc.get_referrers below walks the whole heap in one C call
        name = names.get(id(current))
        if name is not None:
            known = global_root(name)
            if known is not None:
                hops.append(f"held by {known}")
            else:
                hops.append(f"held by {'module global ' if '.' in name else ''}{name}")
            return None, current
        if time.perf_counter() > deadline:
            hops.append("... (time budget reached)")
            return None
        referrers = _heap.referrers([current])
        try:
            own = {id(referrers), id(hops), id(seen), *ignore}
            frames: list[types.FrameType] = []
            chosen: Any = None
            named: Any = None
            holder: Any = None
            root: str | None = None
            for ref in referrers:
                if id(ref) in own or id(ref) in seen or is_tooling(ref):
                    continue
                if type(ref) is types.FrameType:
                    if not _is_own_frame(ref, me):
                        frames.append(ref)
                    continue
                # a well-known retainer names the root best; then a named global
                root = known_root(ref, current)
                if root is not None:
                    holder = ref
                    break
                if named is None and id(ref) in names:
                    named = ref
                if chosen is None:
                    chosen = ref
            chosen = named if named is not None else chosen
        finally:
            del referrers
        if root is not None:
            hops.append(f"held by {root}")
            return holder, current
        if chosen is None and frames:
            hops.append(f"held by a local variable of {_describe(frames[0])[9:]}")
            return None
        if chosen is None:
            hops.append("no further referrers (held only by untracked or C-level state)")
            return None
        namespace_of = names.get(id(chosen), "")
        if namespace_of.startswith("module ") and issubclass(type(chosen), dict):
            attr = _attribute_name(chosen, current)
            known = global_root(f"{namespace_of[7:]}.{attr}")
            hops.append(f"held by {known or f'module global {namespace_of[7:]}.{attr}'}")
            return chosen, current
        if type(chosen) is dict and not namespace_of:
            owner = _namespace_owner(chosen, own | seen)
            if owner is not None:
                root = known_root(owner, current)
                if root is not None:
                    hops.append(f"held by {root}")
                    return owner, current
                # an attribute: name it on its object rather than as a hop through a dict
                attr = _attribute_name(chosen, current)
                if issubclass(type(owner), type):
                    hops.append(f"held by class attribute {_type_name(owner)}.{attr}")
                    return owner, current
                seen.add(id(chosen))
                hops.append(f"{_describe(owner)} .{attr}")
                seen.add(id(owner))
                current = owner
                continue
        if issubclass(type(chosen), type):
            hops.append(f"held by class {_type_name(chosen)}")
            return chosen, current
        if issubclass(type(chosen), types.ModuleType):
            hops.append(f"held by module {stored_attr(chosen, '__name__', '?')}")
            return chosen, current
        edge = _edge(chosen, current, share_values)
        hops.append(f"{_describe(chosen)}{' ' + edge if edge else ''}")
        seen.add(id(chosen))
        current = chosen
    hops.append("... (depth limit)")
    return None


def _kept_by_tooling(box: Any, ignore: set[int], names: dict[int, str], depth: int = 2) -> bool:
    """Whether only the tooling keeps `box` alive: it is one of its structures (`is_tooling`:
    linecache's cache), or everything that holds it is (lensbook's, tracemalloc's objects, their
    modules' globals, lensbook's running frames), directly or through a plain dict or list that
    only they hold (a ring's deque in the ring's dict of rings). One heap walk per level,
    `depth` at most; a module's globals (`names`) are judged by the module without a second
    walk; ids in `ignore` (the caller's own lists) are not holders."""
    if is_tooling(box):
        return True
    holders = _heap.referrers([box])
    try:
        mine = ignore | {id(holders)}
        found = False
        for ref in holders:
            if id(ref) in mine:
                continue
            found = True
            namespace = names.get(id(ref), "")
            if type(ref) is types.FrameType:
                if _origin(ref.f_code.co_filename) != "lensbook":
                    return False
            elif namespace.startswith("module "):
                if not is_tooling_module(namespace[7:]):
                    return False
            elif not (
                is_tooling(ref)
                or (
                    depth > 1
                    and type(ref) in (dict, list)
                    and _kept_by_tooling(ref, mine, names, 1)
                )
            ):
                return False
        return found  # (held by nothing seen: no sign it is the tooling's)
    finally:
        del holders


def _is_own_frame(frame: types.FrameType, me: types.FrameType) -> bool:
    probe_frame: types.FrameType | None = me
    while probe_frame is not None:
        if probe_frame is frame:
            return True
        probe_frame = probe_frame.f_back
    return _origin(frame.f_code.co_filename) == "lensbook"


# -- the skill ----------------------------------------------------------------------------------


class MemorySkill(Skill):
    id = "memory"
    title = "Memory"
    description = (
        "RSS trend, tracemalloc allocation sites, type growth, largest containers, referrer chains"
    )
    system_prompt = (
        "You are the memory operator of a live Python process. You find memory leaks and say "
        "exactly where they are: the file and line that allocates what stays alive, the type "
        "that grows, and what holds it. Work from trends, not single values: RSS moves with "
        "the allocator, so confirm growth with a tracemalloc window (memory_trace_start, wait, "
        "memory_allocation_diff, which also stops tracing) and two type censuses "
        "(memory_census, then memory_type_growth). Name the holder with "
        "memory_largest_containers and memory_referrers; when a chain ends at a root, "
        "memory_retained_sites then says where what that root gains is allocated. Typical "
        "culprits: module-level caches without eviction, callbacks or closures registered "
        "and never removed, lists that only grow, objects kept alive by a global registry or "
        "a long-lived frame. Heap walks cost "
        "~0.1 s per million objects; do not repeat them needlessly."
    )
    # what the coordinator and the watcher know of it (see `Skill`)
    keywords = ("memory", "leak", "rss", "ram", "oom", "heap", "grow", "cache", "alloc")
    families: ClassVar[dict[str, tuple[str, ...]]] = {
        "memory growth": ("memory_leak", "native_memory_growth", "memory_growth")
    }
    investigates = ("memory growth",)
    chains = (
        Chain(
            ("memory growth", "GC pressure", "event-loop lag"),
            "a growing heap makes every full collection walk more objects; longer GC pauses "
            "hold the GIL and stall the event loop",
        ),
        Chain(
            ("memory growth", "host memory pressure"),
            "the process's growth eats the host's available memory",
        ),
    )
    unwatched = frozenset({"host_available_mb"})
    watched = True

    def __init__(
        self, *, trace_duty: float = DEFAULT_TRACE_DUTY, budget_scale: float = 1.0
    ) -> None:
        """`trace_duty`: the share of a tracing window that tracemalloc is really on (in
        bursts of 25 ms); 1.0 traces the whole window (exact sums, but allocation-heavy code
        runs ~8x slower for the window's length). `budget_scale` multiplies the time every
        heap or trace walk may take before it answers partially (above 1 on a slow or loaded
        machine: complete answers, later). The user's choices: a model cannot change them.
        """
        if not 0.0 < trace_duty <= 1.0:
            raise ValueError(f"trace_duty must be in (0, 1], got {trace_duty!r}")
        if not 0.0 < budget_scale <= 100.0:
            raise ValueError(f"budget_scale must be in (0, 100], got {budget_scale!r}")
        self.trace_duty = trace_duty
        self.budget_scale = budget_scale
        self._process = psutil.Process()
        self._lock = threading.RLock()
        self._window: _TraceWindow | None = None
        self._census: _Census | None = None
        #: container id -> (type name, length) from the last memory_largest_containers call
        self._container_sizes: dict[int, tuple[str, int]] = {}
        #: the root the last referrer chains ended at, for memory_retained_sites
        self._watch: Watch | None = None
        #: the ledger entry of a pending watch that holds its root strongly (see `_watch_root`)
        self._watch_change: intrusion.Change | None = None
        #: no tracing window of this skill starts tracing before (a retention burst's rest)
        self._quiet_until = 0.0
        #: a memory_retained_sites call is tracing in bursts (no window opens meanwhile)
        self._retaining = False

    # -- snapshot ---------------------------------------------------------------------------

    def snapshot(self) -> dict[str, Any]:
        """Cost: ~60 µs (one psutil read, /proc/meminfo, allocator counters); no heap walk."""
        mem = self._process.memory_info()
        data: dict[str, Any] = {
            "rss_mb": round(mem.rss / _MB, 2),
            "vms_mb": round(mem.vms / _MB, 2),
            "host_available_mb": round(psutil.virtual_memory().available / _MB, 1),
            # pymalloc blocks in use: counts untracked objects (str, int, bytes) too
            "heap_blocks": sys.getallocatedblocks(),
            "tracemalloc": tracemalloc.is_tracing(),
        }
        if tracemalloc.is_tracing():
            current, peak = tracemalloc.get_traced_memory()
            data["traced_mb"] = round(current / _MB, 3)
            data["traced_peak_mb"] = round(peak / _MB, 3)
            data["tracemalloc_frames"] = tracemalloc.get_traceback_limit()
        return data

    # -- RSS over time ----------------------------------------------------------------------

    @probe
    def rss_trend(
        self, window_s: float = 600.0, points: int = 12, after_s: float = 0.0
    ) -> dict[str, Any]:
        """RSS over time from the sampled snapshots of this skill and the runtime skill.

        Args:
            window_s: how far back to look, in seconds.
            points: how many evenly spaced points to return (at most 60).
            after_s: look this much later (0 to 3 s): RSS then, to tell a rise that goes on
                from one that stopped.

        Cost: microseconds (and `after_s` of waiting); reads lensbook's metrics store, never
        the heap.
        """
        after_s = min(max(after_s, 0.0), 3.0)
        if after_s:
            time.sleep(after_s)
        since = time.time() - max(window_s, 1.0)
        series = sorted(
            metrics_store.series("memory", "rss_mb", since)
            + metrics_store.series("runtime", "rss_mb", since)
        )
        now_mb = round(self._process.memory_info().rss / _MB, 2)
        now = {
            "rss_mb_now": now_mb,
            **({"after_s": after_s} if after_s else {}),
        }
        if len(series) < 2:
            return {
                "samples": len(series),
                **now,
                "note": "fewer than 2 samples in the window: take snapshots a few seconds apart",
            }
        t0 = series[0][0]
        values = [v for _, v in series]
        span = series[-1][0] - t0
        slope = _least_squares(series)
        step = max(1, len(series) // max(1, min(points, 60)))
        return {
            "samples": len(series),
            "span_s": round(span, 1),
            **now,
            "first_mb": values[0],
            "last_mb": values[-1],
            "min_mb": min(values),
            "max_mb": max(values),
            "slope_mb_per_min": None if slope is None else round(slope * 60, 3),
            "points": [[round(t - t0, 1), v] for t, v in series[::step]][-60:],
        }

    # -- tracemalloc ------------------------------------------------------------------------

    @probe(budget=8.0, intrusive="tracemalloc")
    def trace_start(self, frames: int = 1, max_seconds: float = 60.0) -> dict[str, Any]:
        """Open a tracemalloc window: trace allocations from now on, to diff them later.

        Tracing slows allocation-heavy code (~x8 with 1 frame, ~x20 with 10), so by default
        it is on in 25 ms bursts for 10% of the window (sums are scaled to the window, an
        estimate), and the window is short: memory_allocation_diff closes it, it stops by
        itself after `max_seconds`, and when the run ends. The first burst starts at once, or
        up to 0.3 s later right after a heap walk or another burst (`first_burst_in_s`). If
        the process was already tracing, the window joins that tracing (a baseline is taken)
        and never stops it.

        Args:
            frames: frames kept per allocation (1 to 25); 1 names the allocating line, more
                show who called it.
            max_seconds: stop tracing after this many seconds if nobody closed the window
                (at most 60).

        Cost: starting is instant; joining existing tracing takes a snapshot (~0.5 s per
        million traced blocks). While a memory_retained_sites call is still tracing in bursts,
        no window opens (a note with retry_after_s says so).
        """
        frames = min(max(frames, 1), 25)
        max_seconds = min(max(max_seconds, 1.0), MAX_TRACE_SECONDS)
        with self._lock:
            if self._retaining:
                # (a call that ran past its budget goes on: its bursts and a window's would
                # overlap)
                return _RETAINING_NOTE.copy()
            if self._window is not None and self._window.owned:
                self._close_window()
            if tracemalloc.is_tracing():
                deadline = time.perf_counter() + 3.0 * self.budget_scale
                grouped = _resolved(_group(tracemalloc.take_snapshot(), deadline, _TRACED_PASS_MAX))
                self._window = _TraceWindow(
                    started_at=time.time(),
                    frames=tracemalloc.get_traceback_limit(),
                    owned=False,
                    baseline={k: (s.size, s.count) for k, s in grouped.sites.items()},
                )
                return {
                    "tracing": True,
                    "started_by": "the process (kept running; not stopped by lensbook)",
                    "frames": self._window.frames,
                    "baseline_blocks": grouped.total,
                    "baseline_sampled_1_in": round(grouped.stride, 1),
                    "baseline_partial": grouped.partial,
                }
            window = _TraceWindow(
                started_at=time.time(), frames=frames, owned=True, duty=self.trace_duty
            )
            # after a retention burst, a bursting window rests first (see retained_sites), and
            # until the turn of lensbook's next stall (0.3 s at most: re-opened windows would
            # chain their first bursts back to back); its first burst otherwise starts at once
            # (work the caller does right after the call is traced), and the steps after it
            # wait for it (see `_heap.step`)
            rest = 0.0
            if window.bursting:
                rest = max(self._quiet_until - time.perf_counter(), _heap.until_turn())
            if not rest:
                if window.bursting:
                    # (no wait: a listing alive now waits for this burst's end instead)
                    window.burst = _heap.burst_begins(0.0, force=True)
                try:
                    window.burst_rss_kb = _rss_kb()
                    tracemalloc.start(frames)  # the whole window, or its first burst
                except BaseException:
                    _heap.burst_ends(window.burst)
                    raise
            try:
                if window.bursting:
                    window.unwatch = _heap.watch_collections()  # (ended by `end`, every path)
                    window.cycler = threading.Thread(
                        target=window.cycle,
                        args=(time.perf_counter(), rest),
                        name="lensbook-tracemalloc-window",
                        daemon=True,
                    )
                # raises RunEnded (tracing already stopped again) if the asking run has ended
                window.change = intrusion.switch_on(
                    "tracemalloc",
                    functools.partial(window.end, "switched off"),
                    max_seconds=max_seconds,
                    detail=f"{frames} frame(s), {window.duty:.0%} of the window",
                )
            except BaseException:
                window.end("not opened")  # (idempotent: RunEnded has ended it already)
                raise
            self._window = window
            if window.cycler is not None:
                try:
                    window.cycler.start()
                except BaseException:  # no thread to end the burst: end the window now
                    window.change.undo("the window's thread did not start")
                    raise
            return {
                "tracing": True,
                "started_by": "lensbook",
                "frames": frames,
                "traced_share": window.duty,
                "stops_after_s": max_seconds,
                # resting (after a retention burst, or for its turn among lensbook's stalls):
                # the first burst starts this much later
                "first_burst_in_s": round(rest, 2),
            }

    @probe
    def trace_stop(self) -> dict[str, Any]:
        """Close the tracemalloc window without a diff (tracing the process had is kept).

        Cost: instant.
        """
        with self._lock:
            window = self._window
            if window is None or window.ended_by is not None:
                self._window = None
                return {"tracing": tracemalloc.is_tracing(), "note": "no window was open"}
            self._close_window()
            return {"tracing": tracemalloc.is_tracing(), "stopped": window.owned}

    @probe(budget=10.0)
    def allocation_diff(
        self, top: int = 10, frames_shown: int = 4, stop: bool = True
    ) -> dict[str, Any]:
        """What the tracemalloc window allocated and still holds, ranked by allocation site.

        Each site is the file:line blamed for the blocks (the first frame in the user's code,
        with the library frames below it as ``via``; else the most recent library frame), with
        the bytes and blocks that grew, the source line, and the traceback that contributed
        most. lensbook's own allocations and module imports are
        left out and reported as totals.

        Args:
            top: how many sites to return (at most 30).
            frames_shown: frames of each site's traceback to show (most recent first).
            stop: close the window (stop tracing if lensbook started it).

        Cost: a tracemalloc snapshot (~0.5 s per million traced blocks) then one pass over the
        blocks, bounded to ~6 s (partial results past that).
        """
        top = min(max(top, 1), 30)
        frames_shown = min(max(frames_shown, 1), 25)
        with self._lock:
            window = self._window
            if window is None and self._retaining:
                # the tracing on now is memory_retained_sites' own burst, not a window's
                return _RETAINING_NOTE.copy()
            ended_early: str | None = None
            if window is not None and window.bursting:
                ended_early = window.ended_by  # (tracing stopped from outside, the process's own)
                if stop:
                    self._close_window()  # ends the current burst, adding it to the sums
                with window.lock:
                    traced_s: float | None = window.traced_s
                    bursts: int | None = window.bursts
                    in_bursts = {
                        "rss_gained_in_bursts_kb": round(window.rss_gained_kb, 1),
                        "held_in_bursts_kb": round(window.held_kb, 1),
                    }
                    wall_s = (window.ended_at or time.time()) - window.started_at
                    wall_s = max(wall_s, window.traced_s)
                    grouped = _scaled(
                        _resolved(window.sampled),
                        wall_s / window.traced_s if window.traced_s else 1.0,
                    )
                frames = window.frames
            else:
                if window is not None and window.ended_by is not None:
                    self._close_window()
                    raise RuntimeError(
                        f"the tracemalloc window had ended ({window.ended_by}) and its traces "
                        "are gone: call memory_trace_start again"
                    )
                if window is None and not tracemalloc.is_tracing():
                    raise RuntimeError("tracemalloc is not tracing: call memory_trace_start first")
                deadline = time.perf_counter() + 6.0 * self.budget_scale
                snap = tracemalloc.take_snapshot()
                frames = snap.traceback_limit
                if stop and window is not None:
                    # stop before grouping: a pass over a million blocks is ~10x slower traced
                    self._close_window()
                grouped = _resolved(
                    _group(snap, deadline, _TRACED_PASS_MAX if tracemalloc.is_tracing() else None)
                )
                del snap
                traced_s = bursts = None
                in_bursts = {}
        baseline = window.baseline if window is not None else {}
        rows: list[tuple[RawFrame, int, int, _SiteStat]] = []
        for site, stat in grouped.sites.items():
            size0, count0 = baseline.get(site, (0, 0))
            rows.append((site, stat.size - size0, stat.count - count0, stat))
        growth = sum(r[1] for r in rows)
        best = heapq.nlargest(top, rows, key=lambda r: r[1])
        window_s = time.time() - window.started_at if window is not None else None
        sites = []
        for site, size, count, stat in best:
            if size <= 0:
                break
            sites.append(_site_entry(site, size, count, growth, stat, frames_shown))
        sites, omitted = _fit(sites, 4200)
        return {
            "window_s": None if window_s is None else round(window_s, 2),
            "frames": frames,
            "growth_kb": round(growth / _KB, 1),
            "rate_kb_per_s": round(growth / _KB / window_s, 1) if window_s else None,
            "traced_blocks": grouped.total,
            "distinct_sites": len(grouped.sites),
            "sampled_1_in": round(grouped.stride, 1),
            "partial": grouped.partial,
            "excluded_kb": {k: round(v / _KB, 1) for k, v in grouped.excluded.items()},
            "tracing_after": tracemalloc.is_tracing(),
            "traced_s": None if traced_s is None else round(traced_s, 2),
            "bursts": bursts,
            **in_bursts,
            "sites": sites,
            "sites_omitted_for_size": omitted,
            **({"window_ended_early": ended_early} if ended_early else {}),
            **(
                {
                    "note": "no burst traced yet: the window's first burst rests for its turn "
                    "after lensbook's last heap walk or burst (first_burst_in_s when it "
                    "opened); keep the window open a second or more"
                }
                if bursts == 0
                else {}
            ),
        }

    def _close_window(self) -> None:
        window, self._window = self._window, None
        if window is not None and window.change is not None:
            window.change.undo("window closed")  # runs window.end (stops tracing if ours)

    def close(self) -> None:
        """Stop any tracing this skill started and forget its baselines."""
        with self._lock:
            self._close_window()
            self._census = None
            self._container_sizes.clear()
        self._end_watch("skill closed")

    # -- censuses ---------------------------------------------------------------------------

    def _own_ids(self) -> set[int]:
        """Ids of this skill's own containers, which heap walks leave out of their answers."""
        own = {id(self._container_sizes)}
        census = self._census
        if census is not None:
            own.update((id(census.types), id(census.functions), id(census.containers)))
        return own

    @probe
    def census(self, top: int = 15) -> dict[str, Any]:
        """Count live GC-tracked objects by type, and keep the counts for memory_type_growth.

        Args:
            top: how many types to return (at most 50).

        Cost: one heap walk, ~0.1 s per million tracked objects (bounded to ~3 s). Untracked
        objects (str, int, bytes, dicts of atoms) are not counted; tracemalloc sees them.
        """
        census = _take_census(time.perf_counter() + 3.0 * self.budget_scale, self._own_ids())
        with self._lock:
            self._census = census
        ranked = heapq.nlargest(min(max(top, 1), 50), census.types.items(), key=lambda kv: kv[1])
        return {
            "tracked_objects": census.tracked,
            "distinct_types": len(census.types),
            "partial": census.partial,
            "top": [mark_fields({"type": name, "count": n}, "type") for name, n in ranked],
        }

    @probe(budget=20.0)
    def type_growth(self, top: int = 10, after_s: float = 0.0) -> dict[str, Any]:
        """Which types (and which closures, by the code that made them) grew since memory_census.

        Takes a new census, compares it with the previous one and keeps it as the new baseline.
        User-defined types come with the file:line of their class statement. Called again
        (with `after_s`), it tells growth that goes on from objects that were only in flight
        at the last look.

        Args:
            top: how many growing types and functions to return (at most 30).
            after_s: wait this long before the census (at most 10 s).

        Cost: one heap walk, ~0.1 s per million tracked objects (bounded to ~3 s), after the
        wait.
        """
        top = min(max(top, 1), 30)
        if after_s > 0:
            time.sleep(min(after_s, 10.0))
        now = _take_census(time.perf_counter() + 3.0 * self.budget_scale)
        with self._lock:
            before, self._census = self._census, now
        if before is None:
            return {
                "note": "no earlier census: this one is the baseline; call again later",
                "tracked_objects": now.tracked,
            }
        interval = max(now.at - before.at, 1e-6)
        deltas = Counter(now.types)
        deltas.subtract(before.types)
        grown = [(name, d) for name, d in deltas.most_common(top + 10) if d > 0]
        type_by_name = _types_named({name for name, _ in grown})
        rows: list[dict[str, Any]] = []
        for name, d in grown:
            t = type_by_name.get(name)
            origin = _type_origin(t) if t is not None else None
            if origin == "lensbook" or len(rows) == top:
                continue  # lensbook's own bookkeeping (this census, for one) is not the user's
            row: dict[str, Any] = {
                "type": name,
                "before": before.types.get(name, 0),
                "after": now.types.get(name, 0),
                "delta": d,
                "per_s": round(d / interval, 1),
            }
            if t is not None:
                row["origin"] = origin
                if origin in ("user", "library"):
                    row["defined_at"] = _type_site(t)
            rows.append(mark_fields(row, "type", "defined_at"))
        fdeltas = Counter(now.functions)
        fdeltas.subtract(before.functions)
        functions = [
            mark_fields({"function": name, "delta": d, "per_s": round(d / interval, 1)}, "function")
            for name, d in fdeltas.most_common(min(top, 8))
            if d > 0
        ]
        # classes that grew a little, steadily: often one per request (a figure, a session),
        # the top object the rest hangs from, whose holder is the leak's root
        few = sorted((d, name) for name, d in deltas.items() if SUSPECT_MIN_DELTA <= d < 1000)
        few_types = _types_named({name for _, name in few[:200]})
        fewest = [
            mark_fields({"type": name, "delta": d, "origin": origin}, "type")
            for d, name in few[:200]
            if name in few_types
            and (origin := _type_origin(few_types[name])) in ("user", "library")
        ][:5]
        shrunk = [(n, d) for n, d in deltas.most_common()[:-4:-1] if d < 0]
        return {
            "interval_s": round(interval, 2),
            "tracked_before": before.tracked,
            "tracked_after": now.tracked,
            "tracked_delta": now.tracked - before.tracked,
            "partial": before.partial or now.partial,
            "growing": _fit(rows, 2600)[0],
            "growing_functions": _fit(functions, 1200)[0],
            "fewest_growing_classes": fewest,
            "shrinking": [mark_fields({"type": n, "delta": d}, "type") for n, d in shrunk],
        }

    @probe
    def largest_containers(self, top: int = 5, baseline: bool = False) -> dict[str, Any]:
        """The largest lists, dicts, sets and deques alive, who holds them, and how they grew.

        Growth is against the previous call (same object). The holders of the first three are
        named by a short referrer chain (a module global, a class attribute, a local variable).
        The tooling's own containers (linecache's cache, lensbook's rings) are left out.

        Args:
            top: how many containers to return (at most 20).
            baseline: only remember the sizes now (a short answer), to report growth on the
                next call.

        Cost: one heap walk with len() of each container, ~0.2 s per million tracked objects,
        plus one or two referrer walks per container returned (is it the tooling's?) and one
        per named holder (bounded to ~3 s in all). A baseline right
        after memory_census (within 5 s) costs no walk: the census's is used.
        """
        top = min(max(top, 1), 20)
        census = self._census
        if baseline and census is not None and _serves_as_baseline(census):
            # the census just taken saw the same heap: its longest containers are the
            # baseline, and the heap is not walked a second time
            with self._lock:
                self._container_sizes = dict(census.containers)
            return {
                "remembered": len(census.containers),
                "largest_len": max(n for _, n in census.containers.values()),
                "partial": False,
            }
        deadline = time.perf_counter() + 3.0 * self.budget_scale
        largest, partial = _largest_containers(max(top, _REMEMBERED), deadline, self._own_ids())
        with self._lock:
            previous = self._container_sizes
            self._container_sizes = {
                id(c): (_type_name(type(c)), (stored_len(c) or 0)) for c in largest
            }
        if baseline:
            return {
                "remembered": len(largest),
                "largest_len": (stored_len(largest[0]) or 0) if largest else 0,
                "partial": partial,
            }
        floor = min(n for _, n in previous.values()) if len(previous) >= _REMEMBERED else 0
        names = _module_globals()
        ignore = {id(largest), id(names), id(previous)}
        rows: list[dict[str, Any]] = []
        for c in largest:
            if len(rows) >= top:
                break
            if time.perf_counter() < deadline and _kept_by_tooling(c, ignore, names):
                continue  # linecache's cache, a lensbook ring: never the growing container
            name = _type_name(type(c))
            length = stored_len(c) or 0
            row: dict[str, Any] = {
                "type": name,
                "len": length,
                "kb": round(stored_size(c) / _KB, 1),
            }
            seen = previous.get(id(c))
            if seen is not None and seen[0] == name:
                row["grew"] = length - seen[1]
            elif previous:
                # not among the largest last time: it had at most `floor` items then
                row["grew_at_least"] = length - floor
            types_key = "value_types" if issubclass(type(c), dict) else "item_types"
            found_types = _value_types(stored_members(c))
            if found_types:
                row[types_key] = found_types
            if len(rows) < 3:
                chain = _referrer_chain(c, names, 4, deadline + 1.0, ignore, self.share_values)
                row["held_by"] = " <- ".join(chain[1:]) if len(chain) > 1 else None
                fix = fix_for(row["held_by"] or "")
                if fix:
                    row["fix"] = fix
            rows.append(mark_fields(row, "type", "value_types", "item_types", "held_by", "fix"))
        rows, omitted = _fit(rows, 4500)
        return {"partial": partial, "containers": rows, "omitted_for_size": omitted}

    @probe
    def referrers(self, type_name: str, max_depth: int = 8, samples: int = 2) -> dict[str, Any]:
        """What keeps objects of a type alive: referrer chains from a few old instances upward.

        Each chain goes hop by hop (closure cell, list, dict, object attribute...) until a
        module global, a class attribute, a local variable of a running frame, or the depth
        limit. Only types, sizes and names are reported, never values.

        Args:
            type_name: the type, as memory_type_growth names it ("pkg.mod.Class") or its short
                name ("Class", "dict").
            max_depth: hops to follow per chain (at most 12).
            samples: instances to follow (at most 4); identical chains are merged.

        Cost: one heap walk to find instances, then one walk per hop (~10 ms per million
        objects each), bounded to ~4 s.
        """
        _check_type_name(type_name)
        deadline = time.perf_counter() + 4.0 * self.budget_scale
        max_depth = min(max(max_depth, 1), 12)
        samples = min(max(samples, 1), 4)
        instances, count = _instances_of(type_name, deadline)
        if not instances:
            return {"type": type_name, "instances": 0, "chains": []}
        step = (len(instances) - 1) / max(samples - 1, 1)
        picks = _unique(instances[round(i * step)] for i in range(samples))
        del instances
        names = _module_globals()
        chains: dict[str, int] = {}
        roots: list[tuple[Any, Any]] = []
        named_roots: list[tuple[str, Any, Any]] = []
        for i in range(len(picks)):
            chain = " <- ".join(
                _referrer_chain(
                    picks[i],
                    names,
                    max_depth,
                    deadline,
                    {id(picks), id(names), id(roots), id(named_roots), *map(id, named_roots)},
                    self.share_values,
                    roots,
                )
            )
            chains[chain] = chains.get(chain, 0) + 1
            if roots:
                named_roots.append((chain.rsplit("held by ", 1)[-1], *roots.pop()))
        del picks
        result: dict[str, Any] = {
            "type": type_name,
            "instances": count,
            "chains": _fit([_chain_row(c, n) for c, n in chains.items()], 4500)[0],
        }
        watched = self._watch_root(named_roots)
        named_roots.clear()
        if watched is not None:
            result["retention_watch"] = watched
        return mark_fields(result, "retention_watch")  # the process's names

    def _watch_root(self, roots: list[tuple[str, Any, Any]]) -> str | None:
        """Remember the first root with a container, for memory_retained_sites to watch; the
        root's name, or None when there is nothing to watch."""
        for name, holder, held in roots:
            if is_tooling(holder) or is_tooling(held):
                continue  # lensbook's own (a schema cached on one of its classes): not a leak
            container = container_of(holder, held)
            if container is not None:
                self._end_watch("replaced")
                watch = Watch(str(name), container, max_s=RETENTION_BURST_MAX_S)
                change = None
                if not watch.weak:
                    # a strong hold on the program's container: entered in the ledger, so the
                    # run's end (done, timeout, stop, crash), lensbook.stop(), exit or the cap
                    # let it go even if memory_retained_sites is never called
                    change = intrusion.switch_on(
                        "retention watch",
                        functools.partial(self._drop_watch, watch),
                        max_seconds=RETENTION_HOLD_MAX_S,
                        detail=str(name),
                    )
                with self._lock:
                    self._watch, self._watch_change = watch, change
                return str(name)
        return None

    def _drop_watch(self, watch: Watch) -> None:
        """Forget a pending watch and let its root go (idempotent; the ledger's undo)."""
        with self._lock:
            if self._watch is watch:
                self._watch = self._watch_change = None
        watch.release()

    def _end_watch(self, reason: str) -> None:
        """Let a pending watch's root go, and its ledger entry with it."""
        with self._lock:
            watch, change = self._watch, self._watch_change
            self._watch = self._watch_change = None
        if change is not None:
            change.undo(reason)
        if watch is not None:
            watch.release()

    @probe(budget=8.0, intrusive="tracemalloc")
    def retained_sites(self, top: int = 5, frames_shown: int = 4) -> dict[str, Any]:
        """Where what a leak's root gains is allocated: the root memory_referrers last found
        (pyplot's figure managers, an lru_cache, a module global...) is watched in short
        tracemalloc bursts, and the objects its newest members hold that were allocated
        meanwhile are grouped by the first frame in the user's code (library frames as
        ``via``). A burst ends once the root gained two members; a root that grows slowly is
        sampled in several bursts (the member being filled when the first began included).
        Unlike memory_allocation_diff, work in flight is left out: only what the root keeps
        counts. Closes a tracemalloc window still open. A root the program has
        freed since (lensbook holds it weakly where its type allows) is only reported freed.

        Args:
            top: how many sites to return (at most 10).
            frames_shown: frames of each site's traceback to show (most recent first).

        Cost: bursts of tracing (16 frames) until the root gains two members, at most 0.1 s
        each, each with a walk of at most 20,000 objects below the newest members for at most
        0.05 s (no user code runs) and a rest three times as long after it; at most 8 bursts
        (~5 s) for a root that grows slowly, then the grouping (at most 2 s). The next tracing
        window, or retention burst, then rests what is left of nine times the time traced, so
        tracing keeps its duty; no window opens while a call is still bursting.
        """
        top = min(max(top, 1), 10)
        frames_shown = min(max(frames_shown, 1), 25)
        rest = self._quiet_until - time.perf_counter()
        if rest > 0:
            # bursts back to back would trace all the time: the last one's rest comes first
            # (the watch stays pending)
            return {
                "note": "tracing rests after the last retention burst (it keeps its share of "
                "the time): call again then",
                "retry_after_s": round(rest, 1),
            }
        with self._lock:
            watch, change = self._watch, self._watch_change
            self._watch = self._watch_change = None
        if change is not None:
            change.forget()  # taken by this burst, which lets it go in any case (below)
        if watch is None:
            return {
                "note": "no root to watch: call memory_referrers first, on a type whose "
                "chain ends at a root (a registry, a cache, a module global)"
            }
        try:
            return self._retention_burst(watch, top, frames_shown)
        finally:
            watch.release()  # the root is the program's alone again, whatever ended the burst

    def _retention_burst(self, watch: Watch, top: int, frames_shown: int) -> dict[str, Any]:
        """`retained_sites` for the watch it took: short bursts until one saw the root gain
        two members (or `RETENTION_BURSTS`), what the newest members hold walked in each, the
        traces grouped by the user's allocating line."""
        root = mark_fields({"root": watch.root}, "root")  # the process's names
        if watch.target() is None:
            return {
                **root,
                "note": "the program freed this root before its burst: nothing to watch",
            }
        with self._lock:
            if self._window is not None and (self._window.owned or self._window.ended_by):
                self._close_window()  # its bursts would overlap these
            self._retaining = True
        bursts = 0
        traced = rested = last = 0.0
        resting = threading.Event()  # never set: the rest between two bursts
        try:
            while bursts < RETENTION_BURSTS and watch.target() is not None:
                if bursts:
                    rest = RETENTION_BURST_REST * last
                    resting.wait(rest)
                    rested += rest
                bursts += 1
                whole, last = self._one_retention_burst(watch, first=bursts == 1)
                traced += last
                if whole or not last:
                    # a member came whole while tracing was on; or the process was tracing
                    # already (its traces outlive a burst: a second would count them again)
                    break
        finally:
            with self._lock:
                self._retaining = False
                # the rest the duty asks for, less what the bursts already rested between them
                rest = traced * (1.0 / self.trace_duty - 1.0) - rested
                self._quiet_until = max(self._quiet_until, time.perf_counter() + rest)
        grouped = _resolved(_group_traces(watch.traces, time.perf_counter() + 2.0))
        total = sum(stat.size for stat in grouped.sites.values())
        best = heapq.nlargest(top, grouped.sites.items(), key=lambda kv: kv[1].size)
        sites = [
            _site_entry(site, stat.size, stat.count, total, stat, frames_shown)
            for site, stat in best
        ]
        return {
            **root,
            "new_members": watch.new_members,
            "bursts": bursts,
            "objects_walked": watch.walked,
            "traced_objects": len(watch.traces),
            "kb": round(total / _KB, 1),
            "partial": watch.partial,
            "sites": _fit(sites, 3000)[0],
        }

    def _one_retention_burst(self, watch: Watch, first: bool) -> tuple[bool, float]:
        """Trace (`DEEP_FRAMES`) until the root gained two members or `RETENTION_BURST_MAX_S`,
        walk its newest members, stop tracing, add the traces to the watch's; whether the
        root gained its two members, and how long lensbook traced (0 when the process was
        tracing already: then only what this burst added is walked)."""
        token = _heap.burst_begins(force=True)  # listings of the heap go first (0.2 s at most)
        change: intrusion.Change | None = None
        try:
            with self._lock:
                ours = not tracemalloc.is_tracing()
                if not ours:
                    _heap.burst_ends(token)  # the process's tracing: not a burst of ours
                watch.begin()  # before tracing: nothing it allocates is traced
                if ours:
                    tracemalloc.start(DEEP_FRAMES)  # deep: from a library's line to the user's
                    try:
                        # raises RunEnded (tracing stopped again) if the asking run has ended
                        change = intrusion.switch_on(
                            "tracemalloc",
                            tracemalloc.stop,
                            max_seconds=RETENTION_BURST_MAX_S + RETENTION_WALK_S + 5.0,
                            detail=f"{DEEP_FRAMES} frames, one retention burst",
                        )
                    except BaseException:
                        tracemalloc.stop()  # nothing in the ledger owns it (a no-op if undone)
                        raise
            began = time.perf_counter()
            traced = 0.0
            try:
                pause = threading.Event()  # never set: a poll every 10 ms while the root grows
                while not watch.finished() and tracemalloc.is_tracing():
                    pause.wait(0.01)
                whole = watch.gained() >= watch.members_wanted
                deadline = time.perf_counter() + RETENTION_WALK_S * self.budget_scale
                # the member being filled when tracing began holds what the root gains too;
                # under the process's own tracing its older traces would count as well
                watch.collect(deadline, with_last=first and ours)
            finally:
                if change is not None:
                    change.undo("retention burst done")
                    traced = time.perf_counter() - began
                    with self._lock:
                        # (an error ends the call here: the duty's rest still follows)
                        self._quiet_until = time.perf_counter() + traced / self.trace_duty
        finally:
            _heap.burst_ends(token)
        watch.settle()  # sizes and traces once tracing is off: none of it is traced
        return whole, traced

    def rules(self) -> Sequence[Rule]:
        return (LeakRule(), RssSinceLoad())


def _site_entry(
    site: RawFrame, size: int, count: int, total: int, stat: _SiteStat, frames_shown: int
) -> dict[str, Any]:
    """One allocation site as the probes report it: where, how much, its source line, its
    traceback and the library frames the user's line called into (``via``)."""
    filename, lineno = site
    entry: dict[str, Any] = {
        "site": _where(filename, lineno),
        "kb": round(size / _KB, 1),
        "blocks": count,
        "share": round(size / total, 3) if total > 0 else None,
        "origin": _origin(filename),
        "function": function_at(filename, lineno),
        "code": source_line(filename, lineno, 100),
    }
    if len(stat.traceback) > 1:
        entry["traceback"] = [_where(f, n) for f, n in stat.traceback[:frames_shown]]
    _, detail = attribute(stat.traceback)
    if detail:
        # the user's line called into a library that did the allocating
        entry["via"] = [f"{_where(f, n)} ({_origin(f)})" for f, n in detail[:frames_shown]]
    # paths, function names and source lines are the process's text
    return mark_fields(entry, "site", "function", "code", "traceback", "via")


def _chain_row(chain: str, samples: int) -> dict[str, Any]:
    row: dict[str, Any] = {"chain": chain, "samples": samples}
    fix = fix_for(chain)
    if fix:
        row["fix"] = fix
    return mark_fields(row, "chain", "fix")  # names of the process's types and variables


def _unique(items: Iterable[Any]) -> list[Any]:
    seen: set[int] = set()
    out = []
    for item in items:
        if id(item) not in seen:
            seen.add(id(item))
            out.append(item)
    return out


def _types_named(wanted: set[str]) -> dict[str, type]:
    """Type objects for census names, found among the classes of loaded modules and builtins."""
    found: dict[str, type] = {}
    for module in list(sys.modules.values()):
        namespace = stored_attr(module, "__dict__")
        if type(namespace) is not dict:
            continue
        for value in list(dict.values(namespace)):
            if issubclass(type(value), type):  # (a proxy to a class is not one)
                name = _type_name(value)
                if name in wanted:
                    found.setdefault(name, value)
    for t in (
        types.FunctionType,
        types.MethodType,
        types.CellType,
        types.FrameType,
        types.CodeType,
    ):
        found.setdefault(_type_name(t), t)
    return found


def _value_types(values: Iterable[Any], sample: int = 200) -> dict[str, int]:
    """The types of a container's first items (a sample, so it stays cheap on huge ones)."""
    # the sample is copied in one C call first: the program may be filling the container
    counts = Counter(_type_name(type(v)) for v in list(itertools.islice(values, sample)))
    return dict(counts.most_common(3))


# -- the offline investigator's rule ------------------------------------------------------------

#: bytes still held after one window that count, judged against the process: this share of
#: its RSS, at a rate that would add this share of RSS in ten minutes...
LEAK_MIN_SHARE_OF_RSS = 0.02
LEAK_TEN_MIN_SHARE_OF_RSS = 0.25
#: ...with absolute floors only against noise (a tiny process)
LEAK_MIN_KB = 256.0
LEAK_MIN_KB_PER_S = 32.0
#: blocks at least this large on average are blobs (bytes, arrays), which no census counts;
#: blobs alone are a leak only with RSS rising steadily over at least this much history
LEAK_BLOB_BYTES = 4096
LEAK_HISTORY_MIN_S = 60.0
#: GC-tracked objects that must appear between the two censuses: a share of the heap, with a
#: floor against the objects a busy process has in flight at any moment
OBJECTS_MIN_SHARE = 0.02
OBJECTS_MIN_DELTA = 20_000
#: objects that grew are looked at again this long after: a leak goes on growing at this share
#: of its rate at least; objects in flight at the second look do not
OBJECTS_RECHECK_S = 2.0
OBJECTS_RECHECK_SHARE = 0.3
#: items a container seen at both looks (or one held by a named root) must gain
CONTAINER_MIN_GROWTH = 5_000
#: instances of a class that must appear for it to be followed to what keeps it
SUSPECT_MIN_DELTA = 10


class LeakRule(Rule):
    """Memory that grows and stays: opens a tracemalloc window and takes two censuses (and a
    third when objects alone grew, to tell a leak from a batch in flight)."""

    name = "memory_leak"
    snapshots_needed = 2
    gap = 3.0

    def wants(self, ev: Evidence) -> Sequence[ProbeCall]:
        if not ev.snapshots:
            return []
        calls = [
            ProbeCall("memory_rss_trend"),
            ProbeCall("memory_census", {"top": 10}),
            ProbeCall("memory_largest_containers", {"baseline": True}),
            # a few frames, so a library's allocation is blamed on the user's line that called it;
            # the window is short (closed by memory_allocation_diff, stops itself after 30 s)
            ProbeCall("memory_trace_start", {"frames": 6, "max_seconds": 30.0}),
        ]
        if len(ev.snapshots) < 2:
            return calls
        calls += [
            ProbeCall("memory_allocation_diff", {"top": 8}),
            ProbeCall("memory_type_growth", {"top": 8}),
            ProbeCall("memory_largest_containers", {"top": 5}),
        ]
        first = _first_growth(ev)
        for suspect in _suspect_types(first):
            calls.append(ProbeCall("memory_referrers", {"type_name": suspect, "max_depth": 12}))
        if _objects_grew(first):
            # objects alone: look once more, to tell a heap that goes on growing from a batch
            # of objects that happened to be in flight at the second look
            calls.append(ProbeCall("memory_type_growth", {"top": 8, "after_s": OBJECTS_RECHECK_S}))
        if _native_rise(ev, as_dict(ev.result("memory_allocation_diff")))[0] is not None:
            # RSS rose: look again, to tell a leak from a batch in flight
            calls.append(ProbeCall("memory_rss_trend", {"after_s": NATIVE_RECHECK_S}))
        if any(
            as_dict(v).get("retention_watch") for _, v in ev.results.get("memory_referrers", [])
        ):
            # a chain ended at a root: where what it gains is allocated
            calls.append(ProbeCall("memory_retained_sites"))
        return calls

    def judge(self, ev: Evidence) -> Sequence[Finding]:
        diff = as_dict(ev.result("memory_allocation_diff"))
        growth = _first_growth(ev)
        containers = as_dict(ev.result("memory_largest_containers"))
        refs = _best_referrers(ev)
        retained = as_dict(ev.result("memory_retained_sites"))
        kept = [
            s
            for s in retained.get("sites") or []
            if isinstance(s, dict) and s.get("origin") == "user"
        ]
        growth_kb = float(diff.get("growth_kb") or 0.0)
        window = float(diff.get("window_s") or 0.0) or ev.elapsed() or 1.0
        rate_kb = growth_kb / window
        sites = [s for s in diff.get("sites") or [] if isinstance(s, dict)]
        grown = [g for g in growth.get("growing") or [] if isinstance(g, dict)]
        tracked_delta = int(growth.get("tracked_delta") or 0)
        growing_box = _growing_container(containers)
        box_grew = _grew(growing_box) if growing_box else 0

        rss_kb = float(ev.latest("rss_mb", 0.0) or 0.0) * 1024
        # Each measure is judged against the process and must persist. Bytes still held at the
        # end of a window (or of each tracing burst) include whatever is in flight then: a
        # pandas batch half built is not a leak. Small blocks that stay are held by objects,
        # which the censuses count; so bytes alone count only in large blocks (blobs, arrays,
        # which go to RSS one for one), and only when the process's RSS rises steadily across
        # the sampled history (the metrics store: samples from before the run as well).
        # Objects count when the heap gained a share of itself between two censuses seconds
        # apart; a container only when it is the same one seen at both looks, or is held by a
        # named root (a global, a class, a known registry).
        blob_kb = sum(
            float(site["kb"])
            for site in sites
            if float(site.get("kb") or 0) * _KB >= LEAK_BLOB_BYTES * max(int(site["blocks"]), 1)
        )
        trend = as_dict(ev.result("memory_rss_trend"))
        leak_by_bytes = (
            blob_kb >= max(LEAK_MIN_KB, LEAK_MIN_SHARE_OF_RSS * rss_kb)
            and blob_kb / window >= max(LEAK_MIN_KB_PER_S, LEAK_TEN_MIN_SHARE_OF_RSS * rss_kb / 600)
            # a rise of a few seconds (lensbook's own start among them) proves nothing
            and float(trend.get("span_s") or 0.0) >= LEAK_HISTORY_MIN_S
            and steady_rise(trend.get("points") or [])
        )
        leak_by_objects = _objects_grew(growth) and _objects_go_on(growth, ev)
        leak_by_container = box_grew >= CONTAINER_MIN_GROWTH and _persistent(growing_box)
        if not (leak_by_bytes or leak_by_objects or leak_by_container):
            return _rss_rise(ev, diff, growth, sites)

        rss0, rss1 = ev.first("rss_mb"), ev.latest("rss_mb")
        available = ev.latest("host_available_mb")
        parts = []
        if diff:
            parts.append(
                f"In a {window:.1f} s tracemalloc window ({diff.get('frames', 1)} frame), "
                f"memory still held grew by {_kb(growth_kb)} ({_kb(rate_kb)}/s)"
            )
        if isinstance(rss0, (int, float)) and isinstance(rss1, (int, float)):
            parts.append(f"RSS went {rss0:.1f} -> {rss1:.1f} MB over {ev.elapsed():.1f} s")
        if growth:
            parts.append(
                f"GC-tracked objects {growth.get('tracked_before')} -> "
                f"{growth.get('tracked_after')} ({tracked_delta:+d} in "
                f"{growth.get('interval_s')} s)"
            )
        context = "; ".join(parts) + "."

        obs = []
        if kept:
            obs.append(_retained_observation(retained, kept[0]))
        if sites:
            first = sites[0]
            obs.append(
                f"Top allocation site {first['site']}"
                + (f" in {first['function']}" if first.get("function") else "")
                + f" (`{first.get('code', '')}`): "
                f"+{_kb(float(first['kb']))} in {first['blocks']} blocks"
                + (
                    f" ({float(first['share']) * 100:.0f}% of the growth)"
                    if first.get("share")
                    else ""
                )
            )
            if first.get("via"):
                obs.append(
                    "the user's code at that line calls into "
                    + " -> ".join(reversed(first["via"][:3]))
                    + ", which allocates"
                )
            elif first.get("traceback"):
                obs.append("called from " + " <- ".join(first["traceback"][1:3]))
            more = ", ".join(f"{s['site']} +{_kb(float(s['kb']))}" for s in sites[1:4])
            if more:
                obs.append(f"next: {more}")
        # types that grew by a tenth of the leader or more; the rest is noise
        grown = [g for g in grown if int(g["delta"]) * 10 >= int(grown[0]["delta"])]
        if grown:
            obs.append(
                "growing types: "
                + ", ".join(
                    f"{g['type']} {g['delta']:+d}"
                    + (f" (class at {g['defined_at']})" if g.get("defined_at") else "")
                    for g in grown[:4]
                )
            )
        funcs = [f for f in growth.get("growing_functions") or [] if isinstance(f, dict)]
        callbacks = [f for f in funcs if int(f.get("delta", 0)) >= OBJECTS_MIN_DELTA // 20]
        if callbacks:
            obs.append(
                "functions created and kept: "
                + ", ".join(f"{f['function']} {f['delta']:+d}" for f in callbacks[:3])
            )
        if growing_box:
            obs.append(
                f"largest growing container: {growing_box['type']} of {growing_box['len']} "
                f"items ({box_grew:+d}{'' if 'grew' in growing_box else ' at least'}) <- "
                f"{growing_box.get('held_by') or 'holder unknown'}"
            )
        chains = [c for c in refs.get("chains") or [] if isinstance(c, dict)]
        chains.sort(key=lambda c: not c.get("fix"))  # a known retainer first
        if chains:
            obs.append(f"{refs.get('type')} is kept alive by: {chains[0]['chain']}")
        observation = "; ".join(obs) + "." if obs else "Memory grows; no site was found."

        hypothesis = _hypothesis(kept or sites, callbacks, growing_box, refs)
        severity: Any = "warning"
        if isinstance(available, (int, float)) and rate_kb > 0:
            minutes_left = available * 1024 / rate_kb / 60
            if minutes_left < 15:
                severity = "critical"
                hypothesis += (
                    f" At this rate the host's {available:.0f} MB of available memory lasts "
                    f"about {minutes_left:.0f} min."
                )
        return [
            Finding(
                anomaly_type="memory_leak",
                severity=severity,
                context=context,
                observation=observation,
                hypothesis=hypothesis,
            )
        ]


def _native_rise(ev: Evidence, diff: dict[str, Any]) -> tuple[Growth | None, PythonShare | None]:
    """The RSS rise by the relative rule every skill uses, and what the tracemalloc window
    says of it."""
    rise = rss_growth(summary(_rss_points(ev)), ev)
    return rise, python_share(rise, diff) if rise is not None else None


def _rss_points(ev: Evidence) -> list[list[float]]:
    """The RSS series of the rule's own look (`memory_rss_trend`, not the look again)."""
    looks = [v for args, v in ev.results.get("memory_rss_trend", []) if not args.get("after_s")]
    points = as_dict(looks[-1]).get("points") if looks else None
    return [p for p in points or [] if isinstance(p, list) and len(p) == 2]


def _rss_rise(
    ev: Evidence, diff: dict[str, Any], growth: dict[str, Any], sites: list[dict[str, Any]]
) -> list[Finding]:
    """RSS that rises steadily (the relative rule every skill uses) and still goes on when
    looked at again, with no census or container grown with it. What the tracemalloc window
    says of it makes the finding:

    - ``native_memory_growth``: RSS gained at least 1% of itself while traced and the blocks
      Python allocated then held under a fifth of it; no Python line is named (what the
      window's allocations hold is not where that memory went);
    - ``memory_growth``: Python's blocks held more of it (the most at the user's line), or the
      window could not tell (RSS gained too little while traced: large blocks allocated
      between the bursts, or a slow rise).
    """
    rise, python = _native_rise(ev, diff)
    if rise is None:
        return []
    # a rise that stopped (a batch loaded, then freed) is no leak: it must go on after the looks
    again = [v for args, v in ev.results.get("memory_rss_trend", []) if args.get("after_s")]
    later = as_dict(again[-1]) if again else {}
    went_on = float(later.get("rss_mb_now") or 0.0) - rise.end_mb
    after_s = float(later.get("after_s") or 0.0)
    if not later or went_on < NATIVE_RECHECK_SHARE * rise.mb_per_s * after_s:
        return []
    weighed = (
        python.stated()
        if python is not None
        else "the tracemalloc window could not weigh it (no burst traced, or a partial listing)"
    )
    observation = (
        f"In a {diff.get('window_s')} s window ({diff.get('bursts') or 'no'} tracing bursts), "
        f"{weighed}; {after_s:g} s later RSS had gained {went_on:.1f} MB more"
    )
    if growth:
        observation += (
            f". GC-tracked objects {growth.get('tracked_before')} -> "
            f"{growth.get('tracked_after')} in {growth.get('interval_s')} s"
        )
    native = python is not None and python.native
    points = _rss_points(ev)
    span = points[-1][0] - points[0][0] if points else 0.0
    if not native and (span < LEAK_HISTORY_MIN_S or not steady_rise(points)):
        # held by Python, or not told apart: as for blobs (`leak_by_bytes`), a rise of a few
        # seconds proves nothing (a pandas batch being built); a minute of steady rise does
        return []
    users = [site for site in sites if site.get("origin") == "user"]
    if native:
        kind = "native_memory_growth"
        hypothesis = (
            "The memory is allocated outside Python's allocators, which tracemalloc cannot "
            "see: native code that allocates and keeps (a C extension, ctypes or cffi, a "
            "library's own pool or cache), or memory the C allocator keeps after it was freed "
            "(fragmentation, worst with many threads). To tell them apart: a native leak grows "
            "with the calls into that code whatever the allocator; fragmentation shrinks with "
            "MALLOC_ARENA_MAX=2 or after ctypes.CDLL('libc.so.6').malloc_trim(0)."
        )
    elif python is not None and python.conclusive:
        kind = "memory_growth"
        where = (
            f", the most at {users[0]['site']}"
            + (f" in {users[0]['function']}" if users[0].get("function") else "")
            + f" (`{users[0].get('code', '')}`)"
            if users
            else ""
        )
        hypothesis = (
            f"Something allocates and keeps: Python's allocations hold {python.share:.0%} of "
            f"the rise{where}, in blocks no census counts (bytes, arrays, buffers) and no "
            "container seen twice holds; memory_referrers on what that line makes names what "
            "keeps them."
        )
    else:
        kind = "memory_growth"
        hypothesis = (
            "RSS keeps growing, but while the window traced it gained too little to tell "
            "Python's memory from native: a leak of a few large blocks allocated between the "
            "tracing bursts, or a slow native rise. A longer window (memory_trace_start, then "
            "memory_allocation_diff some seconds later) tells them apart."
        )
    severity: Any = "warning"
    available = ev.latest("host_available_mb")
    if isinstance(available, (int, float)) and available / rise.mb_per_s < 15 * 60:
        severity = "critical"
        hypothesis += (
            f" At this rate the host's {available:.0f} MB of available memory lasts about "
            f"{available / rise.mb_per_s / 60:.0f} min."
        )
    return [
        Finding(
            anomaly_type=kind,
            severity=severity,
            context=f"RSS went {rise.start_mb:.1f} -> {rise.end_mb:.1f} MB over "
            f"{rise.span_s:.0f} s ({rise.mb_per_s:.2f} MB/s, {rise.samples} samples).",
            observation=observation + ".",
            hypothesis=hypothesis,
        )
    ]


def _retained_observation(retained: dict[str, Any], site: dict[str, Any]) -> str:
    """What a watched root gained, by the user's line that allocated it."""
    text = (
        f"What {retained.get('root')} gained while watched ({retained.get('new_members')} new "
        f"members) was allocated at {site['site']}"
        + (f" in {site['function']}" if site.get("function") else "")
        + f" (`{site.get('code', '')}`): {_kb(float(site['kb']))} of the "
        f"{_kb(float(retained.get('kb') or 0))} traced in them"
    )
    if site.get("via"):
        text += (
            "; the user's code at that line calls into "
            + " -> ".join(reversed(site["via"][:3]))
            + ", which allocates"
        )
    return text


def _kb(kb: float) -> str:
    return f"{kb / 1024:.1f} MB" if abs(kb) >= 1024 else f"{kb:.0f} KB"


def _suspect_types(growth: Any) -> list[str]:
    """The growing types worth a referrer chain: a user or library class that grew by a lot;
    else the (up to three) that grew least among those that grew at all: one per request (a
    figure, a session), the top object the rest hangs from, whose holder is the leak's root."""
    rows = [
        row
        for row in as_dict(growth).get("growing") or []
        if isinstance(row, dict)
        and row.get("origin") in ("user", "library")
        and int(row.get("delta", 0)) >= SUSPECT_MIN_DELTA
    ]
    for row in rows:
        if int(row.get("delta", 0)) >= 1000:
            return [str(row["type"])]
    rows += [r for r in as_dict(growth).get("fewest_growing_classes") or [] if isinstance(r, dict)]
    rows.sort(key=lambda r: int(r.get("delta", 0)))
    return list(dict.fromkeys(str(r["type"]) for r in rows))[:3]


def _best_referrers(ev: Evidence) -> dict[str, Any]:
    """Of the referrer chains followed, the one that ends at the most telling root: a known
    retainer (with its fix), then a module global or class attribute, then any."""

    def rank(result: dict[str, Any]) -> int:
        chains = [c for c in result.get("chains") or [] if isinstance(c, dict)]
        # (a class attribute has a fix too, but a well-known retainer names the cause better)
        if any(c.get("fix") and "class attribute" not in str(c.get("chain")) for c in chains):
            return 3
        if any(
            "module global" in str(c.get("chain")) or "class attribute" in str(c.get("chain"))
            for c in chains
        ):
            return 2
        return 1 if chains else 0

    found = [as_dict(v) for _, v in ev.results.get("memory_referrers", [])]
    return max(found, key=rank) if found else {}


def _growing_container(containers: dict[str, Any]) -> dict[str, Any]:
    rows = [c for c in containers.get("containers") or [] if isinstance(c, dict)]
    growing = [c for c in rows if _grew(c) > 0]
    return max(growing, key=_grew) if growing else {}


def _grew(container: dict[str, Any]) -> int:
    return int(container.get("grew") or container.get("grew_at_least") or 0)


def _first_growth(ev: Evidence) -> dict[str, Any]:
    """The type growth between the rule's two looks (not the recheck after them)."""
    found = [v for args, v in ev.results.get("memory_type_growth", []) if not args.get("after_s")]
    return as_dict(found[-1]) if found else {}


def _objects_grew(growth: dict[str, Any]) -> bool:
    """Whether the GC-tracked objects grew by a share of the heap (with a floor) between looks."""
    delta = int(growth.get("tracked_delta") or 0)
    before = int(growth.get("tracked_before") or 0)
    return delta >= max(OBJECTS_MIN_DELTA, OBJECTS_MIN_SHARE * before)


def _objects_go_on(growth: dict[str, Any], ev: Evidence) -> bool:
    """Whether the objects kept growing after the second look, at a good share of the rate
    seen between the first two (true when no recheck was made: nothing says otherwise)."""
    again = [v for args, v in ev.results.get("memory_type_growth", []) if args.get("after_s")]
    if not again:
        return True
    recheck = as_dict(again[-1])
    if "tracked_delta" not in recheck:
        return True  # the recheck could not compare (no earlier census): no evidence against
    rate = int(growth.get("tracked_delta") or 0) / max(float(growth.get("interval_s") or 1), 1e-6)
    rate_again = int(recheck["tracked_delta"]) / max(float(recheck.get("interval_s") or 1), 1e-6)
    return rate_again >= OBJECTS_RECHECK_SHARE * rate


def _persistent(container: dict[str, Any]) -> bool:
    """Whether a growing container is one that stays: the same object at both looks, or one
    held by a named root. A new container held by a local variable or by nothing nameable is
    most often work in flight (a batch's list of rows), which the next moment frees."""
    if "grew" in container:
        return True
    held_by = str(container.get("held_by") or "")
    return bool(container.get("fix")) or any(
        root in held_by for root in ("held by module global", "held by class attribute")
    )


def _hypothesis(
    sites: list[dict[str, Any]],
    callbacks: list[dict[str, Any]],
    box: dict[str, Any],
    refs: dict[str, Any],
) -> str:
    where = f" allocated at {sites[0]['site']}" if sites else ""
    chains = [c for c in refs.get("chains") or [] if isinstance(c, dict)]
    known = next((c for c in chains if c.get("fix")), None) or (box if box.get("fix") else None)
    if known is not None:
        text = str(known.get("chain") or known.get("held_by") or "")
        root = text.rsplit("held by ", 1)[-1]
        kept = f"{refs.get('type') or box.get('type') or 'objects'!s}" if refs else "objects"
        return (
            f"{kept} pile up{where} and stay alive because {root} keeps them. Fix: {known['fix']}."
        )
    held_by = str(box.get("held_by") or "")
    # the end of the chain names the root: "module global x.y", "class attribute X.y", ...
    root = held_by.rsplit("held by ", 1)[-1] if "held by " in held_by else ""
    if callbacks:
        fn = callbacks[0]["function"]
        into = f"a {box['type']} of {box['len']} callbacks under {root}" if root else "a registry"
        kept = (
            f"; each keeps its {str(refs['type']).rsplit('.', 1)[-1]} alive through its closure"
            if refs.get("chains")
            else ""
        )
        return (
            f"Callbacks are registered and never removed: {fn} is created per call and "
            f"added to {into}, which only grows{kept}. Unregister the callback when its owner "
            "is done (or hold it by weak reference)."
        )
    if root.startswith(("module global", "class attribute")):
        return (
            f"An unbounded cache: the {box['type']} {root} only grows (no eviction); its "
            f"entries are{where}. Bound it (LRU, TTL) or clear it."
        )
    return (
        f"Objects{where} are allocated and never released; follow the referrer chain to the "
        "structure that keeps them."
    )
