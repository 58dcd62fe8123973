"""What the flight recorder costs: idle CPU, memory at its caps, thread churn, heavy logging.

Every figure is measured with and without the recorder in this one process, side by side:

- idle: CPU share of one core over `--seconds` with lensbook started without the recorder
  (``lensbook.start(history=False)``) and with it; the difference is the recorder's (target
  < 0.05%). `--loop` adds an idle user event loop, which the lag monitor then pings every second.
- memory: Python memory (tracemalloc) held by the recorder after a hostile flood that fills every
  ring and table to its cap (distinct exception types and sites, log messages and loggers,
  thread kinds, loop stalls, sampled metrics that move every time, gc pauses, tracer windows)
  (target < 5 MB).
- threads: 10,000 short threads started and joined, without and with the recorder, in rounds
  of 100 in adjacent blocks of 5 rounds whose order alternates, the recorder started and
  stopped once per block away from any measured round (target < 3% overhead); then a control:
  the same with the recorder started and every observer taken out (what the method reads when
  nothing observes: its noise and bias).
- logs: records emitted through a file handler at ~50,000 records/s (1% warnings), the same way.
  For both, the overhead is the process's CPU (every thread's, the recorder's own lens loop
  included): the median of the pairs' differences on the work's threads plus the lens loop's
  mean (see `_alternate`), with the spread (IQR) of the differences beside it.
- items (only when asked): one thread start+join and one record, observer on and off, in 1000
  short alternating pairs each: the medians of the per-item differences, which load on a
  shared machine swamps less than the workloads above.
- flood: a million warnings and 100,000 thread starts with the recorder on: cost per item and
  every ring within its cap.

    .venv/bin/python benchmarks/bench_recorder.py [--seconds 60] [--loop] [--only idle,...]
    .venv/bin/python benchmarks/bench_recorder.py --only items
"""

from __future__ import annotations

import argparse
import asyncio
import gc
import logging
import os
import statistics
import sys
import threading
import time
import tracemalloc
from collections.abc import Callable

import psutil

import lensbook
from lensbook import _loop, recorder
from lensbook.recorder.gcpause import DEFAULT_THRESHOLD_S as GC_THRESHOLD_S


def cpu_over(seconds: float) -> float:
    proc = psutil.Process()
    before = proc.cpu_times()
    time.sleep(seconds)
    after = proc.cpu_times()
    return (after.user - before.user) + (after.system - before.system)


def idle(seconds: float, with_loop: bool) -> None:
    loop = None
    if with_loop:
        loop = asyncio.new_event_loop()
        threading.Thread(target=loop.run_forever, name="user-loop", daemon=True).start()
        from lensbook.skills.aio import register_loop

        register_loop(loop)
    lensbook.start(history=False)
    time.sleep(1.0)
    without = cpu_over(seconds)
    lensbook.stop()
    lensbook.start()
    time.sleep(1.0)
    with_recorder = cpu_over(seconds)
    lensbook.stop()
    share = 100 * (with_recorder - without) / seconds
    print(f"idle, {seconds:.0f} s windows{' (with an idle user event loop)' if loop else ''}:")
    print(f"  lensbook without the recorder: {100 * without / seconds:.4f}% of one core")
    print(f"  lensbook with the recorder:    {100 * with_recorder / seconds:.4f}% of one core")
    print(f"  the recorder's share:          {share:+.4f}% of one core (target < 0.05%)")
    if loop is not None:
        loop.call_soon_threadsafe(loop.stop)


def _raise_at(i: int) -> None:
    # a distinct exception type per call, raised a few frames deep: a distinct signature
    kind = type(f"FloodError{i}", (RuntimeError,), {})

    def level3() -> None:
        raise kind("x" * 400 + f" #{i}")

    def level2() -> None:
        level3()

    level2()


def memory() -> None:
    recorder.clear()
    gc.collect()
    threading.excepthook = lambda args: None  # the dying threads print nothing
    tracemalloc.start(1)
    before = tracemalloc.get_traced_memory()[0]
    recorder.start("bench", sample_interval=None)
    log = logging.getLogger("flood")
    log.propagate = False  # (the recorder sees every record, whatever its logger's handlers)
    log.addHandler(logging.NullHandler())
    log.setLevel(logging.DEBUG)
    for rnd in range(3):
        for i in range(1_200):
            try:
                _raise_at(rnd * 10_000 + i)
            except RuntimeError:
                log.exception("failed %d", i)
        for i in range(3_000):
            log.warning(f"distinct message {rnd}-{i % 300} " + "y" * 280)
        for i in range(700):
            child = logging.getLogger(f"flood.l{i}")
            if not child.handlers:
                child.propagate = False
                child.addHandler(logging.NullHandler())
            child.error("e")
        for i in range(400):  # threads that die: uncaught, each a distinct signature
            t = threading.Thread(target=_raise_at, args=(50_000 + rnd * 1000 + i,))
            t.start()
            t.join()
        for k in range(120):
            code = compile(f"def target_{k}():\n    pass\n", f"<kind {k}>", "exec")
            ns: dict[str, Callable[[], None]] = {}
            exec(code, ns)
            for _ in range(6):
                t = threading.Thread(target=ns[f"target_{k}"])
                t.start()
                t.join()
        for i in range(400):
            recorder.recorder.lag._record(  # the lag observer's own event, at its full size
                asyncio.new_event_loop() if i == 0 else _LOOP,
                0.5,
                {
                    "stack": [f"app/module_{j}.py:{100 + j} in handler_{j}" for j in range(8)],
                    "where": "app/handlers.py:120",
                    "function": "lookup_prices",
                    "blocking_call": "time.sleep(0.4)  " + "z" * 120,
                    "coroutine": "handle_order",
                    "coroutine_where": "app/handlers.py:88",
                },
                still_blocked=False,
            )
        sample = {
            "rss_mb": 100.0,
            "threads": 12,
            "python_threads": 9,
            "open_fds": 40,
            "gc_collections": 1_000,
            "gc_uncollectable": 0,
            "cpu_percent": 3.5,
        }
        pauses = recorder.recorder.gc
        pauses.threshold_s = 0.0  # every full collection "long": a gc_pause each
        for i in range(120):  # the observer's own callback, as the collector calls it
            pauses._callback("start", {"generation": 2})
            pauses._callback("stop", {"generation": 2, "collected": i, "uncollectable": 0})
        recorder.flush()
        for i in range(150):  # tracer windows (on demand, so few), at their full size
            recorder.record(
                "trace",
                f"app.module_{rnd}_{i}.handler",
                {
                    "target": f"app.module_{rnd}_{i}.handler",
                    "kind": "function",
                    "defined_at": f"app/module_{i}.py:{i}",
                    "window_s": 2.0,
                    "stopped_by": "time",
                    "calls": 1000 + i,
                    "calls_per_s": 500.0,
                    "mean_ms": 1.5,
                    "p95_ms": 3.5,
                    "max_ms": 12.0,
                    "exceptions": 0,
                    "callers": [
                        {"at": f"app/views_{j}.py:{100 + j} in view_{i}_{j}", "calls": 300}
                        for j in range(3)
                    ],
                },
            )
        for i in range(300):  # every sample moved a step: a metrics event each
            recorder.recorder.samples.observe(
                "runtime", {**sample, "rss_mb": 100.0 if i % 2 else 300.0}
            )
        recorder.flush()
    recorder.recorder.gc.threshold_s = GC_THRESHOLD_S
    gc.collect()
    held = tracemalloc.get_traced_memory()[0] - before
    if os.environ.get("BENCH_TOP"):
        for stat in tracemalloc.take_snapshot().statistics("lineno")[:15]:
            print("   ", stat)
    counts = recorder.recorder.ring.counts()
    recorder.stop("bench")
    tracemalloc.stop()
    full = {k: f"{n}/{recorder.CAPS.get(k, 100)}" for k, n in sorted(counts.items())}
    print("memory at the caps (after a flood of distinct exceptions, messages, loggers, kinds):")
    print(f"  events kept per kind: {full}")
    print(f"  Python memory held by the recorder: {held / 1e6:.3f} MB (target < 5 MB)")
    recorder.clear()


_LOOP = asyncio.new_event_loop()


async def _settle() -> None:
    for _ in range(3):
        await asyncio.sleep(0)


class _Clocks:
    """CPU seconds so far: the whole process, the calling thread, and the recorder's own
    thread (the lens loop, where its tick and flush run), each read from the OS."""

    def __init__(self) -> None:
        _loop.get_loop()  # the lens loop runs in both modes: its clock exists from the start
        ident = _loop._thread.ident if _loop._thread is not None else None
        self.lens = time.pthread_getcpuclockid(ident) if ident is not None else None

    def read(self) -> tuple[float, float, float]:
        lens = time.clock_gettime(self.lens) if self.lens is not None else 0.0
        return time.process_time(), time.thread_time(), lens


def _strip_observers() -> None:
    """The control's "on": the recorder started (its tick, the lens loop) with no observer."""
    for name in ("threads", "exceptions", "logs", "gc"):
        getattr(recorder.recorder, name).remove()


def _alternate(
    rounds: int,
    work: Callable[[], None],
    label: str,
    unit: str,
    per: int,
    *,
    block: int = 5,
    control: bool = True,
) -> tuple[float, float]:
    """Runs `work` without and with the recorder in `rounds` rounds each, in adjacent blocks of
    `block` rounds whose order alternates (off then on, on then off, ...); a round's pair is the
    round at the same place in the other block of its pair of blocks. Returns the CPU per unit
    of work without the recorder and the overhead.

    The recorder is started and stopped once per block, never next to a measured round: each
    block first runs one round that is not counted. Starting it (hooks, a flush, the lens
    loop's wake-ups, memory touched) right before every measured round, as this bench once did,
    costs the next few milliseconds of work: with the recorder started and every observer taken
    out again, that alone read +2.4-3.3% on thread churn. A process starts its recorder once;
    the control line (`control`) measures exactly that setup with no observer, so the figure
    above it can be read against it.

    What a user pays is the whole process's CPU: the caller's thread, the threads the work
    starts, and the recorder's own (the lens loop, which flushes every 10 s). Per pair the
    difference (with - without) of the process's CPU outside the lens loop is taken; its median
    over the pairs is the recorder's cost on the work's threads. The lens loop's CPU is added in
    full (its sum over all rounds with the recorder, less the same without): its flush is
    periodic, so a median would hide it."""
    clocks = _Clocks()

    def measure(strip: bool) -> tuple[list[tuple[float, float, float]], ...]:
        rows: dict[bool, list[tuple[float, float, float]]] = {False: [], True: []}

        def one() -> tuple[float, float, float]:
            gc.collect()
            p0, c0, l0 = clocks.read()
            work()
            p1, c1, l1 = clocks.read()
            return (p1 - p0) - (l1 - l0), c1 - c0, l1 - l0

        def run_block(on: bool) -> None:
            if on:
                recorder.start("bench", sample_interval=None)
                if strip:
                    _strip_observers()
                _loop.run_sync(_settle())  # its tick's first pass (a flush) runs now
            one()  # not counted: the start's (or stop's) aftermath
            for _ in range(block):
                rows[on].append(one())
            if on:
                recorder.stop("bench")

        # a block of each first, not counted: the lens loop (which the recorder's tick runs on,
        # and which stays up after its stop) is then running in both modes, both paths warm
        run_block(False)
        run_block(True)
        rows[False].clear()
        rows[True].clear()
        for r in range(max(rounds // block, 1)):
            for on in (False, True) if r % 2 == 0 else (True, False):
                run_block(on)
        return rows[False], rows[True]

    def summary(off: list[tuple[float, float, float]], on_: list[tuple[float, float, float]]):
        diffs = [b[0] - a[0] for a, b in zip(off, on_, strict=True)]
        base = statistics.median(a[0] for a in off)
        # per round; a negative mean is noise (the previous round's tick being cancelled),
        # not a saving, so it counts as nothing
        own = max((sum(b[2] for b in on_) - sum(a[2] for a in off)) / len(on_), 0.0)
        caller_diff = statistics.median(b[1] - a[1] for a, b in zip(off, on_, strict=True))
        q1, _, q3 = statistics.quantiles(diffs, n=4)
        return diffs, base, own, caller_diff, q1, q3, statistics.median(diffs) + own

    def us(x: float) -> str:
        return f"{x * 1e6 / per:+.3f}"

    off, on_ = measure(strip=False)
    diffs, base, own, caller_diff, q1, q3, cost = summary(off, on_)
    print(f"{label}, {len(on_)} pairs of rounds in alternating blocks of {block}:")
    print(f"  without the recorder: median {base * 1e6 / per:.2f} {unit} (process)")
    print(
        f"  with - without, per pair: median {us(statistics.median(diffs))} {unit} on the "
        f"work's threads (IQR {us(q1)}..{us(q3)}; of it on the caller's thread "
        f"{us(caller_diff)})"
    )
    print(f"  the recorder's own thread (lens loop), mean: {us(own)} {unit}")
    print(
        f"  overhead: {us(cost)} {unit} = {100 * cost / base:+.2f}% of the work's CPU (target < 3%)"
    )
    if control:
        c_off, c_on = measure(strip=True)
        *_, c_base_cost = summary(c_off, c_on)
        c_base = statistics.median(a[0] for a in c_off)
        print(
            f"  control, the recorder started with no observer: {us(c_base_cost)} {unit} = "
            f"{100 * c_base_cost / c_base:+.2f}% (what the method reads when nothing observes)"
        )
    return base / per, cost / base


def threads(total: int = 10_000, rounds: int = 100) -> None:
    per_round = total // rounds  # each mode starts `total` threads in all

    def work() -> None:
        # the process's CPU time is read around it (every thread's): wall time on a shared
        # machine is mostly waiting for a core, which the recorder does not change
        for _ in range(per_round):
            t = threading.Thread(target=int)
            t.start()
            t.join()

    base, _ = _alternate(
        rounds,
        work,
        f"thread churn ({total:,} short threads per mode)",
        "µs CPU/thread",
        per_round,
    )
    # the recorder's own part of a thread, alone: its full path (`on_start`: the frame walk
    # and the kind, which the start wrapper's shortcut skips for most starts) on a new Thread
    # object, less the same loop without it (warm caches: a bound on the shortcut's cost, not
    # what churn pays; the difference above is that)
    recorder.start("bench", sample_interval=None)
    observer = recorder.recorder.threads
    frame = sys._getframe()
    n = 20_000
    laps: dict[bool, list[float]] = {False: [], True: []}
    for lap in range(20):
        for on in (False, True) if lap % 2 == 0 else (True, False):
            started = time.process_time()
            for _ in range(n):
                thread = threading.Thread(target=int)
                if on:  # what `Thread.start`'s wrapper does around the start itself
                    observer.on_start(thread, frame).started += 1
            laps[on].append(time.process_time() - started)
    own = statistics.median(b - a for a, b in zip(laps[False], laps[True], strict=True)) / n
    recorder.stop("bench")
    print(
        f"  the recorder's full start path alone (no shortcut), warm: {own * 1e6:.3f} µs per "
        f"thread = "
        f"{100 * own / base:.2f}% of a thread's cost without the recorder"
    )


def logs(records: int = 200_000, rounds: int = 100) -> None:
    app = logging.getLogger("bench.app")
    app.setLevel(logging.INFO)
    handler = logging.FileHandler(os.devnull)
    handler.setFormatter(logging.Formatter("%(asctime)s %(levelname)s %(name)s %(message)s"))
    app.addHandler(handler)
    per_round = records // rounds

    def work() -> None:
        # paced at ~50k records/s (the pauses cost no CPU)
        t0 = time.perf_counter()
        for i in range(per_round):
            if i % 100 == 99:
                app.warning("slow order %d took %.1f ms", i, 812.5)
            else:
                app.info("order %d processed in %.1f ms", i, 1.5)
            if i % 500 == 499:
                ahead = (i + 1) / 50_000 - (time.perf_counter() - t0)
                if ahead > 0:
                    time.sleep(ahead)

    base, _ = _alternate(
        rounds,
        work,
        f"logging ({records:,} records per mode at ~50k/s, 1% warnings)",
        "µs CPU/record",
        per_round,
    )
    # the recorder's own part of a record, alone: less noisy than the difference above. Its tap
    # wraps ``Logger.callHandlers``: that call on a record of a logger with no handler of its
    # own, tap on less tap off
    quiet = logging.getLogger("bench.quiet")
    quiet.propagate = False
    quiet.addHandler(logging.NullHandler())
    record = quiet.makeRecord("bench.quiet", logging.INFO, __file__, 1, "order %d", (1,), None)
    n = 200_000
    laps: dict[bool, list[float]] = {False: [], True: []}
    for lap in range(10):
        for on in (False, True) if lap % 2 == 0 else (True, False):
            if on:
                recorder.start("bench", sample_interval=None)
            started = time.thread_time()
            for _ in range(n // 10):
                quiet.callHandlers(record)
            laps[on].append(time.thread_time() - started)
            if on:
                recorder.stop("bench")
    own = statistics.median(b - a for a, b in zip(laps[False], laps[True], strict=True)) / (n / 10)
    print(
        f"  the recorder's tap alone, warm: {own * 1e6:.3f} µs per record below WARNING = "
        f"{100 * own / base:.2f}% of a record's cost without the recorder"
    )
    app.removeHandler(handler)
    handler.close()


def _paired(
    label: str, unit: str, work: Callable[[], None], per: int, toggle: Callable[[bool], None]
) -> None:
    """`work` with the observer off and on in alternating adjacent pairs (gc paused); prints the
    median of the pairs' differences of process CPU per item, with its spread."""
    rows: dict[bool, list[float]] = {False: [], True: []}
    pairs = 1000
    gc.collect()
    gc.disable()
    try:
        for r in range(pairs + 1):
            for on in (False, True) if r % 2 == 0 else (True, False):
                toggle(on)
                p0 = time.process_time()
                work()
                rows[on].append(time.process_time() - p0)
                toggle(False)
    finally:
        gc.enable()
    off, on_ = rows[False][2:], rows[True][2:]  # (the first pair warms both paths)
    diffs = [(b - a) * 1e6 / per for a, b in zip(off, on_, strict=True)]
    base = statistics.median(off) * 1e6 / per
    q1, _, q3 = statistics.quantiles(diffs, n=4)
    median = statistics.median(diffs)
    print(f"{label}, {pairs} alternating pairs of {per}:")
    print(
        f"  without: median {base:.2f} {unit}; with - without: median {median:+.3f} {unit} "
        f"(IQR {q1:+.3f}..{q3:+.3f}) = {100 * median / base:+.2f}%"
    )


def items() -> None:
    """Per item, paired: one thread start+join, one record, with the recorder's observer on
    (installed, the recorder started) and off, in many short alternating pairs: medians of
    per-item differences, which a shared machine's load swamps less than whole workloads. The
    observer is installed right before each round with it: each figure is followed by a
    control that toggles the same way and measures with the observer off (read the figure
    against it)."""
    recorder.start("bench", sample_interval=None)
    observers = recorder.recorder

    def threads_work() -> None:
        for _ in range(20):
            t = threading.Thread(target=int)
            t.start()
            t.join()

    def threads_toggle(on: bool) -> None:
        if on:
            observers.threads.install()
        else:
            observers.threads.remove()

    app = logging.getLogger("bench.items")
    app.setLevel(logging.INFO)
    app.propagate = True
    handler = logging.FileHandler(os.devnull)
    handler.setFormatter(logging.Formatter("%(asctime)s %(levelname)s %(name)s %(message)s"))
    app.addHandler(handler)

    def logs_work() -> None:
        for i in range(100):
            if i == 99:
                app.warning("slow order %d took %.1f ms", i, 812.5)
            else:
                app.info("order %d processed in %.1f ms", i, 1.5)

    def logs_toggle(on: bool) -> None:
        if on:
            observers.logs.install()
        else:
            observers.logs.remove()

    def control(toggle: Callable[[bool], None]) -> Callable[[bool], None]:
        # the same install and removal right before the round, with the observer off during
        # it: what the toggling alone costs the round after it (see `_alternate`)
        def toggled(on: bool) -> None:
            if on:
                toggle(True)
                toggle(False)

        return toggled

    try:
        _paired("thread start+join", "µs CPU/thread", threads_work, 20, threads_toggle)
        _paired(
            "  control: the same toggling, observer off",
            "µs",
            threads_work,
            20,
            control(threads_toggle),
        )
        _paired("log record (1% warnings)", "µs CPU/record", logs_work, 100, logs_toggle)
        _paired(
            "  control: the same toggling, observer off",
            "µs",
            logs_work,
            100,
            control(logs_toggle),
        )
    finally:
        recorder.stop("bench")
        app.removeHandler(handler)
        handler.close()


def flood(records: int = 1_000_000, starts: int = 100_000) -> None:
    """The hostile flood of the issue: a million warnings and 100,000 thread starts."""
    recorder.clear()
    recorder.start("bench", sample_interval=None)
    rss = psutil.Process().memory_info().rss
    log = logging.getLogger("flood")
    log.propagate = False
    log.addHandler(logging.NullHandler())
    started = time.process_time()
    for i in range(records):
        log.warning("flood %d from %s", i, "client-7")
    per_record = (time.process_time() - started) / records
    started = time.process_time()
    for _ in range(starts):
        t = threading.Thread(target=int)
        t.start()
        t.join()
    per_thread = (time.process_time() - started) / starts
    recorder.flush()
    counts = recorder.recorder.ring.counts()
    grew = (psutil.Process().memory_info().rss - rss) / 1e6
    rate = sum(e.detail["count"] for e in recorder.history_events(kinds=["log_rate"]))
    recorder.stop("bench")
    log.handlers[:] = []
    print(f"hostile flood: {records:,} warnings, {starts:,} thread starts, recorder on:")
    print(f"  {per_record * 1e6:.2f} µs CPU per warning, {per_thread * 1e6:.1f} µs CPU per thread")
    print(
        f"  events kept: {counts} (every kind within its cap: "
        f"{all(n <= recorder.CAPS.get(k, 100) for k, n in counts.items())})"
    )
    print(f"  warnings counted in log_rate: {rate:,}; RSS grew {grew:.1f} MB")
    recorder.clear()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seconds", type=float, default=60.0, help="each idle window")
    parser.add_argument("--loop", action="store_true", help="an idle user event loop too")
    parser.add_argument("--only", default="idle,memory,threads,logs,flood")
    args = parser.parse_args()
    chosen = set(args.only.split(","))
    if "memory" in chosen:
        memory()
    if "threads" in chosen:
        threads()
    if "logs" in chosen:
        logs()
    if "items" in chosen:
        items()
    if "flood" in chosen:
        flood()
    if "idle" in chosen:
        idle(args.seconds, args.loop)


if __name__ == "__main__":
    main()
