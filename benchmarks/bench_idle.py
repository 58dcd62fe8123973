"""Idle cost of the lens loop with every static operator started.

Prints the CPU seconds the whole process used over an idle window (the main thread sleeps),
as a share of one core, next to a baseline window before lensbook started.
Target: under 0.05% of one core.

    .venv/bin/python benchmarks/bench_idle.py [--seconds 60]
"""

from __future__ import annotations

import argparse
import time

import psutil

import lensbook


def cpu_over(seconds: float) -> float:
    proc = psutil.Process()
    before = proc.cpu_times()
    time.sleep(seconds)
    after = proc.cpu_times()
    return (after.user - before.user) + (after.system - before.system)


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--seconds", type=float, default=60.0)
    args = parser.parse_args()
    baseline = cpu_over(args.seconds)
    ops = lensbook.start()
    started = [op.name for op in ops]
    time.sleep(1.0)  # let start-up work settle
    idle = cpu_over(args.seconds)
    lensbook.stop()
    print(f"operators started: {len(started)} ({', '.join(started)})")
    print(f"window: {args.seconds:.0f} s")
    print(f"baseline (no lensbook): {baseline:.4f} CPU s = {100 * baseline / args.seconds:.4f}% "
          "of one core")
    print(f"idle with lensbook:     {idle:.4f} CPU s = {100 * idle / args.seconds:.4f}% "
          "of one core")
    extra = max(0.0, idle - baseline)
    print(f"lensbook's share:       {100 * extra / args.seconds:.4f}% of one core "
          "(target < 0.05%)")


if __name__ == "__main__":
    main()
