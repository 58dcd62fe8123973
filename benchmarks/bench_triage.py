"""How long `lensbook.triage()` takes over every built-in skill, on a small heap and on a heap
of one million extra GC-tracked objects (the target: < 100 ms there).

    .venv/bin/python benchmarks/bench_triage.py [--samples 15] [--objects 1000000]

Triage takes one snapshot per skill, runs each rule's cheap checks (and the probes marked
cheap) and reads the history; none of it may walk the heap, so the two conditions should cost
about the same (the ratio is printed). The first sweep (imports, first-time baselines) is
reported apart. Also prints the slowest skills of the last sweep, measured one by one.
"""

from __future__ import annotations

import argparse
import gc
import statistics
import time

from lensbook._triage import triage
from lensbook.skills import builtin_ids, resolve_skill

TARGET_MS = 100.0


def sweep_ms(samples: int) -> list[float]:
    times = []
    for _ in range(samples):
        start = time.perf_counter()
        triage(builtin_ids())
        times.append((time.perf_counter() - start) * 1000)
    return times


def per_skill_ms() -> list[tuple[str, float]]:
    rows = []
    for sid in builtin_ids():
        start = time.perf_counter()
        triage([sid])
        rows.append((sid, (time.perf_counter() - start) * 1000))
    return sorted(rows, key=lambda r: -r[1])


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--samples", type=int, default=15)
    parser.add_argument("--objects", type=int, default=1_000_000)
    args = parser.parse_args()
    for sid in builtin_ids():
        resolve_skill(sid)
    start = time.perf_counter()
    triage(builtin_ids())
    first = (time.perf_counter() - start) * 1000
    small = sweep_ms(args.samples)
    heap = [[] for _ in range(args.objects)]  # GC-tracked (empty lists are tracked)
    tracked = len(gc.get_objects())
    big = sweep_ms(args.samples)
    slowest = per_skill_ms()[:4]
    del heap
    p50_small, p50_big = statistics.median(small), statistics.median(big)
    print(f"first sweep (imports, baselines): {first:.0f} ms")
    print(f"{'heap':>22}  {'p50 ms':>7}  {'max ms':>7}")
    print(f"{'small':>22}  {p50_small:7.1f}  {max(small):7.1f}")
    print(f"{f'{tracked:,} tracked':>22}  {p50_big:7.1f}  {max(big):7.1f}")
    print(
        f"ratio big/small heap: {p50_big / p50_small:.2f}; target < {TARGET_MS:.0f} ms: "
        f"{'met' if p50_big < TARGET_MS else 'NOT met'}"
    )
    print(
        "slowest skills (one sweep each, big heap): "
        + ", ".join(f"{sid} {ms:.1f} ms" for sid, ms in slowest)
    )


if __name__ == "__main__":
    main()
