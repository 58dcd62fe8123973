"""How long each built-in skill's `snapshot()` takes: idle, on a 1M-object heap, under load.

    .venv/bin/python benchmarks/bench_snapshots.py [--samples 200] [--skills process,system]

Snapshots run on a worker thread, as the operator's probe pool runs them. Three conditions:
  idle   the main thread waits (no GIL contention);
  heap   the same with 1M extra GC-tracked objects alive (a snapshot must never walk the heap);
  load   the main thread spins in pure Python, so every GIL release in the snapshot (each
         /proc read, each syscall) may wait for the 5 ms switch interval to get it back.
Prints wall-time p50/p95 in ms per skill and condition against the 5 ms p95 target, and under
load also the worker thread's own CPU time (what the snapshot costs, apart from waiting).
Skills whose module does not import yet (written concurrently) are listed as skipped.
"""

from __future__ import annotations

import argparse
import gc
import importlib
import statistics
import sys
import threading
import time
from collections.abc import Callable
from typing import Any

from lensbook.skills import BUILTIN_SKILLS

TARGET_MS = 5.0


def load_skills(only: set[str] | None) -> tuple[dict[str, Any], dict[str, str]]:
    skills: dict[str, Any] = {}
    skipped: dict[str, str] = {}
    for sid, path in BUILTIN_SKILLS.items():
        if only and sid not in only:
            continue
        module_name, cls_name = path.split(":")
        try:
            skills[sid] = getattr(importlib.import_module(module_name), cls_name)()
        except Exception as exc:  # a skill still being written must not stop the others
            skipped[sid] = f"{type(exc).__name__}: {exc}"[:120]
    return skills, skipped


def pct(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, round(q * (len(ordered) - 1)))]


def on_worker(fn: Callable[[], Any], n: int, busy_main: bool) -> tuple[list[float], list[float]]:
    """Call `fn` `n` times on a worker thread; (wall ms, worker CPU ms) per call."""
    wall: list[float] = []
    cpu: list[float] = []
    errors: list[BaseException] = []

    def work() -> None:
        try:
            for _ in range(n):
                c0, t0 = time.thread_time(), time.perf_counter()
                fn()
                wall.append((time.perf_counter() - t0) * 1e3)
                cpu.append((time.thread_time() - c0) * 1e3)
                if busy_main:
                    time.sleep(0.002)  # like a sampler: spaced calls, not back to back
        except BaseException as exc:
            errors.append(exc)

    worker = threading.Thread(target=work, name="bench-snapshot")
    worker.start()
    if busy_main:
        x = 0
        while worker.is_alive():
            for i in range(2000):  # pure Python: holds the GIL between eval-breaker checks
                x += i * i
    worker.join()
    if errors:
        raise errors[0]
    return wall, cpu


def bench(skills: dict[str, Any], samples: int) -> list[tuple[str, str, float, float, str]]:
    rows: list[tuple[str, str, float, float, str]] = []
    heap: list[list[int]] = []

    def measure(condition: str, n: int, busy: bool) -> None:
        for sid, skill in skills.items():
            try:
                wall, cpu = on_worker(skill.snapshot, n, busy)
            except Exception as exc:
                rows.append((sid, condition, float("nan"), float("nan"), f"error: {exc}"[:60]))
                continue
            extra = f"cpu p50 {statistics.median(cpu):.3f} p95 {pct(cpu, 0.95):.3f}" if busy else ""
            rows.append((sid, condition, statistics.median(wall), pct(wall, 0.95), extra))

    for skill in skills.values():  # first calls may set things up lazily: not measured
        skill.snapshot()
    measure("idle", samples, False)
    heap = [[i] for i in range(1_000_000)]
    tracked = len(gc.get_objects())
    measure(f"heap {tracked / 1e6:.1f}M", samples, False)
    del heap
    measure("load", max(20, samples // 4), True)
    return rows


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--samples", type=int, default=200)
    parser.add_argument("--skills", default="", help="comma-separated ids (default: all)")
    args = parser.parse_args(argv)
    only = {s for s in args.skills.split(",") if s} or None
    skills, skipped = load_skills(only)
    print(f"python {sys.version.split()[0]}, switch interval {sys.getswitchinterval() * 1e3:g} ms")
    print(f"skills measured: {', '.join(skills) or 'none'}")
    for sid, why in skipped.items():
        print(f"skipped {sid}: {why}")
    rows = bench(skills, args.samples)
    print(
        f"\n{'skill':<11} {'condition':<10} {'p50 ms':>8} {'p95 ms':>8}  target p95<{TARGET_MS:g}"
    )
    for sid, condition, p50, p95, extra in rows:
        ok = "ok" if p95 < TARGET_MS else "OVER"
        print(f"{sid:<11} {condition:<10} {p50:>8.3f} {p95:>8.3f}  {ok:<4} {extra}")
    for skill in skills.values():
        close = getattr(skill, "close", None)
        if callable(close):
            close()
    return 0


if __name__ == "__main__":
    sys.exit(main())
