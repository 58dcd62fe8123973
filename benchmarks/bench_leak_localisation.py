"""Leak localisation, side by side: objgraph, tracemalloc by hand, and lensbook's memory skill.

The same heap (a million GC-tracked objects by default) and the same leak (entries added to the
module-level cache of `lensbook.scenarios._leaky_cache`) for every method. Each method runs in a
fresh child process, `--repeat` times; the table shows medians:

- time to answer: the seconds the method itself takes (its calls before and after the leak),
  not the leak;
- leak slowdown: how much slower the leaking code ran while the method watched (tracing);
- names site: whether the answer names the allocating line (`_leaky_cache.py:NN`);
- names holder: whether it names the structure that keeps the leak (`_leaky_cache._CACHE`).

    .venv/bin/python benchmarks/bench_leak_localisation.py [--heap 1000000] [--leak 20000]
"""

from __future__ import annotations

import argparse
import inspect
import io
import json
import os
import statistics
import subprocess
import sys
import time
import tracemalloc
from collections.abc import Callable
from typing import Any

METHODS = {
    "none": "no measurement (the leak alone)",
    "objgraph": "objgraph.show_growth before and after",
    "tm_window": "tracemalloc by hand: start, snapshot, leak, snapshot, compare_to",
    "tm_always": "tracemalloc by hand, traced since start (heap traced too)",
    "tm_always_filtered": "same, with the docs' filter_traces (importlib, <unknown>)",
    "lens_diff": "lensbook memory_trace_start + memory_allocation_diff",
    "lens_joined": "lensbook trace window joining tracing running since start (heap traced)",
    "lens_census": "lensbook memory_census + memory_type_growth + largest_containers",
    "lens_both": "lensbook trace window + type growth + largest containers",
    "lens_offline": "lensbook offline investigation (cache_leak scenario, leak in a thread)",
}


def _site_line() -> int:
    from lensbook.scenarios import _leaky_cache

    lines, _ = inspect.getsourcelines(_leaky_cache)
    return next(i for i, line in enumerate(lines, 1) if "hit = {" in line)


def _child(method: str, heap_size: int, leak: int) -> dict[str, Any]:
    if method.startswith("tm_always") or method == "lens_joined":
        tracemalloc.start(1)
    heap = [[i] for i in range(heap_size)]
    from lensbook.scenarios import _leaky_cache

    site = f"_leaky_cache.py:{_site_line()}"
    holder = "_leaky_cache._CACHE"
    counter = iter(range(10**8, 10**9))  # keys the scenario's own traffic never uses

    def do_leak() -> float:
        started = time.perf_counter()
        for _ in range(leak):
            _leaky_cache.lookup(next(counter))
        return time.perf_counter() - started

    do_leak()  # the leak is already going on when anyone looks
    answer, spent, leak_s = _METHODS[method](do_leak)
    del heap
    return {
        "method": method,
        "seconds": spent,
        "leak_s": leak_s,
        "names_site": site in answer,
        "names_holder": holder in answer,
        "answer": answer,
    }


def _none(do_leak: Callable[[], float]) -> tuple[str, float, float]:
    return "", 0.0, do_leak()


def _objgraph(do_leak: Callable[[], float]) -> tuple[str, float, float]:
    import objgraph

    t0 = time.perf_counter()
    objgraph.show_growth(limit=10, file=io.StringIO())
    first = time.perf_counter() - t0
    leak_s = do_leak()
    out = io.StringIO()
    t0 = time.perf_counter()
    objgraph.show_growth(limit=10, file=out)
    return out.getvalue(), first + time.perf_counter() - t0, leak_s


def _tracemalloc(
    do_leak: Callable[[], float], *, start: bool, filtered: bool = False
) -> tuple[str, float, float]:
    t0 = time.perf_counter()
    if start:
        tracemalloc.start(1)
    before = tracemalloc.take_snapshot()
    first = time.perf_counter() - t0
    leak_s = do_leak()
    t0 = time.perf_counter()
    after = tracemalloc.take_snapshot()
    if filtered:
        filters = (
            tracemalloc.Filter(False, "<frozen importlib._bootstrap>"),
            tracemalloc.Filter(False, "<unknown>"),
        )
        before, after = before.filter_traces(filters), after.filter_traces(filters)
    stats = after.compare_to(before, "lineno")[:5]
    spent = first + time.perf_counter() - t0
    tracemalloc.stop()
    return "\n".join(str(s) for s in stats), spent, leak_s


def _lens(do_leak: Callable[[], float], *, diff: bool, census: bool) -> tuple[str, float, float]:
    from lensbook.skills.memory import MemorySkill

    skill = MemorySkill()
    t0 = time.perf_counter()
    if census:
        skill.census()
        skill.largest_containers(baseline=True)
    if diff:
        skill.trace_start()
    first = time.perf_counter() - t0
    leak_s = do_leak()
    t0 = time.perf_counter()
    parts: list[Any] = []
    if diff:
        parts.append(skill.allocation_diff(top=5))
    if census:
        parts.append(skill.type_growth(top=5))
        parts.append(skill.largest_containers(top=3))
    spent = first + time.perf_counter() - t0
    skill.close()
    return json.dumps(parts), spent, leak_s


def _lens_offline(do_leak: Callable[[], float]) -> tuple[str, float, float]:
    from lensbook.scenarios.runner import run_scenario

    outcome = run_scenario("cache_leak")
    text = json.dumps(outcome.notifications)
    return text, outcome.seconds, float("nan")


_METHODS: dict[str, Callable[[Callable[[], float]], tuple[str, float, float]]] = {
    "none": _none,
    "objgraph": _objgraph,
    "tm_window": lambda leak: _tracemalloc(leak, start=True),
    "tm_always": lambda leak: _tracemalloc(leak, start=False),
    "tm_always_filtered": lambda leak: _tracemalloc(leak, start=False, filtered=True),
    "lens_diff": lambda leak: _lens(leak, diff=True, census=False),
    "lens_joined": lambda leak: _lens(leak, diff=True, census=False),
    "lens_census": lambda leak: _lens(leak, diff=False, census=True),
    "lens_both": lambda leak: _lens(leak, diff=True, census=True),
    "lens_offline": _lens_offline,
}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--heap", type=int, default=1_000_000, help="GC-tracked objects")
    parser.add_argument("--leak", type=int, default=20_000, help="cache entries leaked")
    parser.add_argument("--repeat", type=int, default=3)
    parser.add_argument("--methods", default=",".join(METHODS))
    parser.add_argument("--child", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child:
        sys.stdout.write(json.dumps(_child(args.child, args.heap, args.leak)) + "\n")
        sys.stdout.flush()
        os._exit(0)  # the offline scenario leaves a leaking thread behind

    env = {k: v for k, v in os.environ.items() if not k.startswith("ANTHROPIC")}
    rows: dict[str, list[dict[str, Any]]] = {}
    for method in args.methods.split(","):
        for _ in range(args.repeat):
            cmd = [sys.executable, __file__, "--child", method, "--heap", str(args.heap)]
            cmd += ["--leak", str(args.leak)]
            proc = subprocess.run(cmd, capture_output=True, text=True, timeout=600, env=env)
            if proc.returncode != 0 or not proc.stdout.strip():
                raise SystemExit(f"{method} failed:\n{proc.stderr[-2000:]}")
            rows.setdefault(method, []).append(json.loads(proc.stdout.strip().splitlines()[-1]))

    base = statistics.median(r["leak_s"] for r in rows.get("none", [{"leak_s": float("nan")}]))
    print(
        f"heap: {args.heap:,} tracked objects; leak: {args.leak:,} cache entries "
        f"(~{args.leak * 27:,} allocations); medians of {args.repeat} runs; "
        f"Python {sys.version.split()[0]}"
    )
    header = (
        f"{'method':<20} {'time to answer s':>16} {'leak slowdown':>14} "
        f"{'names site':>10} {'names holder':>12}  description"
    )
    print(header)
    print("-" * len(header))
    for method, runs in rows.items():
        seconds = statistics.median(r["seconds"] for r in runs)
        leak = statistics.median(r["leak_s"] for r in runs)
        slowdown = f"x{leak / base:.1f}" if leak == leak and base == base and base else "-"
        site = sum(r["names_site"] for r in runs)
        holder = sum(r["names_holder"] for r in runs)
        print(
            f"{method:<20} {seconds:>16.3f} {slowdown:>14} {site:>6}/{len(runs):<3} "
            f"{holder:>8}/{len(runs):<3}  {METHODS[method]}"
        )
    print("\nanswers (first run of each method, first 300 characters):")
    for method, runs in rows.items():
        if method != "none":
            answer = " ".join(runs[0]["answer"].split())
            print(f"  {method}: {answer[:300]}")


if __name__ == "__main__":
    main()
