"""Per fault scenario: wall time to diagnosis, iterations, tool calls, tool-output bytes (a proxy
for tokens: beamlens reports about 10K tokens per investigation) and whether the diagnosis named
the culprit. Each scenario runs in its own child process with the offline investigator
(the same machinery as `lensbook eval`).

    .venv/bin/python benchmarks/bench_scenarios.py [--scenarios a,b] [--repeat 1]
"""

from __future__ import annotations

import argparse
import statistics

from lensbook.eval import run_eval, targets_for
from lensbook.scenarios import scenario_names


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--scenarios", default="")
    parser.add_argument("--repeat", type=int, default=1)
    args = parser.parse_args()
    names = [s for s in args.scenarios.split(",") if s] or scenario_names()
    rows: dict[str, list[dict[str, object]]] = {n: [] for n in names}
    for _ in range(args.repeat):
        report = run_eval(names, targets_for(None, ["offline"]), save=False)
        for row in report.rows:
            rows[str(row["scenario"])].append(row)
    width = max(len(n) for n in names)
    print(
        f"{'scenario':<{width}} {'diagnosed':>9} {'false alarm':>11} {'iterations':>10} "
        f"{'tool calls':>10} {'output bytes':>12} {'~tokens':>8} {'seconds':>8}"
    )
    for name, found in rows.items():

        def med(key: str, found: list[dict[str, object]] = found) -> float:
            return statistics.median(float(r.get(key) or 0) for r in found)

        diagnosed = sum(bool(r.get("diagnosed")) for r in found)
        alarms = sum(bool(r.get("false_alarm")) for r in found)
        print(
            f"{name:<{width}} {diagnosed:>6}/{len(found):<2} {alarms:>11} "
            f"{med('iterations'):>10.0f} {med('tool_calls'):>10.0f} "
            f"{med('tool_output_bytes'):>12.0f} {med('tool_output_bytes') / 4:>8.0f} "
            f"{med('seconds'):>8.2f}"
        )
    every = [r for found in rows.values() for r in found]
    faults = [r for r in every if not r.get("healthy")]
    quiet = [r for r in every if r.get("healthy")]
    print(
        f"faults diagnosed {sum(bool(r.get('diagnosed')) for r in faults)}/{len(faults)}; "
        f"healthy workloads without alarm {sum(bool(r.get('diagnosed')) for r in quiet)}/"
        f"{len(quiet)}; false alarms {sum(bool(r.get('false_alarm')) for r in every)} "
        f"(runs: {len(every)}, repeat {args.repeat})"
    )


if __name__ == "__main__":
    main()
