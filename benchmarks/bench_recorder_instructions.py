"""The flight recorder's cost on thread churn and on logging, in instructions counted by valgrind.

`bench_recorder.py` measures CPU time, which on a shared machine moves by a few percent from one
run to the next whatever the code does. Instructions executed do not: valgrind's cachegrind
counts every one, and the same work counts the same each run (logging to a few parts in
100,000; thread churn to about 0.5%, as the lens loop's thread interleaves differently). So
this is the figure to compare changes by, and the target's check: the recorder's overhead
against the same work without it, under 3%.

What it leaves out: the time an instruction takes (cache misses, branch misses: a path run cold
costs more per instruction; `bench_recorder.py` measures time), and the recorder's periodic
work (its flush every 10 s, pushed out of the measured window here: `bench_recorder.py --only
idle` measures it).

Each configuration runs in a child process under ``valgrind --tool=cachegrind --cache-sim=no``
twice, with 0 and with N items of work after the same warm-up: the difference over N is the
instructions per item, free of interpreter start-up and imports. The configurations:
"without" (lensbook imported and its lens loop up, the recorder not started), "with" (the
recorder started: every observer), and a control (the recorder started, every observer taken
out again: what starting it leaves behind when nothing observes).

    python benchmarks/bench_recorder_instructions.py            # both workloads
    python benchmarks/bench_recorder_instructions.py --only logs
    python benchmarks/bench_recorder_instructions.py --only start
    python benchmarks/bench_recorder_instructions.py --only closure,pool

``--only closure,pool``: a new closure per thread as target (the shortcut finds its kind by
its code), and a thread started by a library's pool, one executor per request (the full path
on every start: the frame walk to the first user frame, and each pool's name noted, which is
how a pool made per request is told from one pool).

``--only start`` counts the recorder's ``Thread.start`` wrapper alone: `Thread.start`'s own
work is replaced by a no-op (once the lens loop runs), so no thread runs and nothing
interleaves; each item makes a `Thread` and starts it from one site. Its difference is the
wrapper's instructions per start (its percentage is of making a `Thread`, not of a start).
"""

from __future__ import annotations

import argparse
import asyncio
import logging
import os
import re
import shutil
import subprocess
import sys
import threading
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

_ROOT = Path(__file__).resolve().parent.parent
#: items of work per measured run, per workload (valgrind runs ~50x slower than the CPU)
ITEMS = {"logs": 5_000, "threads": 2_000, "start": 5_000, "closure": 2_000, "pool": 1_000}
_WARM = 200
_MODES = ("without", "with", "control")


def _logs_work() -> Callable[[int], None]:
    app = logging.getLogger("bench.app")
    app.setLevel(logging.INFO)
    handler = logging.FileHandler(os.devnull)
    handler.setFormatter(logging.Formatter("%(asctime)s %(levelname)s %(name)s %(message)s"))
    app.addHandler(handler)

    def work(n: int) -> None:
        for i in range(n):
            if i % 100 == 99:
                app.warning("slow order %d took %.1f ms", i, 812.5)
            else:
                app.info("order %d processed in %.1f ms", i, 1.5)

    return work


def _threads_work() -> Callable[[int], None]:
    def work(n: int) -> None:
        for _ in range(n):
            t = threading.Thread(target=int)
            t.start()
            t.join()

    return work


def _start_work() -> Callable[[int], None]:
    threading.Thread.start = lambda self: None  # type: ignore[method-assign,assignment]

    def work(n: int) -> None:
        for _ in range(n):
            threading.Thread(target=int).start()

    return work


def _closure_work() -> Callable[[int], None]:
    def closure(i: int) -> Callable[[], int]:
        return lambda: i  # a new function object per start, of one code

    def work(n: int) -> None:
        for i in range(n):
            t = threading.Thread(target=closure(i))
            t.start()
            t.join()

    return work


def _pool_work() -> Callable[[int], None]:
    def work(n: int) -> None:
        for i in range(n):  # an executor per request: a library starts its thread
            with ThreadPoolExecutor(max_workers=1) as pool:
                pool.submit(int, i).result()

    return work


_WORKLOADS = {
    "logs": _logs_work,
    "threads": _threads_work,
    "start": _start_work,
    "closure": _closure_work,
    "pool": _pool_work,
}


def child(workload: str, mode: str, n: int) -> None:
    """One measured process: the set-up of `mode`, the warm-up, then `n` items of work."""
    sys.path.insert(0, str(_ROOT))
    from lensbook import _loop, recorder

    _loop.get_loop()  # up in every mode (it stays up once started), before any workload
    work = _WORKLOADS[workload]()
    if mode != "without":
        recorder.recorder.flush_interval_s = 1e9  # its periodic flush: not in this window
        recorder.start("bench", sample_interval=None)
        if mode == "control":
            for name in ("threads", "exceptions", "logs", "gc"):
                getattr(recorder.recorder, name).remove()

    async def settle() -> None:  # the recorder's first tick (a flush) is over before the work
        for _ in range(3):
            await asyncio.sleep(0)

    _loop.run_sync(settle())
    work(_WARM)
    work(n)
    if mode != "without":
        recorder.stop("bench")


def _count(workload: str, mode: str, n: int) -> int:
    env = {**os.environ, "PYTHONHASHSEED": "0"}
    done = subprocess.run(
        [
            "valgrind",
            "--tool=cachegrind",
            "--cache-sim=no",
            "--cachegrind-out-file=/dev/null",
            sys.executable,
            __file__,
            "--child",
            workload,
            mode,
            str(n),
        ],
        capture_output=True,
        text=True,
        env=env,
        check=False,
    )
    found = re.search(r"I\s+refs:\s+([\d,]+)", done.stderr)
    if done.returncode != 0 or found is None:
        raise RuntimeError(f"valgrind run failed ({workload} {mode} {n}): {done.stderr[-400:]}")
    return int(found.group(1).replace(",", ""))


def measure(workload: str) -> dict[str, float]:
    """Instructions per item of `workload` in each mode."""
    n = ITEMS[workload]
    runs = [(mode, k) for mode in _MODES for k in (0, n)]
    with ThreadPoolExecutor(max_workers=os.cpu_count() or 1) as pool:
        counts = dict(zip(runs, pool.map(lambda run: _count(workload, *run), runs), strict=True))
    return {mode: (counts[mode, n] - counts[mode, 0]) / n for mode in _MODES}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--only", default="logs,threads")
    parser.add_argument(
        "--child", nargs=3, metavar=("WORKLOAD", "MODE", "N"), help=argparse.SUPPRESS
    )
    args = parser.parse_args()
    if args.child:
        workload, mode, n = args.child
        child(workload, mode, int(n))
        return
    if shutil.which("valgrind") is None:
        print("valgrind is not installed: no instruction counts (apt install valgrind)")
        return
    labels = {
        "logs": "logging (1% warnings, a formatted FileHandler)",
        "threads": "thread churn (start + join)",
        "start": "thread start, the wrapper alone (Thread() and a no-op start)",
        "closure": "thread churn, a new closure per thread as target",
        "pool": "a ThreadPoolExecutor per request (one task; the library starts the thread)",
    }
    for workload in args.only.split(","):
        per = measure(workload)
        base = per["without"]
        print(f"{labels[workload]}, instructions per item ({ITEMS[workload]:,} items):")
        print(f"  without the recorder: {base:,.0f}")
        for mode, label in (("with", "with the recorder"), ("control", "control, no observer")):
            extra = per[mode] - base
            print(f"  {label}: {per[mode]:,.0f} ({extra:+,.0f} = {100 * extra / base:+.2f}%)")


if __name__ == "__main__":
    main()
