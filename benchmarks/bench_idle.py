"""Idle cost of the lens loop with every static operator started.

Prints the CPU seconds the whole process used over an idle window (the main thread sleeps),
as a share of one core, next to a baseline window before lensbook started.
Target: under 0.05% of one core.

With `--watch` the watcher runs too (`lensbook.watch()` at its default interval of 30 s, or
`--interval`): its sampling is part of the idle cost, and must stay negligible. It also prints
what one sample costs (all the watched skills' snapshots, and folding them in).

    .venv/bin/python benchmarks/bench_idle.py [--seconds 60] [--watch [--interval 30]]
"""

from __future__ import annotations

import argparse
import statistics
import time

import psutil

import lensbook


def cpu_over(seconds: float) -> float:
    proc = psutil.Process()
    before = proc.cpu_times()
    time.sleep(seconds)
    after = proc.cpu_times()
    return (after.user - before.user) + (after.system - before.system)


def sample_cost(watcher: object) -> float:
    """Median CPU seconds of one watcher sample: every watched snapshot, then observe()."""
    from lensbook.coordinator.watcher import Watcher

    assert isinstance(watcher, Watcher)
    costs = []
    for _ in range(50):
        started = time.thread_time()
        watcher.observe(watcher._sample())
        costs.append(time.thread_time() - started)
    return statistics.median(costs)


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--seconds", type=float, default=60.0)
    parser.add_argument("--watch", action="store_true", help="run the watcher too")
    parser.add_argument("--interval", type=float, default=30.0, help="the watcher's interval")
    args = parser.parse_args()
    baseline = cpu_over(args.seconds)
    ops = lensbook.start()
    started = [op.name for op in ops]
    watcher = None
    if args.watch:
        from lensbook.coordinator import watch

        watcher = watch(interval=args.interval)
    time.sleep(1.0)  # let start-up work settle
    idle = cpu_over(args.seconds)
    if watcher is not None:
        samples = watcher.samples
        per_sample = sample_cost(watcher)
    lensbook.stop()
    print(f"operators started: {len(started)} ({', '.join(started)})")
    print(f"window: {args.seconds:.0f} s")
    print(
        f"baseline (no lensbook): {baseline:.4f} CPU s = {100 * baseline / args.seconds:.4f}% "
        "of one core"
    )
    print(
        f"idle with lensbook:     {idle:.4f} CPU s = {100 * idle / args.seconds:.4f}% of one core"
    )
    extra = max(0.0, idle - baseline)
    print(f"lensbook's share:       {100 * extra / args.seconds:.4f}% of one core (target < 0.05%)")
    if watcher is not None:
        skills = ", ".join(s.id for s in watcher.skills)
        print(
            f"watcher: interval {args.interval:g} s, {samples} samples in the window, "
            f"skills {skills}"
        )
        print(
            f"one watcher sample (snapshots + fold), median of 50: {per_sample * 1e3:.3f} ms "
            f"= {100 * per_sample / args.interval:.5f}% of one core at this interval"
        )


if __name__ == "__main__":
    main()
