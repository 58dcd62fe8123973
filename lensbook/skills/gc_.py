"""The `gc` skill: how often the cycle collector runs, how long it pauses, and what it reclaims.

Collection counts come from `gc.get_stats()`; pause times from a `gc.callbacks` hook installed
on first use (never at import) and removed by `close()`. Which types the collector reclaims is
seen through a short `DEBUG_SAVEALL` window: the cyclic garbage of that window is counted by
type (and by whether the type defines `__del__`), then released.
"""

from __future__ import annotations

import gc
import heapq
import os
import threading
import time
import types
from collections import Counter, deque
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any, ClassVar

from lensbook.skills import _heap, intrusion
from lensbook.skills._frames import code_site as _code_site
from lensbook.skills._frames import origin as _origin
from lensbook.skills._frames import type_name as _type_name
from lensbook.skills._frames import type_origin as _type_origin
from lensbook.skills._frames import type_site as _type_site
from lensbook.skills._heap import Pacer
from lensbook.skills._stacks import qualname as _qualname
from lensbook.skills._static import TypeCount, class_attr, stored_members
from lensbook.skills.base import Skill, probe
from lensbook.skills.history_metrics import FullCollectionsSinceLoad
from lensbook.skills.history_rules import GcPausesSinceLoad
from lensbook.skills.rules import Evidence, Finding, ProbeCall, Rule, as_dict
from lensbook.skills.untrusted import mark_fields

__all__ = ["GCChurnRule", "GCDisabledRule", "GCSkill", "UncollectableRule"]

#: collections kept for pause statistics (about a minute of a busy process)
PAUSE_HISTORY = 8192

#: held while a cycle_types window keeps the collector's garbage (`gc.DEBUG_SAVEALL`)
_saveall_window = threading.Lock()


def _after_fork_in_child() -> None:
    """A child forked during a window has it undone (`intrusion`), and a lock of its own: the
    thread of the parent's that held it does not exist there."""
    global _saveall_window
    _saveall_window = threading.Lock()


if hasattr(os, "register_at_fork"):
    os.register_at_fork(after_in_child=_after_fork_in_child)


def _saveall_off() -> None:
    gc.set_debug(gc.get_debug() & ~gc.DEBUG_SAVEALL)


def _nothing() -> None:
    """The undo of a window that changed nothing (the program keeps its own DEBUG_SAVEALL)."""


@dataclass(slots=True)
class _Pause:
    """One collection the gc callback timed (slots: thousands are kept)."""

    at: float
    generation: int
    seconds: float
    collected: int
    uncollectable: int


def _finalizer_of(t: type) -> str | None:
    """Where `t`'s `__del__` is defined ("builtin" for C finalizers), or None if it has none."""
    method = class_attr(t, "__del__")
    if method is None:
        return None
    return _code_site(method.__code__) if type(method) is types.FunctionType else "builtin"


def _percentile(sorted_values: Sequence[float], q: float) -> float:
    if not sorted_values:
        return 0.0
    index = min(len(sorted_values) - 1, max(0, round(q * (len(sorted_values) - 1))))
    return sorted_values[index]


class GCSkill(Skill):
    id = "gc"
    title = "Garbage collector"
    description = "GC collections and pauses per generation, cycle garbage by type, thresholds"
    system_prompt = (
        "You are the garbage-collector operator of a live Python process. CPython frees most "
        "objects by reference counting; the cyclic collector only reclaims reference cycles, "
        "in three generations. Young collections are cheap and frequent; a generation-2 (full) "
        "collection walks every tracked object and pauses the process. Watch the gen-2 "
        "collection rate, pause times and the share of wall time spent collecting; find which "
        "types the collector reclaims (gc_cycle_types), especially objects with __del__ in "
        "cycles, and uncollectable objects left in gc.garbage. Advise on the fix (break the "
        "cycle with a weak reference or an explicit close, gc.freeze() after startup, "
        "thresholds) with numbers."
    )
    # what the coordinator and the watcher know of it (see `Skill`)
    keywords = ("gc", "garbage", "collect", "pause", "cycle")
    families: ClassVar[dict[str, tuple[str, ...]]] = {
        "GC pressure": ("gc_churn", "gc_uncollectable")
    }
    investigates = ("GC pressure",)
    counters = frozenset(
        {
            "gc_collections",
            "gc_collections_gen0",
            "gc_collections_gen1",
            "gc_collections_gen2",
            "gc_collected",
        }
    )
    unwatched = frozenset({"gc_threshold0"})
    watched = True

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._installed_at: float | None = None
        self._change: intrusion.Change | None = None
        self._started: float | None = None
        self._pauses: deque[_Pause] = deque(maxlen=PAUSE_HISTORY)
        self._pause_total = [0.0, 0.0, 0.0]
        self._pause_max = [0.0, 0.0, 0.0]
        self._timed = [0, 0, 0]

    # -- the gc.callbacks hook --------------------------------------------------------------

    def _ensure_hook(self) -> None:
        with self._lock:
            if self._installed_at is None:
                self._installed_at = time.time()
                gc.callbacks.append(self._on_gc)
                # removed by lensbook.stop() and at exit
                self._change = intrusion.switch_on(
                    "gc.callbacks hook", self.close, max_seconds=None, session=True
                )

    def _on_gc(self, phase: str, info: dict[str, int]) -> None:
        # runs inside every collection, in whichever thread triggered it: keep it tiny
        if phase == "start":
            self._started = time.perf_counter()
            return
        started, self._started = self._started, None
        if started is None:
            return
        seconds = time.perf_counter() - started
        gen = min(max(int(info.get("generation", 0)), 0), 2)
        self._timed[gen] += 1
        self._pause_total[gen] += seconds
        if seconds > self._pause_max[gen]:
            self._pause_max[gen] = seconds
        self._pauses.append(
            _Pause(
                time.time(),
                gen,
                seconds,
                int(info.get("collected", 0)),
                int(info.get("uncollectable", 0)),
            )
        )

    def close(self) -> None:
        """Remove the gc.callbacks hook (the statistics gathered so far are kept)."""
        with self._lock:
            if self._installed_at is not None:
                if self._on_gc in gc.callbacks:
                    gc.callbacks.remove(self._on_gc)
                self._installed_at = None
                self._started = None
            change, self._change = self._change, None
        if change is not None:
            change.forget()

    # -- snapshot ---------------------------------------------------------------------------

    def snapshot(self) -> dict[str, Any]:
        """Cost: ~5 µs (gc counters and stats); installs the pause hook on first use."""
        self._ensure_hook()
        stats = gc.get_stats()
        counts = gc.get_count()
        return {
            "gc_enabled": _heap.collector_enabled(),
            "gc_threshold0": gc.get_threshold()[0],
            "gc_count0": counts[0],
            "gc_count1": counts[1],
            "gc_count2": counts[2],
            "gc_collections_gen0": stats[0]["collections"],
            "gc_collections_gen1": stats[1]["collections"],
            "gc_collections_gen2": stats[2]["collections"],
            "gc_collected": sum(s["collected"] for s in stats),
            "gc_uncollectable": sum(s["uncollectable"] for s in stats),
            "gc_garbage": len(gc.garbage),
            "gc_frozen": gc.get_freeze_count(),
            "gc_pause_ms_total": round(sum(self._pause_total) * 1000, 2),
            "gc_pause_ms_gen2_total": round(self._pause_total[2] * 1000, 2),
            "gc_pause_ms_max": round(max(self._pause_max) * 1000, 2),
        }

    # -- probes -----------------------------------------------------------------------------

    @probe
    def collections(self, window_s: float = 60.0) -> dict[str, Any]:
        """Collections per generation over the last `window_s`: rate, pauses, objects reclaimed.

        Pauses are timed by a gc.callbacks hook installed on first use; `covered_s` says how
        much of the window it has seen. Cumulative counts since start are included.

        Args:
            window_s: how far back to look, in seconds.

        Cost: microseconds (reads the hook's ring buffer of the last 8192 collections).
        """
        self._ensure_hook()
        now = time.time()
        installed = self._installed_at or now
        since = now - max(window_s, 0.1)
        kept = list(self._pauses)
        oldest_kept = kept[0].at if len(kept) == PAUSE_HISTORY else installed
        # pauses and the time they are shared over start at the same moment: pauses kept from
        # before a close() and a re-install are outside the hook's current coverage
        start = max(since, installed, oldest_kept)
        covered = now - start
        recent = [p for p in kept if p.at >= start]
        stats = gc.get_stats()
        generations = []
        for gen in range(3):
            mine = [p for p in recent if p.generation == gen]
            pauses = sorted(p.seconds * 1000 for p in mine)
            generations.append(
                {
                    "generation": gen,
                    "collections": len(mine),
                    "per_s": round(len(mine) / covered, 2) if covered > 0 else None,
                    "pause_ms_total": round(sum(pauses), 2),
                    "pause_ms_mean": round(sum(pauses) / len(pauses), 3) if pauses else None,
                    "pause_ms_p95": round(_percentile(pauses, 0.95), 3) if pauses else None,
                    "pause_ms_max": round(pauses[-1], 3) if pauses else None,
                    "collected": sum(p.collected for p in mine),
                    "uncollectable": sum(p.uncollectable for p in mine),
                    "since_start": stats[gen],
                }
            )
        paused = sum(p.seconds for p in recent)
        return {
            "covered_s": round(covered, 2),
            "gc_share_of_wall_time": round(paused / covered, 4) if covered > 0 else None,
            "generations": generations,
            "hook_installed_s_ago": round(now - installed, 1),
        }

    @probe(budget=12.0, intrusive="gc debug flags (DEBUG_SAVEALL)")
    def cycle_types(
        self, seconds: float = 1.0, top: int = 8, max_objects: int = 200_000
    ) -> dict[str, Any]:
        """Which types the collector reclaims: the cyclic garbage of a short window, by type.

        For `seconds`, collections keep what they would free (gc.DEBUG_SAVEALL); it is counted
        by type, flagged when the type defines __del__ (a finalizer, with its file:line), and
        released again (freed by the next collection of its generation). Collections happen
        as the process allocates; none are forced.

        Args:
            seconds: how long to watch (0.1 to 10).
            top: how many types to return (at most 20).
            max_objects: stop early once this much garbage was kept (bounds the memory held).

        Cost: waits `seconds` without holding the GIL; the garbage of the window stays alive
        until the window ends; counting it is ~50 ms per million objects.
        """
        seconds = min(max(seconds, 0.1), 10.0)
        top = min(max(top, 1), 20)
        # one window at a time in the process: the flags are one setting of the interpreter,
        # and each window reads its own stretch of gc.garbage
        if not _saveall_window.acquire(blocking=False):
            raise RuntimeError(
                "another gc_cycle_types window is open (another run's); one at a time, for at "
                "most 11 s: call it again after that"
            )
        try:
            self._ensure_hook()
            users_saveall = bool(gc.get_debug() & gc.DEBUG_SAVEALL)
            first = len(gc.garbage)
            collections0 = [s["collections"] for s in gc.get_stats()]
            started = time.perf_counter()
            # the run's end, lensbook.stop(), exit and a forked child take the flag off even
            # mid-window: only that flag, and only if the program had not set it (its other
            # flags, even ones it changes meanwhile, stay as the program leaves them). It is
            # entered in the ledger before it is set: a child forked between has no flag on
            undo = _nothing if users_saveall else _saveall_off
            with intrusion.window("gc DEBUG_SAVEALL", undo, max_seconds=seconds + 1) as change:
                gc.set_debug(gc.get_debug() | gc.DEBUG_SAVEALL)
                if change.undone:  # undone before it was set (its run ended meanwhile)
                    undo()
                while time.perf_counter() - started < seconds and not change.wait(0.02):
                    if len(gc.garbage) - first >= max_objects:
                        break
        finally:
            _saveall_window.release()
        watched = time.perf_counter() - started
        kept = gc.garbage[first:]
        if not users_saveall:
            # the objects were finalized already; they are freed by a later collection
            del gc.garbage[first : first + len(kept)]
        try:
            by_type = TypeCount()
            by_type.update(map(type, kept[:max_objects]))
            total = len(kept)
            frames = _cyclic_frames(kept[:max_objects])
        finally:
            del kept
        collections = [
            s["collections"] - c for s, c in zip(gc.get_stats(), collections0, strict=True)
        ]
        rows = []
        for t, n in heapq.nlargest(top, by_type.items(), key=lambda kv: kv[1]):
            row: dict[str, Any] = {
                "type": _type_name(t),
                "count": n,
                "per_s": round(n / watched, 1),
                "share": round(n / total, 3) if total else None,
            }
            finalizer = _finalizer_of(t)
            if finalizer is not None:
                row["__del__"] = finalizer
            origin = _type_origin(t)
            if origin in ("user", "library"):
                row["defined_at"] = _type_site(t)
            rows.append(mark_fields(row, "type", "__del__", "defined_at"))  # the process's names
        del by_type
        return {
            "watched_s": round(watched, 2),
            "collections": {f"gen{g}": n for g, n in enumerate(collections)},
            "garbage_objects": total,
            "stopped_early": total >= max_objects,
            "types": rows,
            "frames": frames,
        }

    @probe
    def finalizer_types(self, top: int = 10) -> dict[str, Any]:
        """Live GC-tracked objects whose class defines __del__, by type, with where it is defined.

        Objects with finalizers in reference cycles are only reclaimed by the cycle collector
        (after their __del__ runs); many of them make collections slower.

        Args:
            top: how many types to return (at most 30).

        Cost: one heap walk, ~50 ms per million tracked objects (bounded to ~3 s).
        """
        deadline = time.perf_counter() + 3.0
        pace = Pacer()  # made first: the heap step counts as work, and is followed by a rest
        heap = _heap.objects()  # a tuple has no __del__: leaving them out changes no row
        total = len(heap)
        by_type = TypeCount()
        for hits in heap.of_types(lambda t: _finalizer_of(t) is not None, deadline, pace):
            by_type.update(map(type, hits))
            del hits
        partial = heap.partial
        del heap
        with_del = list(by_type.items())
        del by_type
        rows = [
            mark_fields(
                {"type": _type_name(t), "count": n, "__del__": _finalizer_of(t)}, "type", "__del__"
            )
            for t, n in heapq.nlargest(min(max(top, 1), 30), with_del, key=lambda kv: kv[1])
        ]
        return {
            "tracked_objects": total,
            "partial": partial,
            "with_finalizer": sum(n for _, n in with_del),
            "types": rows,
        }

    @probe
    def garbage(self, top: int = 10) -> dict[str, Any]:
        """Uncollectable objects: gc.garbage by type, and the uncollectable counts per generation.

        Args:
            top: how many types to return (at most 30).

        Cost: O(len(gc.garbage)), at most 100,000 items are looked at.
        """
        items = gc.garbage[:100_000]
        try:
            by_type = Counter(_type_name(type(o)) for o in items)
        finally:
            del items
        flags = gc.get_debug()
        return {
            "garbage_len": len(gc.garbage),
            "types": [
                mark_fields({"type": name, "count": n}, "type")
                for name, n in by_type.most_common(min(top, 30))
            ],
            "uncollectable_since_start": [s["uncollectable"] for s in gc.get_stats()],
            "debug_saveall": bool(flags & gc.DEBUG_SAVEALL),
            "note": (
                "DEBUG_SAVEALL is set: gc.garbage holds every collected object, not only "
                "uncollectable ones"
                if flags & gc.DEBUG_SAVEALL
                else None
            ),
        }

    @probe
    def thresholds(self) -> dict[str, Any]:
        """GC settings (enabled, thresholds, frozen objects, debug flags) and advice on them.

        The advice reads the collection rates and pauses the hook measured.

        Cost: microseconds.
        """
        measured = self.collections(window_s=60.0)
        gens = measured["generations"]
        covered = float(measured["covered_s"] or 0.0)
        share = measured["gc_share_of_wall_time"] or 0.0
        threshold = gc.get_threshold()
        advice: list[str] = []
        if not _heap.collector_enabled():
            advice.append(
                "GC is disabled: reference cycles are never reclaimed and memory only grows "
                "unless the program calls gc.collect() itself."
            )
        rate2 = gens[2]["per_s"] or 0.0
        mean2 = gens[2]["pause_ms_mean"] or 0.0
        if covered >= 1.0 and rate2 >= 0.2:
            advice.append(
                f"{rate2:g} full (gen-2) collections per second, {mean2:.1f} ms each: objects "
                "live long enough to be promoted and then die in cycles. Break those cycles "
                "(weakref to parents, explicit close()) so reference counting frees them; if "
                "a large long-lived heap was built at startup, gc.freeze() after startup "
                "takes it out of every full collection."
            )
        rate0 = gens[0]["per_s"] or 0.0
        collected0 = gens[0]["collected"]
        if covered >= 1.0 and rate0 >= 100 and collected0 < gens[0]["collections"] * 10:
            advice.append(
                f"{rate0:g} young collections per second finding few cycles: raising "
                f"threshold0 from {threshold[0]} (e.g. gc.set_threshold(10_000, "
                f"{threshold[1]}, {threshold[2]})) makes them rarer at no cost in memory."
            )
        if share >= 0.05:
            advice.append(
                f"{share * 100:.1f}% of wall time is spent collecting; that is worth fixing."
            )
        return {
            "enabled": _heap.collector_enabled(),
            "thresholds": threshold,
            "counts": gc.get_count(),
            "frozen": gc.get_freeze_count(),
            "debug_flags": gc.get_debug(),
            "advice": advice or ["nothing to change: collections are rare and short"],
        }

    def rules(self) -> Sequence[Rule]:
        return (
            GCChurnRule(),
            UncollectableRule(),
            GCDisabledRule(),
            CyclicFramesRule(),
            FullCollectionsSinceLoad(),
            GcPausesSinceLoad(),
        )


def _holds_exception(frame: types.FrameType) -> str | None:
    """The name of a local of a finished frame that is, or directly contains, an exception."""
    try:
        local_vars = frame.f_locals  # a finished frame: a plain read, no code runs
        # (a dict up to 3.12; from 3.13 a proxy of C code over the frame)
        pairs = list(dict.items(local_vars) if type(local_vars) is dict else local_vars.items())
        for name, value in pairs:
            # (by the built-in containers' own methods and exact types: no code of theirs
            # runs; a container another thread changes meanwhile raises RuntimeError)
            if _is_exception(value) or any(map(_is_exception, stored_members(value))):
                return str(name)
    except Exception:
        return None
    return None


def _is_exception(value: Any) -> bool:
    return issubclass(type(value), BaseException)


def _cyclic_frames(garbage: Sequence[Any], limit: int = 5000, top: int = 5) -> list[dict[str, Any]]:
    """Functions whose finished frames were cyclic garbage (a frame lives on in a cycle through
    a traceback, a generator or a closure), most frequent first; a frame whose locals hold an
    exception is the usual culprit: exception -> traceback -> frame -> local -> exception."""
    counts: Counter[types.CodeType] = Counter()
    holders: dict[types.CodeType, str] = {}
    seen = 0
    for obj in garbage:
        if type(obj) is not types.FrameType:
            continue
        seen += 1
        if seen > limit:
            break
        code = obj.f_code
        counts[code] += 1
        if code not in holders:
            held = _holds_exception(obj)
            if held is not None:
                holders[code] = held
    rows = []
    for code, n in counts.most_common(top):
        row: dict[str, Any] = {
            "function": _qualname(code),
            "where": _code_site(code),
            "origin": _origin(code.co_filename),
            "count": n,
        }
        if code in holders:
            row["holds_exception_in"] = holders[code]
        rows.append(row)
    for row in rows:  # the sort below reads origin and counts; names and paths are the process's
        mark_fields(row, "function", "where", "holds_exception_in")
    # the frame that stores the exception first: it is what makes the cycle
    rows.sort(key=lambda r: ("holds_exception_in" not in r, r["origin"] != "user", -r["count"]))
    return rows


# -- the offline investigator's rules -----------------------------------------------------------

#: full collections per second (sustained over a few seconds) that count as churn
GEN2_RATE_WARNING = 0.5
#: share of wall time spent in collections that counts as churn on its own
GC_SHARE_WARNING = 0.10
GC_SHARE_CRITICAL = 0.30
#: the share is judged only over at least this much time the pause hook saw (seconds): one
#: ordinary full collection in the first tenth of a second after the hook went in is not churn
GC_SHARE_MIN_COVERED_S = 1.0


def _judged_share(measured: Any) -> float:
    """The measured share of wall time in collections, 0 when the hook saw too little time."""
    if not isinstance(measured, dict):
        return 0.0
    if float(measured.get("covered_s") or 0.0) < GC_SHARE_MIN_COVERED_S:
        return 0.0
    return float(measured.get("gc_share_of_wall_time") or 0.0)


def _gen(measured: dict[str, Any], gen: int) -> dict[str, Any]:
    rows = measured.get("generations") or []
    row = rows[gen] if len(rows) > gen and isinstance(rows[gen], dict) else {}
    return row


class GCChurnRule(Rule):
    """Frequent full collections or a large share of time in GC, and the types behind them."""

    name = "gc_churn"
    snapshots_needed = 2
    gap = 3.0

    def _churning(self, ev: Evidence) -> bool:
        rate2 = ev.rate("gc_collections_gen2") or 0.0
        share = _judged_share(ev.result("gc_collections"))
        return (rate2 >= GEN2_RATE_WARNING and ev.delta("gc_collections_gen2") >= 2) or (
            share >= GC_SHARE_WARNING
        )

    def wants(self, ev: Evidence) -> Sequence[ProbeCall]:
        if len(ev.snapshots) < 2:
            return []
        calls = [ProbeCall("gc_collections", {"window_s": round(ev.elapsed() + 1.0)})]
        if self._churning(ev):
            # promoted cycles are only kept while a full collection runs: watch long enough
            # for about three of them (a 1 s window at 0.5 full collections/s saw none half the
            # time), within the probe's budget
            rate2 = ev.rate("gc_collections_gen2") or 0.0
            seconds = min(max(3.0 / rate2, 1.0), 8.0) if rate2 > 0 else 1.0
            calls += [
                ProbeCall("gc_cycle_types", {"seconds": round(seconds, 1)}),
                ProbeCall("gc_finalizer_types", {"top": 5}),
            ]
        return calls

    def judge(self, ev: Evidence) -> Sequence[Finding]:
        if not self._churning(ev):
            return []
        elapsed = ev.elapsed()
        n2 = int(ev.delta("gc_collections_gen2"))
        n1 = int(ev.delta("gc_collections_gen1"))
        n0 = int(ev.delta("gc_collections_gen0"))
        rate2 = ev.rate("gc_collections_gen2") or 0.0
        measured = as_dict(ev.result("gc_collections"))
        share = _judged_share(measured)
        g2 = _gen(measured, 2)
        context = (
            f"Over {elapsed:.1f} s: gen-2 (full) collections: {n2} in {elapsed:.1f} s "
            f"({rate2:.2f}/s), with {n1} gen-1 and {n0} gen-0 collections; the collector "
            f"paused the process {share * 100:.1f}% of wall time"
        )
        if g2.get("pause_ms_mean") is not None:
            context += (
                f"; gen-2 pauses mean {g2['pause_ms_mean']:.1f} ms, "
                f"max {g2.get('pause_ms_max') or 0:.1f} ms"
            )
        context += "."
        cycles = as_dict(ev.result("gc_cycle_types"))
        kinds = [t for t in cycles.get("types") or [] if isinstance(t, dict)]
        finalized = [t for t in kinds if t.get("__del__")]
        live = as_dict(ev.result("gc_finalizer_types"))
        live_rows = [t for t in live.get("types") or [] if isinstance(t, dict)]
        obs = []
        culprit = finalized[0] if finalized else (kinds[0] if kinds else None)
        if culprit is not None:
            obs.append(
                f"In {cycles.get('watched_s')} s the collector reclaimed "
                f"{cycles.get('garbage_objects')} objects in reference cycles; the top type is "
                f"{culprit['type']}: {culprit['count']} ({culprit['per_s']}/s"
                + (f", {float(culprit['share']) * 100:.0f}%" if culprit.get("share") else "")
                + ")"
                + (f", class at {culprit['defined_at']}" if culprit.get("defined_at") else "")
                + (f", __del__ at {culprit['__del__']}" if culprit.get("__del__") else "")
            )
            others = ", ".join(f"{t['type']} {t['count']}" for t in kinds[:4] if t is not culprit)
            if others:
                obs.append(f"along with {others}")
        if live_rows:
            obs.append(
                "live objects with __del__: "
                + ", ".join(
                    f"{t['type']} {t['count']}"
                    + (f" (__del__ at {t['__del__']})" if t.get("__del__") else "")
                    for t in live_rows[:3]
                )
            )
        observation = (
            "; ".join(obs) + "."
            if obs
            else (
                f"{n2} full collections in {elapsed:.1f} s; the reclaimed types were not sampled."
            )
        )
        if culprit is not None and culprit.get("__del__"):
            hypothesis = (
                f"{culprit['type']} objects with __del__ are created in reference cycles and "
                "live long enough to be promoted, so only full collections reclaim them "
                "(running each finalizer first); at this churn a full collection runs every "
                f"{1 / rate2:.1f} s. Break the cycle (a weakref to the parent, an explicit "
                "close()) or replace __del__ with weakref.finalize or a context manager."
                if rate2 > 0
                else f"{culprit['type']} objects with __del__ churn through reference cycles."
            )
        elif culprit is not None:
            hypothesis = (
                f"{culprit['type']} objects die in reference cycles after being promoted; "
                "breaking the cycle lets reference counting free them without the collector."
            )
        else:
            hypothesis = "Long-lived objects die in reference cycles and keep the collector busy."
        severity: Any = "critical" if share >= GC_SHARE_CRITICAL else "warning"
        return [
            Finding(
                anomaly_type="gc_churn",
                severity=severity,
                context=context,
                observation=observation,
                hypothesis=hypothesis,
            )
        ]


class UncollectableRule(Rule):
    """Objects the collector could not free, piling up in gc.garbage."""

    name = "gc_uncollectable"

    def wants(self, ev: Evidence) -> Sequence[ProbeCall]:
        if ev.latest("gc_garbage", 0) or ev.delta("gc_uncollectable") > 0:
            return [ProbeCall("gc_garbage")]
        return []

    def judge(self, ev: Evidence) -> Sequence[Finding]:
        result = ev.result("gc_garbage")
        if not isinstance(result, dict) or not result.get("garbage_len"):
            return []
        count = int(result["garbage_len"])
        grew = int(ev.delta("gc_garbage"))
        types_text = ", ".join(
            f"{t['type']} {t['count']}" for t in result.get("types") or [] if isinstance(t, dict)
        )
        saveall = bool(result.get("debug_saveall"))
        severity: Any = "warning" if grew > 0 or count >= 1000 else "info"
        return [
            Finding(
                anomaly_type="gc_uncollectable",
                severity=severity,
                context=(
                    f"gc.garbage holds {count} objects ({grew:+d} during this run); "
                    f"gc.DEBUG_SAVEALL is {'set' if saveall else 'not set'}."
                ),
                observation=f"Types in gc.garbage: {types_text or 'unknown'}.",
                hypothesis=(
                    "gc.DEBUG_SAVEALL keeps every collected object in gc.garbage; unset it "
                    "(gc.set_debug(0)) and clear the list."
                    if saveall
                    else "Objects the collector could not free (C extensions with legacy "
                    "finalizers in cycles) stay in gc.garbage until cleared; break the cycles."
                ),
            )
        ]


class GCDisabledRule(Rule):
    """The collector is switched off."""

    name = "gc_disabled"

    def judge(self, ev: Evidence) -> Sequence[Finding]:
        if ev.latest("gc_enabled", True):
            return []
        return [
            Finding(
                anomaly_type="gc_disabled",
                severity="info",
                context=(
                    f"gc.isenabled() is False; {ev.latest('gc_count0')} allocations since the "
                    "last young collection."
                ),
                observation="The cycle collector is disabled: reference cycles are not freed.",
                hypothesis=(
                    "Deliberate (gc.disable() for latency) or left over from a benchmark; "
                    "check that the program calls gc.collect() itself."
                ),
            )
        ]


#: a share of the young generation (objects per gen-0 collection over its threshold) that dies
#: in reference cycles above which cycles are made on a hot path; the floor keeps quiet
#: processes quiet
CYCLIC_SHARE_WARNING = 0.25
CYCLIC_RATE_FLOOR = 500.0


class CyclicFramesRule(Rule):
    """A large share of what is allocated dies in reference cycles: name the functions whose
    frames the collector reclaims (an exception stored where its own traceback can reach it)."""

    name = "gc_cyclic_frames"
    snapshots_needed = 2
    gap = 3.0

    def _share(self, ev: Evidence) -> float:
        collections = ev.delta("gc_collections_gen0")
        threshold = float(ev.latest("gc_threshold0", 0) or 0)
        if collections <= 0 or threshold <= 0:
            return 0.0
        return ev.delta("gc_collected") / collections / threshold

    def _hot(self, ev: Evidence) -> bool:
        rate = ev.rate("gc_collected") or 0.0
        return rate >= CYCLIC_RATE_FLOOR and self._share(ev) >= CYCLIC_SHARE_WARNING

    def wants(self, ev: Evidence) -> Sequence[ProbeCall]:
        if len(ev.snapshots) >= 2 and self._hot(ev):
            return [ProbeCall("gc_cycle_types", {"seconds": 1.0})]
        return []

    def judge(self, ev: Evidence) -> Sequence[Finding]:
        cycles = ev.result("gc_cycle_types")
        if not self._hot(ev) or not isinstance(cycles, dict):
            return []
        frames = [f for f in cycles.get("frames") or [] if isinstance(f, dict)]
        if not frames:
            return []  # cycles without frames: the churn rule speaks for data-structure cycles
        lead = frames[0]
        kinds = ", ".join(
            f"{t['type']} {t['per_s']}/s" for t in (cycles.get("types") or [])[:4] if "type" in t
        )
        held = lead.get("holds_exception_in")
        observation = (
            f"frames of {lead['function']} ({lead['where']}) are reclaimed by the cycle collector: "
            f"{lead['count']} in {cycles.get('watched_s')} s"
            + (f"; each still holds an exception in its local {held!r}" if held else "")
            + f"; the cyclic garbage is {kinds}"
        )
        rate = ev.rate("gc_collected") or 0.0
        hypothesis = (
            f"{lead['function']} keeps a caught exception in {held!r}: exception -> "
            "__traceback__ -> its frame -> that local -> exception is a reference cycle, so the "
            "frame and every local it holds (buffers, records) wait for the collector. Delete "
            "the variable in a finally (or keep str(exc) / traceback.format_exc() instead)."
            if held
            else f"frames of {lead['function']} outlive their call through a reference cycle "
            "(a stored traceback, generator or closure); break it so reference counting frees "
            "them."
        )
        return [
            Finding(
                anomaly_type="gc_cyclic_frames",
                severity="warning",
                context=(
                    f"the collector reclaims {rate:.0f} objects/s: per young collection, "
                    f"{self._share(ev) * 100:.0f}% of the generation's threshold "
                    f"({ev.latest('gc_threshold0')} allocations) dies in reference cycles"
                ),
                observation=observation,
                hypothesis=hypothesis,
            )
        ]
