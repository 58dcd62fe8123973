"""Operator loop overhead per iteration with the ScriptedClient (probes excluded).

Each iteration is one scripted model turn calling `think` (a base tool that does no work), so the
figure is the loop's own cost: request building, events, tool dispatch, result rendering.
Target: under 1 ms per iteration.

    .venv/bin/python benchmarks/bench_loop.py [--iterations 500] [--repeats 5]
"""

from __future__ import annotations

import argparse
import statistics
import time

import lensbook
from lensbook import ScriptedClient, Skill
from lensbook.clients import call


class Empty(Skill):
    id = "empty"
    title = "Empty"
    description = "No probes"
    system_prompt = "Nothing."


def one_run(iterations: int) -> tuple[float, float]:
    script = [call("think", thought=f"step {i}") for i in range(iterations - 1)] + [call("done")]
    client = ScriptedClient(script)
    op = lensbook.Operator.start(
        skill=Empty, client=client, max_iterations=iterations + 1, compaction_max_tokens=10**9
    )
    started, cpu = time.perf_counter(), time.process_time()
    result = op.run({"reason": "bench"}).result
    elapsed, cpu = time.perf_counter() - started, time.process_time() - cpu
    op.stop()
    assert result.iterations == iterations
    return elapsed / iterations, cpu / iterations


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--iterations", type=int, default=500)
    parser.add_argument("--repeats", type=int, default=5)
    args = parser.parse_args()
    one_run(20)  # warm up imports and the loop
    runs = [one_run(args.iterations) for _ in range(args.repeats)]
    per = [wall for wall, _ in runs]
    print(f"iterations per run: {args.iterations}, runs: {args.repeats}")
    print(
        f"loop overhead per iteration: median {1000 * statistics.median(per):.3f} ms, "
        f"min {1000 * min(per):.3f} ms, max {1000 * max(per):.3f} ms (target < 1 ms)"
    )
    # CPU time is what the loop costs the process; wall time also counts a busy machine's waits
    cpu = statistics.median(c for _, c in runs)
    print(f"CPU per iteration (all threads): median {1000 * cpu:.3f} ms")
    lensbook.stop()


if __name__ == "__main__":
    main()
