"""lensbook.dask on a LocalCluster of worker processes: run wall time and idle cost per worker.

1. Wall time of `cluster.run("runtime")` on 1, 2 and 4 workers (median of `--repeat` runs after
   one warm-up), and its ratio to the 1-worker time: the workers run concurrently, so the ratio
   should stay close to 1 (the runtime skill's offline rules wait ~2 s between snapshots; more
   workers than cores add CPU contention on top).
2. Idle cost per worker: CPU used by each worker process over an idle window (`--seconds`)
   before lensbook is attached, then again with it attached (its operators idle, the metrics
   sampler every 30 s), as a share of one core, side by side.

    .venv/bin/python benchmarks/bench_dask.py [--repeat 3] [--seconds 30] [--sizes 1,2,4]
"""

from __future__ import annotations

import argparse
import logging
import os
import statistics
import time

import psutil
from distributed import Client, LocalCluster

import lensbook.dask


def run_times(workers: int, repeat: int) -> list[float]:
    with (
        LocalCluster(
            n_workers=workers, threads_per_worker=1, processes=True, dashboard_address=None
        ) as local,
        Client(local) as client,
    ):
        client.wait_for_workers(workers)
        cluster = lensbook.dask.attach(client)
        cluster.run("runtime", reason="warm-up", timeout=60)
        times = []
        for _ in range(repeat):
            started = time.perf_counter()
            result = cluster.run("runtime", reason="bench", timeout=60)
            times.append(time.perf_counter() - started)
            assert not result.partial, str(result)
        cluster.detach()
        return times


def cpu_share(pids: list[int], seconds: float) -> list[float]:
    """Each process's CPU over `seconds` of wall time, as a percentage of one core."""
    procs = [psutil.Process(p) for p in pids]
    before = [p.cpu_times() for p in procs]
    time.sleep(seconds)
    after = [p.cpu_times() for p in procs]
    return [
        100.0 * ((a.user - b.user) + (a.system - b.system)) / seconds
        for a, b in zip(after, before, strict=True)
    ]


def idle_cost(seconds: float) -> tuple[list[float], list[float]]:
    with (
        LocalCluster(
            n_workers=2, threads_per_worker=1, processes=True, dashboard_address=None
        ) as local,
        Client(local) as client,
    ):
        client.wait_for_workers(2)
        pids = list(client.run(os.getpid).values())
        time.sleep(2.0)  # let the workers' start-up settle before measuring
        without = cpu_share(pids, seconds)
        cluster = lensbook.dask.attach(client)
        time.sleep(2.0)
        with_lensbook = cpu_share(pids, seconds)
        cluster.detach()
        return without, with_lensbook


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--repeat", type=int, default=3)
    parser.add_argument("--seconds", type=float, default=30.0, help="idle window")
    parser.add_argument("--sizes", default="1,2,4", help="numbers of workers")
    args = parser.parse_args()
    logging.getLogger("distributed").setLevel(logging.ERROR)
    os.environ.setdefault("LENSBOOK_RECORDS", "0")

    print(f"cluster.run('runtime') wall time, median of {args.repeat} (CPUs: {os.cpu_count()})")
    print(f"{'workers':>8} {'median s':>9} {'min s':>7} {'max s':>7} {'vs 1 worker':>12}")
    base: float | None = None
    for n in [int(s) for s in args.sizes.split(",")]:
        times = run_times(n, args.repeat)
        median = statistics.median(times)
        base = base or median
        print(
            f"{n:>8} {median:>9.2f} {min(times):>7.2f} {max(times):>7.2f} {median / base:>11.2f}x"
        )

    without, with_lensbook = idle_cost(args.seconds)
    print(f"\nidle CPU per worker over {args.seconds:.0f} s (% of one core)")
    print(f"{'worker':>7} {'without lensbook':>17} {'with lensbook':>14} {'difference':>11}")
    for i, (a, b) in enumerate(zip(without, with_lensbook, strict=True)):
        print(f"{i:>7} {a:>16.3f}% {b:>13.3f}% {b - a:>+10.3f}%")


if __name__ == "__main__":
    main()
