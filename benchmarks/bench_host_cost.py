"""What a memory investigation costs the host: a busy main thread with and without one.

The main thread does CPU- and allocation-heavy work in fixed chunks (building small dicts and
lists, summing them) and times every chunk. Two phases run side by side, each in a fresh child
process, alternating `--repeat` times:

- baseline: the work alone (lensbook not imported), plus the same leaking service thread;
- investigation: the same, while lensbook's offline investigator runs a memory investigation
  (`lensbook.run("memory")` on the lens loop: censuses, a tracemalloc window, its diff, type
  growth, the largest containers, referrer chains) until the run ends.

With `--model-window`, the investigation is a hostile model's instead (a `ScriptedClient`
driving the memory operator, the path a real model's tool calls take): every memory probe
called with the largest value of every parameter (the schemas set no maximum, so huge values
that the probes clamp): a 25-frame tracemalloc window held open with `wait`, the deepest
referrer chains, two retention bursts in a row, and a burst of window re-openings. Each call
is printed with its time (and the start of an error). `--model-window default` makes the same
calls with every parameter at its default: the control that tells the parameters' cost from
that of the calls themselves and of the heap they meet (the leak grows it for the whole run).

It prints, per repeat and as medians, the chunk time during the investigation divided by the
baseline's median chunk time: the median ratio, the 95th percentile and the worst (slowest
chunk), which probes were running during that slowest chunk, and each probe's own worst
(the slowest chunk during which it alone ran). Targets (issue 12): median
<= 1.5, worst <= 3. The baseline's own p95 and worst over its median show the machine's noise:
on a shared machine the worst chunk is often the scheduler's, not lensbook's, so read the worst
next to the baseline's; the load average is printed before and after for the same reason.
Columns marked * take each chunk less the main thread's run-queue wait (Linux schedstat: time
it was runnable while the OS ran something else), so another process's load mostly drops
out; waiting for the GIL is sleeping, not run-queue wait, so lensbook's cost stays in. The
line marked ** also takes out the program's own full collections (generation 2, in any thread:
they hold every thread); the leaking thread grows the heap for the whole run, so they grow
from ~50 to ~200 ms and set the baseline's own worst. What lensbook adds to a chunk (its heap
steps, its tracing bursts, the young collections that walk a probe's listing) stays in.

Last, it times one heap step (`lensbook.skills._heap.objects()`, the GIL hold no
walk can split) alone at the same heap, per million tracked objects: the bound documented in
`lensbook/skills/_heap.py`; and the main thread's longest gap while such steps are taken, alone
and with another thread of the program spinning (when steps raised the switch interval, the
busy thread kept the GIL for 250 ms or more at the start of each step while the main thread
waited: ~290 ms at 300k objects, against ~40 ms alone).

    .venv/bin/python benchmarks/bench_host_cost.py [--repeat 3] [--heap 300000] [--chunk-ms 100]
        [--model-window [largest|default]]
"""

from __future__ import annotations

import argparse
import gc
import json
import os
import statistics
import subprocess
import sys
import threading
import time
from typing import Any


def _work_unit(n: int = 400) -> int:
    rows = [{"i": i, "v": [i, i + 1, i + 2]} for i in range(n)]  # allocation-heavy
    return sum(r["i"] * len(r["v"]) for r in rows)  # and CPU


def _calibrate(chunk_s: float) -> int:
    """Work units per chunk, from the fastest of several timed batches (a busy machine only
    ever makes a batch slower, so the minimum is the closest to the work's own cost)."""
    batch = 20
    best = min(_timed(batch) for _ in range(7)) / batch
    return max(1, round(chunk_s / best))


def _timed(units: int) -> float:
    started = time.perf_counter()
    for _ in range(units):
        _work_unit()
    return time.perf_counter() - started


def _chunks(
    units: int,
    until: Any,
    starts: list[float] | None = None,
    queued: list[float] | None = None,
    collected: list[float] | None = None,
) -> list[float]:
    """Chunk times until `until()`; with `queued`, each chunk's run-queue wait too; with
    `collected`, the seconds of full collections (any thread's) during each chunk."""
    times = []
    while not until():
        started = time.perf_counter()
        waited = _run_queue_wait()
        full = _FULL_COLLECTIONS.seconds
        for _ in range(units):
            _work_unit()
        times.append(time.perf_counter() - started)
        if starts is not None:
            starts.append(started)
        if queued is not None:
            queued.append(_run_queue_wait() - waited)
        if collected is not None:
            collected.append(_FULL_COLLECTIONS.seconds - full)
    return times


class _FullCollections:
    """Seconds spent in full (generation 2) collections so far, in any thread: the program's
    own stalls, which grow with its heap (the leaking thread grows it for the whole run) and
    hold every thread whoever triggered them. Every collection is kept too (generation,
    began, ended), to lay next to the slowest chunk."""

    def __init__(self) -> None:
        self.seconds = 0.0
        self._began = 0.0
        self.spans: list[tuple[int, float, float]] = []

    def __call__(self, phase: str, info: dict[str, int]) -> None:
        if phase == "start":
            self._began = time.perf_counter()
            return
        ended = time.perf_counter()
        self.spans.append((info["generation"], self._began, ended))
        if info["generation"] == 2:
            self.seconds += ended - self._began


_FULL_COLLECTIONS = _FullCollections()


def _run_queue_wait() -> float:
    """Seconds this thread has been runnable but not running (the OS ran something else).

    Linux's per-thread schedstat; waiting for the GIL is sleeping, not this. 0 elsewhere.
    """
    try:
        with open(f"/proc/self/task/{threading.get_native_id()}/schedstat") as f:
            return int(f.read().split()[1]) / 1e9
    except (OSError, IndexError, ValueError):
        return 0.0


#: larger than any clamp: a hostile model asks for as much as the schema lets it
_HUGE = 10**9


def _hostile_model(largest: bool = True) -> Any:
    """A model that calls every memory probe with the largest of every parameter, holds a
    25-frame tracing window open as long as `wait` lets it, and re-opens windows back to back;
    with `largest` false, the same calls with every parameter left at its default (a control:
    what the parameters cost, apart from the calls and the heap they meet). Compaction and
    summary requests get text, so every scripted turn is a tool batch."""
    from lensbook.clients.scripted import ScriptedClient, call
    from lensbook.limits import MAX_WAIT_SECONDS

    def at(**largest_values: Any) -> dict[str, Any]:
        return largest_values if largest else {}

    longest = at(frames=_HUGE, max_seconds=_HUGE)
    shown = at(top=_HUGE, frames_shown=_HUGE)
    deepest = {"type_name": "dict", **at(max_depth=_HUGE, samples=_HUGE)}
    batches = [
        [call("take_snapshot"), call("memory_rss_trend", **at(window_s=_HUGE, points=_HUGE))],
        [call("memory_trace_start", **longest), call("memory_census", **at(top=_HUGE))],
        [call("wait", seconds=MAX_WAIT_SECONDS)],
        [call("memory_allocation_diff", **shown, stop=False)],
        [call("memory_type_growth", **at(top=_HUGE, after_s=_HUGE))],
        [call("memory_largest_containers", **at(top=_HUGE))],
        [call("memory_largest_containers", **at(top=_HUGE, baseline=False))],
        [call("memory_referrers", **deepest)],
        [call("memory_retained_sites", **shown)],
        # a second retention burst right after the first: it must rest first
        [call("memory_referrers", **{**deepest, **at(max_depth=_HUGE - 1)})],
        [call("memory_retained_sites", **shown)],
        # each re-opening closes the window before it (its burst's snapshot and grouping);
        # arguments differ by a little each time, or the loop refuses a call repeated 3 times
        [
            call(
                "memory_trace_start",
                **{**longest, "max_seconds": 60 - i, **at(max_seconds=_HUGE - i)},
            )
            for i in range(20)
        ],
        [call("wait", seconds=MAX_WAIT_SECONDS)],
        [call("memory_allocation_diff", **shown, stop=True)],
        [call("done", summary="hostile window closed")],
    ]
    return ScriptedClient.batches(batches)


def _child(
    phase: str, heap_size: int, units: int, seconds: float, model_window: str | None = None
) -> dict[str, Any]:
    heap = [[i] for i in range(heap_size)]  # a heap for the walks to cover
    from lensbook.scenarios import _leaky_cache  # a service thread with a real leak

    traffic = _leaky_cache.start_traffic(per_second=4000)
    _chunks(units, _deadline(1.0))  # warm up
    out: dict[str, Any] = {"phase": phase}
    queued: list[float] = []
    collected: list[float] = []
    out["queued"], out["collected"] = queued, collected
    gc.callbacks.append(_FULL_COLLECTIONS)
    if phase == "baseline":
        out["chunks"] = _chunks(units, _deadline(seconds), queued=queued, collected=collected)
    else:
        import lensbook
        from lensbook import events
        from lensbook.clients.offline import OfflineInvestigator

        # which probes ran during the slowest chunk: [name, started, ended] per tool call
        spans: dict[str, list[Any]] = {}
        calls: list[str] = []  # what each call answered: name, seconds, an error's start

        def on_tool(event: Any) -> None:
            if event.kind == "tool_call":
                spans[event.data["id"]] = [event.data["name"], time.perf_counter(), None]
            elif event.data["id"] in spans:
                spans[event.data["id"]][2] = time.perf_counter()
                error = f" ERROR {event.data['content'][:80]}" if event.data["is_error"] else ""
                calls.append(f"{event.data['name']} {event.data['seconds']:.2f} s{error}")

        token = events.subscribe(on_tool, kinds=["tool_call", "tool_result"])
        client = (
            _hostile_model(model_window == "largest") if model_window else OfflineInvestigator()
        )
        lensbook.start(["memory"], client=client, sample_interval=None)
        done = threading.Event()
        lensbook.get_operator("memory").run_in_background(
            {"reason": "memory keeps growing"}, on_complete=lambda _result: done.set()
        )
        started = time.perf_counter()
        starts: list[float] = []
        out["chunks"] = _chunks(units, done.is_set, starts, queued, collected)
        out["investigation_s"] = round(time.perf_counter() - started, 2)
        events.unsubscribe(token)
        worst = max(range(len(starts)), key=out["chunks"].__getitem__, default=None)
        if worst is not None:
            begin, end = starts[worst], starts[worst] + out["chunks"][worst]
            out["worst_during"] = sorted(
                {n for n, s, e in spans.values() if s < end and (e is None or e > begin)}
            )
            # what stalled the program in it: lensbook's steps and bursts, and collections
            # (generation: young ones may walk a probe's listing), ms from the chunk's start
            from lensbook.skills import _heap

            stalls = [(k, b, e) for k, b, e in _heap.stalls()]
            stalls += [(f"gc{g}", b, e) for g, b, e in _FULL_COLLECTIONS.spans]
            out["worst_stalls"] = [
                f"{kind} +{(b - begin) * 1000:.0f} ms for {(e - b) * 1000:.0f} ms"
                for kind, b, e in sorted(stalls, key=lambda x: x[1])
                if b < end and e > begin and (e - b > 0.002 or not kind.startswith("gc"))
            ]
        out["worst_by_probe"] = _worst_by_probe(starts, out["chunks"], list(spans.values()))
        result = lensbook.get_operator("memory").last_result
        out["found"] = [n.observation[:160] for n in result.notifications] if result else []
        if model_window:
            out["found"] = [f"stop reason {result.stop_reason if result else None}", *calls]
        lensbook.stop()
    traffic.stop.set()
    del heap
    return out


def _worst_by_probe(
    starts: list[float], chunks: list[float], spans: list[list[Any]]
) -> dict[str, float]:
    """Per probe, the slowest chunk that ran while it did (and no other probe did): where a
    worst chunk comes from when several probes share the run."""
    worst: dict[str, float] = {}
    for begin, took in zip(starts, chunks, strict=True):
        during = {n for n, s, e in spans if s < begin + took and (e is None or e > begin)}
        if len(during) == 1:
            (name,) = during
            worst[name] = max(worst.get(name, 0.0), took)
    return worst


def _step(heap_size: int) -> dict[str, Any]:
    """One heap step alone (no busy thread), fastest of 5."""
    heap = [[i] for i in range(heap_size)]
    from lensbook.skills import _heap

    times, tracked = [], 0
    for _ in range(5):
        time.sleep(0.5)  # (longer than the spacing a step right after another waits for)
        started = time.perf_counter()
        listing = _heap.objects()
        times.append(time.perf_counter() - started)
        tracked = len(listing)
        del listing
    del heap
    return {"tracked": tracked, "best_s": min(times), "median_s": statistics.median(times)}


def _entry_wait(heap_size: int, busy: bool) -> float:
    """The main thread's longest gap (ms) while a probe thread takes a heap step every 0.3 s
    for 5 s; with `busy`, another thread of the program spins meanwhile."""
    heap = [[i] for i in range(heap_size)]
    from lensbook.skills import _heap

    stop = threading.Event()

    def spin() -> None:
        while not stop.is_set():
            pass

    def probe() -> None:
        while not stop.wait(0.3):
            listing = _heap.objects()
            del listing

    threads = [threading.Thread(target=probe, daemon=True)]
    threads += [threading.Thread(target=spin, daemon=True)] if busy else []
    for t in threads:
        t.start()
    end = time.perf_counter() + 5.0
    worst, last = 0.0, time.perf_counter()
    while last < end:
        sum(range(2000))
        now = time.perf_counter()
        worst, last = max(worst, now - last), now
    stop.set()
    for t in threads:
        t.join(5)
    del heap
    return worst * 1000


def _deadline(seconds: float) -> Any:
    end = time.perf_counter() + seconds
    return lambda: time.perf_counter() >= end


def _run_child(phase: str, args: argparse.Namespace, units: int, seconds: float) -> dict[str, Any]:
    cmd = [sys.executable, __file__, "--child", phase, "--heap", str(args.heap)]
    cmd += ["--units", str(units), "--seconds", str(seconds)]
    cmd += ["--model-window", args.model_window] if args.model_window else []
    done = subprocess.run(cmd, capture_output=True, text=True, timeout=300, check=True)
    result: dict[str, Any] = json.loads(done.stdout.strip().splitlines()[-1])
    return result


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeat", type=int, default=3)
    parser.add_argument("--heap", type=int, default=300_000)
    parser.add_argument("--chunk-ms", type=float, default=100.0)
    parser.add_argument(
        "--model-window",
        nargs="?",
        const="largest",
        choices=["largest", "default"],
        help="a hostile model's memory probes, every parameter at its largest (or, as a "
        "control, the same calls at the defaults)",
    )
    parser.add_argument("--child", choices=["baseline", "investigation", "step"])
    parser.add_argument("--units", type=int, default=0)
    parser.add_argument("--seconds", type=float, default=8.0)
    args = parser.parse_args()
    if args.child == "step":
        step = _step(args.heap)
        step["gap_ms"] = _entry_wait(args.heap, busy=False)
        step["gap_busy_ms"] = _entry_wait(args.heap, busy=True)
        print(json.dumps(step))
        return
    if args.child:
        print(
            json.dumps(_child(args.child, args.heap, args.units, args.seconds, args.model_window))
        )
        return

    units = _calibrate(args.chunk_ms / 1000)
    print(f"chunk: {units} work units (~{args.chunk_ms:g} ms idle), heap {args.heap:,} lists")
    who = (
        f"a hostile model, every parameter at its {args.model_window}"
        if args.model_window
        else "offline"
    )
    print(f"investigation: {who}")
    print(f"load average before: {_load()}\n")
    head = ("repeat", "base ms", "base p95", "base worst", "inv s", "median", "p95", "worst")
    head += ("base w*", "median*", "worst*")
    print("".join(f"{h:>11}" for h in head))
    rows = []
    full_rows = []  # less run-queue wait and the program's full collections too
    for i in range(args.repeat):
        inv = _run_child("investigation", args, units, 0)
        base = _run_child("baseline", args, units, max(inv["investigation_s"], 3.0))
        b_med = statistics.median(base["chunks"])
        row = (
            b_med * 1000,
            _p95(base["chunks"]) / b_med,
            max(base["chunks"]) / b_med,
            inv["investigation_s"],
            statistics.median(inv["chunks"]) / b_med,
            _p95(inv["chunks"]) / b_med,
            max(inv["chunks"]) / b_med,
            *_less(base, inv, "queued"),
        )
        full_rows.append(_less(base, inv, "queued", "collected"))
        rows.append(row)
        print(f"{i + 1:>11}" + "".join(f"{v:>11.2f}" for v in row))
        during = ", ".join(inv.get("worst_during") or []) or "no probe (the loop, a model turn)"
        print(f"{'':>11} worst chunk during: {during}")
        print(f"{'':>11} stalls in it: {', '.join(inv.get('worst_stalls') or []) or 'none'}")
        alone = sorted(inv["worst_by_probe"].items(), key=lambda kv: -kv[1])[:6]
        print(
            f"{'':>11} worst chunk per probe running alone: "
            + ", ".join(f"{n} {t / b_med:.1f}x" for n, t in alone)
        )
        if i == 0:
            for line in inv["found"]:
                print(f"{'':>11} found: {line}")
    medians = [statistics.median(col) for col in zip(*rows, strict=True)]
    print(f"{'median':>11}" + "".join(f"{v:>11.2f}" for v in medians))
    print(
        f"\ninvestigation vs baseline: median {medians[4]:.2f}x (target <= 1.5), worst "
        f"{medians[6]:.2f}x (target <= 3; the baseline's own worst is {medians[2]:.2f}x)"
    )
    print(
        f"* less run-queue wait: median {medians[8]:.2f}x, worst {medians[9]:.2f}x "
        f"(the baseline's own worst {medians[7]:.2f}x)"
    )
    b_worst, i_med, i_worst = (statistics.median(col) for col in zip(*full_rows, strict=True))
    print(
        f"** less run-queue wait and the program's own full collections: median {i_med:.2f}x, "
        f"worst {i_worst:.2f}x (the baseline's own worst {b_worst:.2f}x)"
    )
    step = _run_child("step", args, 0, 0)
    per_million = step["best_s"] / step["tracked"] * 1e9
    print(
        f"one heap step alone: {step['best_s'] * 1000:.1f} ms best, "
        f"{step['median_s'] * 1000:.1f} ms median, at {step['tracked']:,} tracked objects "
        f"({per_million:.0f} ms per million)"
    )
    print(
        f"the main thread's longest gap while steps are taken every 0.3 s: "
        f"{step['gap_ms']:.0f} ms; with another thread of the program busy: "
        f"{step['gap_busy_ms']:.0f} ms"
    )
    print(f"load average after: {_load()}")


def _load() -> str:
    return " ".join(f"{v:.2f}" for v in os.getloadavg())


def _less(base: dict[str, Any], inv: dict[str, Any], *parts: str) -> tuple[float, float, float]:
    """Base worst, investigation median and worst, each chunk less its `parts` (run-queue
    wait, full collections), over the baseline's median chunk measured the same way."""

    def own(phase: dict[str, Any]) -> list[float]:
        return [t - sum(p) for t, *p in zip(*(phase[k] for k in ("chunks", *parts)), strict=True)]

    b_own, i_own = own(base), own(inv)
    b_med = statistics.median(b_own)
    return max(b_own) / b_med, statistics.median(i_own) / b_med, max(i_own) / b_med


def _p95(values: list[float]) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(len(ordered) * 0.95))]


if __name__ == "__main__":
    main()
